"""DeepSeekMoE: shared experts + routed experts with the DeepSeek-V3 router.

Axis letters (capitals in the einsum strings): docs/model.md "Axis letters". Used here: T tokens
(batch and sequence flattened), D d_model, F expert FFN width, E routed experts, J experts chosen
per token (top_k), G router groups, X capacity slots per expert, Z token-expert assignments (T*J),
sorted by expert in the sort/ragged backends.

Router, cfg.router_method:
  noaux_tc (DeepSeek-V3): scores = sigmoid(x W_gate); a per-expert selection bias (trained by the
    auxiliary-loss-free balancer, `e_score_correction_bias`) is added ONLY for choosing experts:
    groups of E/G experts are scored by the sum of their top-2 biased scores, the best
    `topk_group` groups are kept, and the top-J biased scores inside them are chosen. The combine
    weights are the UNBIASED sigmoid scores of the chosen experts.
  greedy (DeepSeek-V2-Lite): scores = softmax(x W_gate) over all experts; the top-J are chosen.
  group_limited_greedy (DeepSeek-V2): softmax scores; groups are scored by their best expert, the
    best `topk_group` groups are kept, and the top-J scores inside them are chosen.
  The combine weights are the chosen scores, normalised to sum 1 if cfg.norm_topk_prob, times
  routed_scaling_factor.

Grouped matmul backends (cfg.moe_backend):
  sort   - sort assignments by expert, gather into a capacity-padded [E, X, D] buffer, three
           batched einsums, gather back. Capacity X = ceil(cf * T * J / E) (cf = capacity_factor;
           0 means X = T, which never drops). Assignments past an expert's capacity are dropped.
  ragged - sort assignments by expert and call jax.lax.ragged_dot with per-expert group sizes.
           Never drops.
  dense  - reference: every expert on every token, combined with a dense [T, E] weight matrix.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .config import ModelConfig
from .layers import MLP, param


def _kept_groups(group_score, topk_group: int, per: int):
    """group_score [T, G] -> [T, E] mask of the experts in each token's best topk_group groups."""
    t, n_group = group_score.shape
    _, gidx = jax.lax.top_k(group_score, topk_group)  # [T, topk_group]
    gmask = jnp.zeros((t, n_group), bool).at[jnp.arange(t)[:, None], gidx].set(True)
    return jnp.repeat(gmask, per, axis=1)


def route(
    logits,
    bias,
    *,
    top_k: int,
    n_group: int,
    topk_group: int,
    scaling: float,
    method: str = "noaux_tc",
    norm_topk_prob: bool = True,
):
    """logits [T, E] (float32), bias [E] (noaux_tc only) -> (weights [T, J] f32, idx [T, J]).
    The rules are in this file's docstring."""
    t, e = logits.shape
    per = e // n_group
    if method == "noaux_tc":
        scores = jax.nn.sigmoid(logits.astype(jnp.float32))
        choice = scores + bias.astype(jnp.float32)[None, :]
        if n_group > 1:
            top2 = jax.lax.top_k(choice.reshape(t, n_group, per), min(2, per))[0]
            choice = jnp.where(_kept_groups(top2.sum(-1), topk_group, per), choice, -jnp.inf)
    elif method in ("greedy", "group_limited_greedy"):
        scores = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        choice = scores
        if method == "group_limited_greedy" and n_group > 1:
            best = scores.reshape(t, n_group, per).max(-1)
            # 0, not -inf, outside the kept groups: as DeepSeek's code (scores are positive)
            choice = jnp.where(_kept_groups(best, topk_group, per), scores, 0.0)
    else:
        raise ValueError(f"unknown router method {method!r}")
    _, idx = jax.lax.top_k(choice, top_k)
    w = jnp.take_along_axis(scores, idx, axis=-1)
    if norm_topk_prob:
        w = w / (w.sum(-1, keepdims=True) + 1e-20)
    return w * scaling, idx.astype(jnp.int32)


def capacity(n_tokens: int, top_k: int, n_experts: int, capacity_factor: float) -> int:
    if capacity_factor <= 0:
        return n_tokens
    return max(1, min(n_tokens, math.ceil(capacity_factor * n_tokens * top_k / n_experts)))


def _swiglu_experts_einsum(buf, wg, wu, wd):
    g = jnp.einsum("EXD,EDF->EXF", buf, wg)
    u = jnp.einsum("EXD,EDF->EXF", buf, wu)
    return jnp.einsum("EXF,EFD->EXD", jax.nn.silu(g) * u, wd)


def _sort_assignments(idx, n_experts: int):
    """Sort the Z = T*J assignments by expert. Returns (order, sorted_expert, counts, starts, inv)."""
    flat_e = idx.reshape(-1)
    a = flat_e.shape[0]
    order = jnp.argsort(flat_e, stable=True).astype(jnp.int32)  # sorted pos -> assignment
    sorted_e = flat_e[order]
    counts = jnp.zeros((n_experts,), jnp.int32).at[flat_e].add(1)
    starts = jnp.cumsum(counts) - counts
    inv = jnp.zeros((a,), jnp.int32).at[order].set(jnp.arange(a, dtype=jnp.int32))
    return order, sorted_e, counts, starts, inv


def moe_sort(x, w, idx, wg, wu, wd, capacity_factor: float):
    t, d = x.shape
    k = idx.shape[1]
    e = wg.shape[0]
    cap = capacity(t, k, e, capacity_factor)
    order, sorted_e, counts, starts, inv = _sort_assignments(idx, e)
    tok_sorted = order // k  # token of each sorted assignment
    # Gather into [E, X, D]: slot s of expert e holds sorted assignment starts[e] + s.
    slot = jnp.arange(cap, dtype=jnp.int32)
    pos = starts[:, None] + slot[None, :]  # [E, X]
    valid = slot[None, :] < counts[:, None]
    src = tok_sorted[jnp.clip(pos, 0, t * k - 1)]
    buf = jnp.where(valid[..., None], x[src], jnp.zeros((), x.dtype))  # [E, X, D]
    out = _swiglu_experts_einsum(buf, wg, wu, wd).reshape(e * cap, d)
    # Back: sorted assignment j sits at out[sorted_e[j] * X + rank_j] if rank_j < X (else dropped).
    rank = jnp.arange(t * k, dtype=jnp.int32) - starts[sorted_e]
    fidx = jnp.where(rank < cap, sorted_e * cap + rank, e * cap)  # e*cap: out of range -> 0
    ya = out.at[fidx[inv]].get(mode="fill", fill_value=0).reshape(t, k, d)  # [T, J, D]
    return jnp.einsum("TJD,TJ->TD", ya.astype(jnp.float32), w).astype(x.dtype)


def moe_ragged(x, w, idx, wg, wu, wd):
    t, d = x.shape
    k = idx.shape[1]
    e = wg.shape[0]
    order, _, counts, _, inv = _sort_assignments(idx, e)
    xs = x[order // k]  # [Z, D] sorted by expert
    g = jax.lax.ragged_dot(xs, wg, counts)
    u = jax.lax.ragged_dot(xs, wu, counts)
    ys = jax.lax.ragged_dot(jax.nn.silu(g) * u, wd, counts)  # [Z, D]
    ya = ys[inv].reshape(t, k, d)
    return jnp.einsum("TJD,TJ->TD", ya.astype(jnp.float32), w).astype(x.dtype)


def moe_dense(x, w, idx, wg, wu, wd):
    t = x.shape[0]
    e = wg.shape[0]
    combine = jnp.zeros((t, e), jnp.float32).at[jnp.arange(t)[:, None], idx].add(w)  # [T, E]
    g = jnp.einsum("TD,EDF->TEF", x, wg)
    u = jnp.einsum("TD,EDF->TEF", x, wu)
    out = jnp.einsum("TEF,EFD->TED", jax.nn.silu(g) * u, wd)
    return jnp.einsum("TED,TE->TD", out.astype(jnp.float32), combine).astype(x.dtype)


class MoE(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dt, std = cfg.jdtype, cfg.init_std
        e, d, f = cfg.n_routed_experts, cfg.d_model, cfg.expert_ffn
        self.cfg = cfg
        self.w_router = param(rngs, (d, e), jnp.float32, std)
        # Selection bias; zeros in a fresh model, set by training / tests.
        self.e_bias = nnx.Param(jnp.zeros((e,), jnp.float32))
        self.w_gate = param(rngs, (e, d, f), dt, std)
        self.w_up = param(rngs, (e, d, f), dt, std)
        self.w_down = param(rngs, (e, f, d), dt, std)
        self.shared = MLP(d, f * cfg.n_shared_experts, dt, std, rngs=rngs) if cfg.n_shared_experts else None

    def router(self, x):
        cfg = self.cfg
        logits = jnp.einsum("TD,DE->TE", x.astype(jnp.float32), self.w_router[...])
        return route(
            logits,
            self.e_bias[...],
            top_k=cfg.top_k,
            n_group=cfg.n_group,
            topk_group=cfg.topk_group,
            scaling=cfg.routed_scaling_factor,
            method=cfg.router_method,
            norm_topk_prob=cfg.norm_topk_prob,
        )

    def __call__(self, x, *, backend: str | None = None, capacity_factor: float | None = None):
        """x [..., D] -> [..., D]."""
        cfg = self.cfg
        backend = backend or cfg.moe_backend
        cf = cfg.capacity_factor if capacity_factor is None else capacity_factor
        shape = x.shape
        xt = x.reshape(-1, shape[-1])
        with jax.named_scope("router"):
            w, idx = self.router(xt)
        ws = (self.w_gate[...], self.w_up[...], self.w_down[...])
        with jax.named_scope(f"routed_experts_{backend}"):
            if backend == "sort":
                y = moe_sort(xt, w, idx, *ws, capacity_factor=cf)
            elif backend == "ragged":
                y = moe_ragged(xt, w, idx, *ws)
            elif backend == "dense":
                y = moe_dense(xt, w, idx, *ws)
            else:
                raise ValueError(f"unknown moe backend {backend!r}; expected sort, ragged or dense")
        if self.shared is not None:
            with jax.named_scope("shared_experts"):
                y = y + self.shared(xt)
        return y.reshape(shape)

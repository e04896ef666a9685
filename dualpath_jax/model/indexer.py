"""DeepSeek Sparse Attention's lightning indexer (DeepSeek-V3.2): which earlier tokens each query
attends to.

Axis letters: docs/model.md "Axis letters". Used here: B batch, T query tokens, L key tokens (cache
slots, or prefix + new in a prefill), D d_model, Q q_lora rank, R rope dims, J indexer heads, I
indexer head dim, Z selected keys (min(index_topk, L)).

For query t and key s the index score is sum_j w[t,j] * relu(q[t,j] . k[s]) (float32), where
- q [J, I] comes from the MLA query latent (the RMS-normed q_a, Q wide) through its own W_q,
- k [I] is one key per token shared by all heads: LayerNorm(x W_k), cached with the MLA entry,
- w [J] = x W_w scaled by J^-1/2 and the softmax scale I^-1/2 (folded in: a positive factor, so it
  commutes with the relu; DeepSeek's kernel applies it after the relu),
- RoPE rotates the first R dims of q and k, pairs (i, i + R/2): the indexer's convention is not the
  MLA one (DeepSeek's fix of 2025-11 to its V3.2 code: "rope in indexer is not interleaved"), and
  it is the pairing `layers.apply_rope` already uses, so no load-time permutation is needed.
Each query keeps the Z top-scoring keys among those it may see (causal: key position <= query
position). DeepSeek's kernels also rotate q and k by a Hadamard transform and score in FP8; we do
neither (as transformers' DeepseekV32 does): the rotation is orthogonal, so it changes no dot
product, and FP8 only rounds (docs/model.md "DeepSeek Sparse Attention").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .config import ModelConfig
from .layers import apply_rope, param, rope_angles

# DeepSeek's code and transformers both fix the key LayerNorm's eps at 1e-6 (not rms_norm_eps).
INDEX_KEY_NORM_EPS = 1e-6


class LayerNorm(nnx.Module):
    """LayerNorm with weight and bias, computed in float32 (the indexer's key norm)."""

    def __init__(self, dim: int, eps: float, dtype):
        self.weight = nnx.Param(jnp.ones((dim,), dtype))
        self.bias = nnx.Param(jnp.zeros((dim,), dtype))
        self.eps = eps

    def __call__(self, x):
        xf = x.astype(jnp.float32)
        mean = jnp.mean(xf, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.weight[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(x.dtype)


def _rotate_first(x, positions, cfg: ModelConfig):
    """RoPE on the first R dims of x [..., I] (pairs (i, i+R/2)); the rest passes through."""
    r = cfg.qk_rope_dim
    cos, sin = rope_angles(positions, r, cfg.rope_theta, cfg.rope_yarn)  # the main attention's angles
    if x.ndim == positions.ndim + 2:  # per-head [..., J, I]: one angle per token, shared by heads
        cos, sin = cos[..., None, :], sin[..., None, :]
    return jnp.concatenate([apply_rope(x[..., :r], cos, sin), x[..., r:]], axis=-1)


class Indexer(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        dt, std = cfg.jdtype, cfg.init_std
        j, i = cfg.index_n_heads, cfg.index_head_dim
        self.cfg = cfg
        self.wq_b = param(rngs, (cfg.q_lora_rank, j, i), dt, std)
        self.wk = param(rngs, (cfg.d_model, i), dt, std)
        self.k_norm = LayerNorm(i, INDEX_KEY_NORM_EPS, dt)
        # float32, as transformers keeps it (_keep_in_fp32_modules) and DeepSeek's V3.2 code makes it
        self.weights_proj = param(rngs, (cfg.d_model, j), jnp.float32, std)

    def keys(self, x, positions):
        """x [..., D], positions [...] -> the index keys [..., I] (normed, rotated): what is cached."""
        with jax.named_scope("index_keys"):
            k = self.k_norm(jnp.einsum("...D,DI->...I", x, self.wk[...]))
            return _rotate_first(k, positions, self.cfg)

    def queries(self, q_latent, positions):
        """q_latent [..., Q] (MLA's normed q_a), positions [...] -> index queries [..., J, I]."""
        with jax.named_scope("index_queries"):
            q = jnp.einsum("...Q,QJI->...JI", q_latent, self.wq_b[...])
            return _rotate_first(q, positions, self.cfg)

    def head_weights(self, x):
        """x [..., D] -> per-head weights [..., J] float32, with J^-1/2 and the scale I^-1/2 folded in."""
        cfg = self.cfg
        scale = (cfg.index_n_heads * cfg.index_head_dim) ** -0.5
        w = jnp.einsum("...D,DJ->...J", x.astype(jnp.float32), self.weights_proj[...])
        return w * scale


def index_scores(q, weights, k):
    """q [B,T,J,I], weights [B,T,J] float32, k [B,L,I] -> scores [B,T,L] float32:
    sum over heads of weight * relu(q . k)."""
    logits = jnp.einsum("BTJI,BLI->BTJL", q, k.astype(q.dtype), preferred_element_type=jnp.float32)
    return jnp.einsum("BTJL,BTJ->BTL", jax.nn.relu(logits), weights)


def select_topk(scores, visible, topk: int):
    """scores [B,T,L], visible [B,T,L] bool -> (idx [B,T,Z] int32, selected [B,T,Z] bool).

    Z = min(topk, L). idx are the Z best visible keys of each query, best first; where a query sees
    fewer than Z keys, the rest of idx point at keys it may not see, and `selected` is False there.
    """
    z = min(topk, scores.shape[-1])
    masked = jnp.where(visible, scores, -jnp.inf)
    _, idx = jax.lax.top_k(masked, z)
    return idx.astype(jnp.int32), jnp.take_along_axis(visible, idx, axis=-1)

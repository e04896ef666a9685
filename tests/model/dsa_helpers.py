"""Shared pieces of the DSA tests: tiny DSA modules with NumPy-drawn weights, and one jitted run
per entry point that gives back everything the tests look at (float32, CPU).

Built this way for time, measured on the 2-core VM: each jax.random draw of a new shape is its own
XLA compile (1-2 s), which made building one tiny layer through its initialisers take 10-20 s, so
weights come from NumPy into an abstract module (nnx.eval_shape); and each compiled DSA program
costs 2-3 s, so a run computes the DSA output, its selection and the dense-MLA output of the same
weights in one program, and the test files share these runs (B = 2 requests, T = 20 tokens split
P = 8 + 12, SLOTS = 24 cache slots) so that each shape compiles once: the tests' runs are `whole_run` (T tokens, with dense),
`cached_run` (the last T - P over the first P tokens' entries, in chunks), and decode over SLOTS.
A prefix's entries are the whole run's first P: an entry is a projection of its own token alone.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dualpath_jax.model import abstract_model, get_config
from dualpath_jax.model.attention import MLA
from dualpath_jax.model.indexer import index_scores
from dualpath_jax.model.sparse import INDEX_LOGITS_BUDGET_BYTES, DSAttention

B, T, P, SLOTS = 2, 20, 8, 24
CHUNK_QUERIES = 8  # cached_run's prefill: 8 queries at a time


def fill_numpy(module, seed: int, std: float):
    """module (abstract or not) with every parameter drawn from NumPy: N(0, std) for weights, norm
    scales 1 + N(0, 0.1) and biases N(0, 0.1) (so the norms' parameters matter)."""
    graphdef, state = nnx.split(module)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(path[-2] if path and str(path[-1]) == "value" else path[-1])
        noise = rng.standard_normal(leaf.shape)
        if "weight" in name and len(leaf.shape) == 1:
            value = 1.0 + 0.1 * noise
        elif "bias" in name:
            value = 0.1 * noise
        else:
            value = std * noise
        return jnp.asarray(value, leaf.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(draw, state))


@functools.cache
def tiny_dsa_layer(seed: int = 0) -> DSAttention:
    """One DSA attention layer of the tiny_dsa shape (index_topk 8; XLA kernel, as the model
    builders would choose on CPU). Cached: tests must not modify it."""
    cfg = get_config("tiny_dsa", attn_impl="xla")
    return fill_numpy(nnx.eval_shape(lambda: DSAttention(cfg, rngs=nnx.Rngs(0))), seed, cfg.init_std)


def tiny_dsa_model(seed: int = 0, **overrides):
    """The tiny_dsa Transformer with NumPy-drawn weights."""
    cfg = get_config("tiny_dsa", **overrides)
    return fill_numpy(abstract_model(cfg), seed, cfg.init_std)


def hidden(layer: DSAttention, batch: int = B, tokens: int = T, seed: int = 1) -> np.ndarray:
    """Hidden states [batch, tokens, D] ~ N(0, 1), the scale of the layer's normed input."""
    return np.random.default_rng(seed).standard_normal((batch, tokens, layer.cfg.d_model)).astype(np.float32)


class PrefillRun(NamedTuple):
    out: jax.Array  # [B,T,D] DSA prefill output
    entries: jax.Array  # [B,T,W] the new tokens' cache entries
    keys: jax.Array  # [B,L,W] prefix then new entries: what the queries select from
    idx: jax.Array  # [B,T,Z] the selection (layer.select over keys, causal)
    selected: jax.Array  # [B,T,Z]
    scores: jax.Array  # [B,T,L] index scores
    q_nope: jax.Array  # [B,T,H,K]
    q_rope: jax.Array  # [B,T,H,R]
    dense: jax.Array | None  # [B,T,D] MLA.prefill of the same weights over every visible key


@functools.partial(nnx.jit, static_argnames=("dense", "chunk"))
def run_prefill(layer: DSAttention, x, prefix, *, dense: bool = False, chunk: int = 0) -> PrefillRun:
    """dense: also MLA's output (only what a test asks for is compiled: a bigger program compiles
    slower). chunk > 0: the prefill runs `chunk` queries at a time."""
    cfg = layer.cfg
    b, t, _ = x.shape
    p = 0 if prefix is None else prefix.shape[1]
    budget = chunk * cfg.index_n_heads * (p + t) * 4 if chunk else INDEX_LOGITS_BUDGET_BYTES
    out, entries = layer.prefill(x, prefix, budget=budget)
    keys = entries if prefix is None else jnp.concatenate([prefix, entries], axis=1)
    pos = jnp.broadcast_to(p + jnp.arange(t, dtype=jnp.int32), (b, t))
    visible = jnp.arange(p + t)[None, None, :] <= pos[..., None]
    idx, selected = layer.select(x, pos, keys, visible)
    scores = index_scores(
        layer.indexer.queries(layer.q_latent(x), pos), layer.indexer.head_weights(x), keys[..., cfg.kv_width :]
    )
    q_nope, q_rope = layer.project_q(x, pos)
    dense_out = MLA.prefill(layer, x, None if prefix is None else prefix[..., : cfg.kv_width])[0] if dense else None
    return PrefillRun(out, entries, keys, idx, selected, scores, q_nope, q_rope, dense_out)


def whole_run(layer: DSAttention, x) -> PrefillRun:
    """One prefill of all T tokens of x [B,T,D], with the dense-MLA output."""
    return run_prefill(layer, x, None, dense=True)


def cached_run(layer: DSAttention, x) -> PrefillRun:
    """A prefill of x's last T - P tokens over its first P tokens' entries, CHUNK_QUERIES queries
    at a time (12 = 8 + 4, the last chunk padded)."""
    return run_prefill(layer, x[:, P:], whole_run(layer, x).entries[:, :P], chunk=CHUNK_QUERIES)


class DecodeRun(NamedTuple):
    out: jax.Array  # [B,D]
    cache: jax.Array  # [B,L,W] with this step's entries written
    idx: jax.Array  # [B,1,Z] the selection over the updated cache
    selected: jax.Array  # [B,1,Z]
    dense: jax.Array  # [B,D] MLA.decode of the same weights over every visible slot


@nnx.jit
def run_decode(layer: DSAttention, x, cache, pos) -> DecodeRun:
    out, after = layer.decode(x, cache, pos)
    visible = jnp.arange(cache.shape[1])[None, None, :] <= pos[:, None, None]
    idx, selected = layer.select(x[:, None], pos[:, None], after, visible)
    dense = MLA.decode(layer, x, cache[..., : layer.cfg.kv_width], pos)[0]
    return DecodeRun(out, after, idx, selected, dense)

"""DeepSeek-style transformer: embedding -> blocks (MLA + dense MLP or DeepSeekMoE) -> norm -> head.

Axis letters (capitals in the einsum strings): docs/model.md "Axis letters". Used here: B batch,
T tokens, D d_model, N vocabulary, Y layers, L cache slots, M = C+R the cached entry.

KV in and out of the model is the joined cache entry, per layer [B, tokens, M] (cache.py); the
prefill attention kernel is chosen once, when the Transformer is built (attention.choose_attn_impl).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from .attention import MLA, choose_attn_impl
from .cache import KVCache
from .config import ModelConfig
from .layers import MLP, RMSNorm, param
from .moe import MoE
from .sparse import DSAttention


class PrefillOutput(NamedTuple):
    """logits [B,T,N] float32; kv: Y arrays [B,T,M], the new tokens' cache entries per layer;
    hidden [B,T,D]: the last block's output (before the final norm)."""

    logits: jax.Array
    kv: tuple[jax.Array, ...]
    hidden: jax.Array


def with_attn_impl(cfg: ModelConfig) -> ModelConfig:
    """cfg with its prefill attention kernel chosen for the default backend (see choose_attn_impl)."""
    impl = choose_attn_impl(cfg)
    return cfg if impl == cfg.attn_impl else cfg.replace(attn_impl=impl)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_eps, cfg.jdtype)
        self.attn = DSAttention(cfg, rngs=rngs) if cfg.is_dsa else MLA(cfg, rngs=rngs)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.rms_eps, cfg.jdtype)
        self.is_moe = cfg.is_moe_layer(layer_idx)
        if self.is_moe:
            self.ffn = MoE(cfg, rngs=rngs)
        else:
            self.ffn = MLP(cfg.d_model, cfg.dense_ffn, cfg.jdtype, cfg.init_std, rngs=rngs)

    def _ffn(self, x, decode: bool):
        with jax.named_scope("ffn_norm"):
            h = self.ffn_norm(x)
        if self.is_moe:
            with jax.named_scope("moe"):
                return x + self.ffn(h, capacity_factor=0.0 if decode else None)
        with jax.named_scope("mlp"):
            return x + self.ffn(h)

    def prefill(self, x, prefix_kv=None):
        """x [B,T,D], prefix_kv [B,P,M] or None -> (x [B,T,D], the new tokens' kv [B,T,M])."""
        with jax.named_scope("attn_norm"):
            h = self.attn_norm(x)
        with jax.named_scope("attention"):
            a, kv = self.attn.prefill(h, prefix_kv)
        return self._ffn(x + a, decode=False), kv

    def decode(self, x, cache, positions):
        """x [B,D] at positions [B]; cache [B,L,M] this layer's -> (x [B,D], cache with x's entry)."""
        with jax.named_scope("attn_norm"):
            h = self.attn_norm(x)
        with jax.named_scope("attention"):
            a, cache = self.attn.decode(h, cache, positions)
        return self._ffn(x + a, decode=True), cache


def head_logits(final_norm: RMSNorm, lm_head, x):
    """x [..., D] -> float32 logits [..., N]."""
    with jax.named_scope("logits"):
        return jnp.einsum("...D,DN->...N", final_norm(x), lm_head, preferred_element_type=jnp.float32)


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        cfg = with_attn_impl(cfg)  # decided here, once; self.cfg.attn_impl records the kernel
        self.cfg = cfg
        self.embed = param(rngs, (cfg.vocab_size, cfg.d_model), cfg.jdtype, 1.0)
        self.layers = nnx.List([Block(cfg, i, rngs=rngs) for i in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg.rms_eps, cfg.jdtype)
        self.lm_head = param(rngs, (cfg.d_model, cfg.vocab_size), cfg.jdtype, cfg.init_std)

    def embed_tokens(self, tokens):
        with jax.named_scope("embed"):
            return self.embed[...][tokens]

    def logits(self, x):
        """x [..., D] -> float32 logits [..., N]."""
        return head_logits(self.final_norm, self.lm_head[...], x)

    def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
        """An empty decode cache for this model (KVCache.init, for callers holding only a config)."""
        return KVCache.init(self.cfg, batch, max_len, dtype)


def prefill(model: Transformer, tokens, prefix_kv=None) -> PrefillOutput:
    """Whole-model prefill of tokens [B,T] after an optional cached prefix: prefix_kv indexed by
    layer (Y arrays [B,P,M], or one [Y,B,P,M] array) or None."""
    x = model.embed_tokens(tokens)
    kv = []
    for i, layer in enumerate(model.layers):
        with jax.named_scope(f"layer_{i}"):
            x, kv_i = layer.prefill(x, None if prefix_kv is None else prefix_kv[i])
        kv.append(kv_i)
    return PrefillOutput(model.logits(x), tuple(kv), x)


def decode_step(model: Transformer, tokens, cache: KVCache):
    """One decode step for a batch: tokens [B] at positions cache.lengths.

    Returns (logits [B,N] float32, cache with this token written and lengths + 1). Requests whose
    cache is full (lengths == max_len) are not written; their output is meaningless.
    """
    pos = cache.lengths
    x = model.embed_tokens(tokens)
    kv = list(cache.kv)
    for i, layer in enumerate(model.layers):
        with jax.named_scope(f"layer_{i}"):
            x, kv[i] = layer.decode(x, kv[i], pos)
    return model.logits(x), KVCache(kv=tuple(kv), lengths=pos + 1)


# ---- building ------------------------------------------------------------------------------


def make_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """Random weights from a seed, created inside jit (on the default device, in cfg.dtype)."""
    cfg = with_attn_impl(cfg)  # outside the trace: the choice may compile a probe
    return nnx.jit(lambda: Transformer(cfg, rngs=nnx.Rngs(seed)))()


def make_model_fast(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """Random weights created on device one layer at a time: one small compiled init per layer
    kind (dense / MoE) instead of one program for the whole model, which takes minutes to
    compile at ds16b size. Same distributions as make_model, different draws."""
    cfg = with_attn_impl(cfg)
    model = abstract_model(cfg)

    @partial(jax.jit, static_argnums=(1,))
    def block_state(key, layer_idx):
        return nnx.state(Block(cfg, layer_idx, rngs=nnx.Rngs(key)))

    @jax.jit
    def top(key):
        m = Transformer(cfg.replace(n_layers=0), rngs=nnx.Rngs(key))
        return m.embed[...], m.lm_head[...], nnx.state(m.final_norm)

    keys = jax.random.split(jax.random.key(seed), cfg.n_layers + 1)
    embed, head, norm = top(keys[0])
    model.embed.set_value(embed)
    model.lm_head.set_value(head)
    nnx.update(model.final_norm, norm)
    for i, layer in enumerate(model.layers):
        kind = cfg.first_k_dense if cfg.is_moe_layer(i) else 0  # one compile per layer kind
        nnx.update(layer, block_state(keys[i + 1], kind))
    return model


def abstract_model(cfg: ModelConfig) -> Transformer:
    """Shapes and dtypes only (no memory): for restoring checkpoints and full-size shape checks."""
    cfg = with_attn_impl(cfg)
    return nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))


# ---- jitted entry points over (graphdef, state) --------------------------------------------


def jit_prefill(graphdef):
    """jit(prefill) over the model state: fn(state, tokens, prefix_kv=None) -> PrefillOutput."""

    @jax.jit
    def fn(state, tokens, prefix_kv=None):
        return prefill(nnx.merge(graphdef, state), tokens, prefix_kv)

    return fn


def jit_decode_step(graphdef):
    """jit(decode_step) with the cache donated: fn(state, tokens, cache) -> (logits, cache)."""

    @partial(jax.jit, donate_argnums=(2,))
    def fn(state, tokens, cache):
        return decode_step(nnx.merge(graphdef, state), tokens, cache)

    return fn

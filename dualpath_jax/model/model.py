"""DeepSeek-style transformer: embedding -> blocks (MLA + dense MLP or DeepSeekMoE) -> norm -> head.

Axis letters used in einsums here:
  B batch, T tokens, D d_model, N vocabulary, Y layers, L cache slots, C kv latent, R rope dims.

Caches are explicit pytrees (KVCache): latent [Y,B,L,C], rope [Y,B,L,R], lengths [B].
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .attention import MLA
from .config import ModelConfig
from .layers import MLP, RMSNorm, param
from .moe import MoE


@partial(jax.tree_util.register_dataclass, data_fields=["latent", "rope", "lengths"], meta_fields=[])
@dataclasses.dataclass
class KVCache:
    """Decode cache; lengths [B] = valid slots per request.

    Two layouts of the same data: "stacked" (latent [Y,B,L,C], rope [Y,B,L,R]; one array each) or
    "layers" (tuples of Y arrays [B,L,C] / [B,L,R]; each layer's buffer is updated in place on its
    own, which avoids slicing one layer out of a stacked buffer on every decode step).
    """

    latent: Any
    rope: Any
    lengths: jax.Array

    @staticmethod
    def init(cfg: ModelConfig, batch: int, max_len: int, dtype=None, layout: str = "stacked") -> "KVCache":
        dt = dtype or cfg.jdtype
        lat = (batch, max_len, cfg.kv_lora_rank)
        rop = (batch, max_len, cfg.qk_rope_dim)
        if layout == "stacked":
            return KVCache(
                latent=jnp.zeros((cfg.n_layers,) + lat, dt),
                rope=jnp.zeros((cfg.n_layers,) + rop, dt),
                lengths=jnp.zeros((batch,), jnp.int32),
            )
        if layout == "layers":
            return KVCache(
                latent=tuple(jnp.zeros(lat, dt) for _ in range(cfg.n_layers)),
                rope=tuple(jnp.zeros(rop, dt) for _ in range(cfg.n_layers)),
                lengths=jnp.zeros((batch,), jnp.int32),
            )
        raise ValueError(f"unknown cache layout {layout!r}; expected 'stacked' or 'layers'")

    @property
    def stacked(self) -> bool:
        return not isinstance(self.latent, (tuple, list))

    @property
    def max_len(self) -> int:
        return (self.latent if self.stacked else self.latent[0]).shape[-2]


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_eps, cfg.jdtype)
        self.attn = MLA(cfg, rngs)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.rms_eps, cfg.jdtype)
        self.is_moe = cfg.is_moe_layer(layer_idx)
        self.ffn = MoE(cfg, rngs) if self.is_moe else MLP(cfg.d_model, cfg.dense_ffn, cfg.jdtype, cfg.init_std, rngs)

    def _ffn(self, x, decode: bool):
        h = self.ffn_norm(x)
        if self.is_moe:
            return x + self.ffn(h, capacity_factor=0.0 if decode else None)
        return x + self.ffn(h)

    def prefill(self, x, prefix_latent=None, prefix_rope=None):
        """x [B,T,D] -> (x [B,T,D], latent [B,T,C], rope [B,T,R]) for the new tokens."""
        a, latent, rope = self.attn.prefill(self.attn_norm(x), prefix_latent, prefix_rope)
        return self._ffn(x + a, decode=False), latent, rope

    def decode(self, x, latent_cache, rope_cache, lengths):
        """x [B,D]; caches [B,L,*] already hold this token at lengths - 1."""
        return self._ffn(x + self.attn.decode(self.attn_norm(x), latent_cache, rope_cache, lengths), decode=True)


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = param(rngs, (cfg.vocab_size, cfg.d_model), cfg.jdtype, 1.0)
        self.layers = nnx.List([Block(cfg, i, rngs) for i in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg.d_model, cfg.rms_eps, cfg.jdtype)
        self.lm_head = param(rngs, (cfg.d_model, cfg.vocab_size), cfg.jdtype, cfg.init_std)

    def embed_tokens(self, tokens):
        return self.embed[...][tokens]

    def logits(self, x):
        """x [..., D] -> float32 logits [..., N]."""
        return jnp.einsum("...d,dn->...n", self.final_norm(x), self.lm_head[...], preferred_element_type=jnp.float32)


def prefill(model: Transformer, tokens, prefix_latent=None, prefix_rope=None):
    """Whole-model prefill of tokens [B,T] after an optional cached prefix
    (prefix_latent [Y,B,P,C], prefix_rope [Y,B,P,R]).

    Returns (logits [B,T,N] float32, latent [Y,B,T,C], rope [Y,B,T,R]) for the new tokens.
    """
    x = model.embed_tokens(tokens)
    lat, rop = [], []
    for i, layer in enumerate(model.layers):
        pl = None if prefix_latent is None else prefix_latent[i]
        pr = None if prefix_rope is None else prefix_rope[i]
        x, l_i, r_i = layer.prefill(x, pl, pr)
        lat.append(l_i)
        rop.append(r_i)
    return model.logits(x), jnp.stack(lat), jnp.stack(rop)


def insert_prefill(cache: KVCache, latent, rope, lengths) -> KVCache:
    """Write prefill outputs (latent [Y,B,T,C], rope [Y,B,T,R], covering positions 0..T-1 of each
    request) into a decode cache and set lengths [B] (tokens valid per request)."""
    t = latent.shape[2]
    lengths = jnp.asarray(lengths, jnp.int32)
    if cache.stacked:
        return KVCache(
            latent=cache.latent.at[:, :, :t].set(latent.astype(cache.latent.dtype)),
            rope=cache.rope.at[:, :, :t].set(rope.astype(cache.rope.dtype)),
            lengths=lengths,
        )
    return KVCache(
        latent=tuple(c.at[:, :t].set(latent[i].astype(c.dtype)) for i, c in enumerate(cache.latent)),
        rope=tuple(c.at[:, :t].set(rope[i].astype(c.dtype)) for i, c in enumerate(cache.rope)),
        lengths=lengths,
    )


def decode_step(model: Transformer, tokens, cache: KVCache):
    """One decode step for a batch: tokens [B] at positions cache.lengths.

    Returns (logits [B,N] float32, cache with this token written and lengths + 1). Requests whose
    cache is full (lengths == max_len) are not written; their output is meaningless.
    """
    b = tokens.shape[0]
    pos = cache.lengths
    new_len = pos + 1
    x = model.embed_tokens(tokens)
    rows = jnp.arange(b)
    if cache.stacked:
        latent, rope = cache.latent, cache.rope
    else:
        latent, rope = list(cache.latent), list(cache.rope)
    for i, layer in enumerate(model.layers):
        l_new, r_new = layer.attn.project_kv(layer.attn_norm(x), pos)
        if cache.stacked:
            latent = latent.at[i, rows, pos].set(l_new.astype(latent.dtype), mode="drop")
            rope = rope.at[i, rows, pos].set(r_new.astype(rope.dtype), mode="drop")
            lat_i, rope_i = latent[i], rope[i]
        else:
            latent[i] = latent[i].at[rows, pos].set(l_new.astype(latent[i].dtype), mode="drop")
            rope[i] = rope[i].at[rows, pos].set(r_new.astype(rope[i].dtype), mode="drop")
            lat_i, rope_i = latent[i], rope[i]
        x = layer.decode(x, lat_i, rope_i, new_len)
    if not cache.stacked:
        latent, rope = tuple(latent), tuple(rope)
    return model.logits(x), KVCache(latent=latent, rope=rope, lengths=new_len)


# ---- jitted entry points over (graphdef, state) --------------------------------------------


def make_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """Random weights from a seed, created inside jit (on the default device, in cfg.dtype)."""
    return nnx.jit(lambda: Transformer(cfg, nnx.Rngs(seed)))()


def make_model_fast(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """Random weights created on device one layer at a time: one small compiled init per layer
    kind (dense / MoE) instead of one program for the whole model, which takes minutes to
    compile at ds16b size. Same distributions as make_model, different draws."""
    model = abstract_model(cfg)

    @partial(jax.jit, static_argnums=(1,))
    def block_state(key, layer_idx):
        return nnx.state(Block(cfg, layer_idx, nnx.Rngs(key)))

    @jax.jit
    def top(key):
        m = Transformer(cfg.replace(n_layers=0), nnx.Rngs(key))
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
    """Shapes and dtypes only (no memory); for restoring checkpoints."""
    return nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0)))


def jit_prefill(graphdef):
    """jit(prefill) over the model state: fn(state, tokens, prefix_latent, prefix_rope)."""

    @jax.jit
    def fn(state, tokens, prefix_latent=None, prefix_rope=None):
        return prefill(nnx.merge(graphdef, state), tokens, prefix_latent, prefix_rope)

    return fn


def jit_decode_step(graphdef):
    """jit(decode_step) with the cache donated: fn(state, tokens, cache) -> (logits, cache)."""

    @partial(jax.jit, donate_argnums=(2,))
    def fn(state, tokens, cache):
        return decode_step(nnx.merge(graphdef, state), tokens, cache)

    return fn

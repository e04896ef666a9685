"""The decode cache: for each layer, every slot's joined MLA entries [M] = latent [C] then rope [R].

Axis letters: docs/model.md "Axis letters" (Y layers, B requests (cache slots of a batch), L token
slots, M = C+R). This is the layout the KV store and the serving testbed use (one request's KV is
[Y, n, M]), so moving KV in and out of a cache is a copy, never a split or a join.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp

from .config import ModelConfig


@partial(jax.tree_util.register_dataclass, data_fields=["kv", "lengths"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class KVCache:
    """kv: Y arrays [B,L,M], one per layer; lengths [B] int32: valid slots per request.

    One array per layer, not one stacked [Y,B,L,M] array: decode then updates each layer's buffer
    in place on its own, where a stacked buffer has one layer copied out of it on every step
    (1.65x slower per decode step on an H100, docs/model.md). A pytree, so it passes through jit;
    `insert` donates the buffers it is given.
    """

    kv: tuple[jax.Array, ...]
    lengths: jax.Array

    @staticmethod
    def init(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> KVCache:
        """An empty cache (zeros, lengths 0) for `batch` requests of up to `max_len` tokens."""
        shape = (batch, max_len, cfg.cache_width)  # M, or W = M + the index key under DSA
        return KVCache(
            kv=tuple(jnp.zeros(shape, dtype or cfg.jdtype) for _ in range(cfg.n_layers)),
            lengths=jnp.zeros((batch,), jnp.int32),
        )

    @property
    def batch(self) -> int:
        return self.kv[0].shape[0]

    @property
    def max_len(self) -> int:
        return self.kv[0].shape[1]

    @property
    def width(self) -> int:
        return self.kv[0].shape[2]

    def with_lengths(self, lengths) -> KVCache:
        return KVCache(kv=self.kv, lengths=jnp.asarray(lengths, jnp.int32))

    def insert(self, slot, kv) -> KVCache:
        """Write one request's KV kv [Y,n,M] into slot `slot` at tokens 0..n-1 of every layer.

        Consumes this cache: its buffers are donated to the result. `lengths` is left as it is
        (the caller says how many tokens of each slot are valid). `slot` may be a traced int32.
        """
        return KVCache(kv=_insert(self.kv, slot, kv), lengths=self.lengths)

    def extract(self, slot, start, n: int) -> jax.Array:
        """The KV [Y,n,M] of slot `slot`, tokens start..start+n-1 (a copy; the cache is kept)."""
        return _extract(self.kv, slot, start, n)


@partial(jax.jit, donate_argnums=(0,))
def _insert(layers, slot, kv):
    return tuple(
        jax.lax.dynamic_update_slice(layer, kv[i, None].astype(layer.dtype), (slot, 0, 0))
        for i, layer in enumerate(layers)
    )


@partial(jax.jit, static_argnums=(3,))
def _extract(layers, slot, start, n: int):
    return jnp.stack([jax.lax.dynamic_slice(layer, (slot, start, 0), (1, n, layer.shape[-1]))[0] for layer in layers])

"""KV bytes between the model's arrays and the store's Full Blocks.

Per token per layer the model's cache entry is one joined vector [M] = latent [C] then rope [R]
in the model dtype (dualpath_jax/model/cache.py), and under DeepSeek Sparse Attention [W] = [M]
then the indexer key [I] (`cfg.cache_width`); the store keeps it as B = width * itemsize bytes
(`BlockLayout(layers=Y, bytes_per_token=B)`). Host arrays here are `kv [Y, tokens, M or W]` in the
model dtype (numpy; bfloat16 via ml_dtypes), the layout `KVCache.insert` / `extract` and
`LayerwisePrefill.layer_kv` take and give, so nothing here splits or joins latent, rope and key.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
import numpy as np

from ..kvstore import BlockLayout
from ..model import ModelConfig


def np_dtype(cfg: ModelConfig) -> np.dtype:
    return np.dtype(cfg.dtype)


def bytes_per_token(cfg: ModelConfig) -> int:
    """KV bytes per token over all layers: the unit of the data-path plan."""
    return cfg.n_layers * cfg.kv_bytes_per_token_layer()


def block_layout(cfg: ModelConfig, tokens_per_block: int) -> BlockLayout:
    return BlockLayout(
        layers=cfg.n_layers, bytes_per_token=cfg.kv_bytes_per_token_layer(), tokens_per_block=tokens_per_block
    )


def layer_of_blocks(blocks_u8: np.ndarray, layer: int, cfg: ModelConfig) -> np.ndarray:
    """Full Blocks uint8 [n, Y, T, B] -> that layer's KV [n*T, M] (contiguous host copy)."""
    n, _, t, _ = blocks_u8.shape
    return np.ascontiguousarray(blocks_u8[:, layer]).view(np_dtype(cfg)).reshape(n * t, cfg.cache_width)


def blocks_of(kv: np.ndarray, tokens_per_block: int) -> np.ndarray:
    """kv [Y, n*T, D] (whole blocks) -> Full Blocks [n, Y, T, D] for `KVStore.write`."""
    y, tok, d = kv.shape
    n = tok // tokens_per_block
    return np.ascontiguousarray(kv[:, : n * tokens_per_block].reshape(y, n, tokens_per_block, d).transpose(1, 0, 2, 3))


@partial(jax.jit, static_argnums=(2,))
def layer_prefix(kv, layer, n: int):
    """Device: kv [Y, F, D] -> layer `layer`'s first n tokens [1, n, D] (layer is dynamic)."""
    return jax.lax.dynamic_index_in_dim(kv, layer, 0, keepdims=True)[:, :n]


@partial(jax.jit, static_argnums=(1,))
def prefix(kv, n: int):
    """Device: kv [Y, F, D] -> kv [Y, n, D]."""
    return kv[:, :n]


@partial(jax.jit, static_argnums=(1, 2))
def stage_blocks(blocks_u8, dtype: str, d: int):
    """Device: Full Blocks uint8 [n, Y, T, B] -> kv [Y, n*T, D] in `dtype` (one contiguous array).

    A bitcast and a transpose at HBM speed, so the DE path
    needs one H2D of the read blocks per request and then one device-to-device copy per layer."""
    n, y, t, b = blocks_u8.shape
    isz = b // d
    kv = blocks_u8.reshape(n, y, t, d, isz) if isz > 1 else blocks_u8.reshape(n, y, t, d)
    kv = jax.lax.bitcast_convert_type(kv, jnp.dtype(dtype))  # [n, Y, T, D]
    return kv.transpose(1, 0, 2, 3).reshape(y, n * t, d)


@jax.jit
def layer_of(kv, layer):
    """Device: kv [Y, P, D] -> layer `layer`'s KV [1, P, D] (a contiguous copy; layer is dynamic)."""
    return jax.lax.dynamic_index_in_dim(kv, layer, 0, keepdims=True)


@jax.jit
def join_tokens(first, last):
    """Device: [B, a, D] and [B, b, D] -> [B, a+b, D] (a split read's two shares, in token order)."""
    return jnp.concatenate([first, last], axis=1)


def copy_hit_to_kv(kv_host: np.ndarray, blocks_u8: np.ndarray, cfg: ModelConfig, at: int = 0) -> None:
    """Host: Full Blocks uint8 [n, Y, T, B] -> kv_host[:, at:at+n*T] ([Y, tokens, D]), one strided copy."""
    n, y, t, _ = blocks_u8.shape
    d = cfg.cache_width
    src = blocks_u8.view(np_dtype(cfg)).reshape(n, y, t, d)
    for layer in range(y):  # kv_host[layer, at:at+n*t] is contiguous, so its reshape is a view
        kv_host[layer, at : at + n * t].reshape(n, t, d)[...] = src[:, layer]

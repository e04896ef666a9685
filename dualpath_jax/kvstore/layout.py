"""Block layout: Full Blocks [layers, tokens, bytes] made of Layer Blocks [1, tokens, bytes].

Bytes are raw uint8 so any KV dtype (bf16, fp8, fp8 + scales) round-trips bit-exactly; callers view
them back with `view_as`. The per-token, per-layer byte count is free, so the store takes any model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .errors import LayoutError

# Chosen from benchmarks/bench_kvstore.py's block-size sweep (docs/kvstore.md): at 64 tokens the MLA
# layout's Full Blocks are 2.6-4.5 MB (>= 1 MiB, the size at which cold reads reach disk speed; 16-token
# blocks read 30-50% slower) and Layer Blocks 42-74 KB, while a cached prefix loses at most 63 tokens.
DEFAULT_TOKENS_PER_BLOCK = 64

# DeepSeek-style MLA cache per token per layer: 512 latent + 64 rope dims.
MLA_LATENT_DIM = 512
MLA_ROPE_DIM = 64


def mla_bytes_per_token(kv_dtype: str = "bfloat16") -> int:
    """Bytes per token per layer of the MLA cache.

    bfloat16: (512 + 64) * 2 = 1,152 B. fp8: 512 fp8 latent + 64 bf16 rope + 4 fp32 tile scales
    (one per 128 latent dims) = 656 B, the FP8 MLA cache layout of DeepSeek-V3 inference kernels.
    """
    if kv_dtype in ("bfloat16", "bf16"):
        return (MLA_LATENT_DIM + MLA_ROPE_DIM) * 2
    if kv_dtype in ("fp8", "float8_e4m3fn", "e4m3"):
        return MLA_LATENT_DIM * 1 + MLA_ROPE_DIM * 2 + (MLA_LATENT_DIM // 128) * 4
    raise LayoutError(f"kv_dtype: unknown MLA cache dtype {kv_dtype!r} (want 'bfloat16' or 'fp8')")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise LayoutError(f"{name}: must be a positive integer, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """Shape of one Full Block: [layers, tokens_per_block, bytes_per_token] of uint8."""

    layers: int
    bytes_per_token: int
    tokens_per_block: int = DEFAULT_TOKENS_PER_BLOCK

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _positive_int(f.name, getattr(self, f.name))

    @classmethod
    def mla(
        cls, layers: int = 61, kv_dtype: str = "bfloat16", tokens_per_block: int = DEFAULT_TOKENS_PER_BLOCK
    ) -> "BlockLayout":
        return cls(layers=layers, bytes_per_token=mla_bytes_per_token(kv_dtype), tokens_per_block=tokens_per_block)

    # --- sizes -------------------------------------------------------------------------------
    @property
    def full_block_shape(self) -> tuple[int, int, int]:
        return (self.layers, self.tokens_per_block, self.bytes_per_token)

    @property
    def layer_block_shape(self) -> tuple[int, int]:
        return (self.tokens_per_block, self.bytes_per_token)

    @property
    def layer_block_nbytes(self) -> int:
        return self.tokens_per_block * self.bytes_per_token

    @property
    def full_block_nbytes(self) -> int:
        return self.layers * self.layer_block_nbytes

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "BlockLayout":
        try:
            return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})
        except KeyError as e:
            raise LayoutError(f"layout.{e.args[0]}: missing in stored store metadata") from None

    def check_same(self, other: "BlockLayout", where: str) -> None:
        """Raise naming the first field in which `other` (the stored layout) differs."""
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                raise LayoutError(f"layout.{f.name}: asked for {a} but the store at {where} has {b}")

    # --- byte views --------------------------------------------------------------------------
    def as_bytes(self, blocks: Any, field: str = "blocks") -> np.ndarray:
        """View `blocks` ([n, L, T, D] or one block [L, T, D], any dtype) as uint8 [n, L, T, B].

        D * itemsize must equal bytes_per_token. Raises LayoutError naming `field` otherwise.
        """
        try:
            arr = np.asarray(blocks)
        except Exception as e:  # pragma: no cover - exotic inputs
            raise LayoutError(f"{field}: cannot be converted to a numpy array ({e})") from e
        if arr.dtype == object or arr.dtype.itemsize == 0 or arr.dtype.hasobject:
            raise LayoutError(f"{field}: dtype {arr.dtype} is not a fixed-size numeric dtype")
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise LayoutError(
                f"{field}: expected shape [n, {self.layers}, {self.tokens_per_block}, D] "
                f"(or one block [{self.layers}, {self.tokens_per_block}, D]), got {arr.shape}"
            )
        n, L, T, D = arr.shape
        if L != self.layers:
            raise LayoutError(f"{field}: axis 1 (layers) is {L}, layout has {self.layers}")
        if T != self.tokens_per_block:
            raise LayoutError(f"{field}: axis 2 (tokens) is {T}, layout has tokens_per_block={self.tokens_per_block}")
        if D * arr.dtype.itemsize != self.bytes_per_token:
            raise LayoutError(
                f"{field}: last axis is {D} x {arr.dtype} ({arr.dtype.itemsize} B) = "
                f"{D * arr.dtype.itemsize} B per token, layout has bytes_per_token={self.bytes_per_token}"
            )
        arr = np.ascontiguousarray(arr)
        return arr.view(np.uint8).reshape(n, L, T, self.bytes_per_token)


def view_as(raw: np.ndarray, dtype: Any) -> np.ndarray:
    """View uint8 [..., B] bytes as `dtype` [..., B // itemsize] (no copy), e.g. jnp.bfloat16."""
    dt = np.dtype(dtype)
    if raw.dtype != np.uint8:
        raise LayoutError(f"raw: expected uint8 bytes, got {raw.dtype}")
    if raw.shape[-1] % dt.itemsize:
        raise LayoutError(f"dtype: {raw.shape[-1]} bytes per token is not a multiple of {dt} itemsize {dt.itemsize}")
    return np.ascontiguousarray(raw).view(dt)

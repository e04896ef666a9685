"""DeepSeek's FP8 block quantization: a weight [O, I] in float8_e4m3fn with `weight_scale_inv`
[ceil(O/bo), ceil(I/bi)] float32, one scale per bo x bi block (edge blocks partial: the
quantizer zero-pads them). The weight is fp8 * scale_inv (DeepSeek-V3 inference/kernel.py
`weight_dequant`)."""

from __future__ import annotations

import math

import numpy as np


def dequantize(q: np.ndarray, scale_inv: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """-> float32 [O, I]. Raises ValueError if scale_inv's shape does not fit q's."""
    bo, bi = block
    o, i = q.shape
    want = (math.ceil(o / bo), math.ceil(i / bi))
    if tuple(scale_inv.shape) != want:
        raise ValueError(f"weight_scale_inv shape {tuple(scale_inv.shape)} != {want} for weight {q.shape} "
                         f"in {bo}x{bi} blocks")  # fmt: skip
    scale = np.repeat(np.repeat(scale_inv.astype(np.float32), bo, axis=0), bi, axis=1)[:o, :i]
    return q.astype(np.float32) * scale

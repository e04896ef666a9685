"""Rotary position frequencies, plain or YaRN-scaled, and YaRN's two attention factors.

YaRN (Peng et al. 2023, arXiv:2309.00071) as DeepSeek-V2/V3 use it, in transformers' form
(`modeling_rope_utils._compute_yarn_parameters`, `yarn_apply_mscale` in modeling_deepseek_v3.py):
- frequencies: each rope dim blends the original frequency (extrapolation, fast-rotating dims)
  and the frequency divided by `factor` (interpolation, slow dims) with a linear ramp between the
  dims that rotate beta_fast and beta_slow times over the original context;
- cos and sin are multiplied by mscale(factor, mscale) / mscale(factor, mscale_all_dim), so the
  rope part of every score carries that factor squared (1 when the two are equal, as in every
  published DeepSeek config);
- the softmax scale is multiplied by mscale(factor, mscale_all_dim)^2.
with mscale(s, m) = 0.1 m ln(s) + 1 for s > 1, else 1.

The frequencies are constants of the config, computed once in NumPy float32.
"""

from __future__ import annotations

import math

import numpy as np

from .config import RopeYarn


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_inv_freq(dim: int, theta: float, yarn: RopeYarn) -> np.ndarray:
    """[dim // 2] float32 inverse frequencies, YaRN-blended."""
    pos_freqs = np.float32(theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
    extrapolation = np.float32(1.0) / pos_freqs
    interpolation = np.float32(1.0) / (np.float32(yarn.factor) * pos_freqs)

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(yarn.original_max_position / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(yarn.beta_fast)), 0)
    high = min(math.ceil(correction_dim(yarn.beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # as transformers: avoids a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / np.float32(high - low), 0, 1)
    extrapolation_weight = np.float32(1.0) - ramp
    return (interpolation * (1 - extrapolation_weight) + extrapolation * extrapolation_weight).astype(np.float32)


def yarn_rope_factor(yarn: RopeYarn) -> float:
    """The factor on cos and sin (transformers' `attention_factor`)."""
    if yarn.mscale and yarn.mscale_all_dim:
        return yarn_mscale(yarn.factor, yarn.mscale) / yarn_mscale(yarn.factor, yarn.mscale_all_dim)
    return yarn_mscale(yarn.factor)


def yarn_softmax_factor(yarn: RopeYarn | None) -> float:
    """The factor on the softmax scale 1/sqrt(qk_head_dim)."""
    if yarn is None or not yarn.mscale_all_dim:
        return 1.0
    return yarn_mscale(yarn.factor, yarn.mscale_all_dim) ** 2

"""Small building blocks: parameter init, RMSNorm, RoPE, SwiGLU MLP.

Axis letters (capitals in the einsum strings): docs/model.md "Axis letters". Used here: D d_model,
F FFN hidden width, R rope dims.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .rope import yarn_inv_freq, yarn_rope_factor


def param(rngs: nnx.Rngs, shape, dtype, std: float) -> nnx.Param:
    """Random-normal parameter created directly in `dtype` (cheap under jit on device)."""
    return nnx.Param(jax.random.normal(rngs.params(), shape, dtype) * jnp.asarray(std, dtype))


class RMSNorm(nnx.Module):
    """No random init, so no rngs."""

    def __init__(self, dim: int, eps: float, dtype):
        self.weight = nnx.Param(jnp.ones((dim,), dtype))
        self.eps = eps

    def __call__(self, x):
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (xf * self.weight[...].astype(jnp.float32)).astype(x.dtype)


def rope_angles(positions, dim: int, theta: float, yarn=None):
    """cos, sin of shape positions.shape + (dim // 2,), float32. yarn: a config.RopeYarn for
    YaRN-scaled frequencies with its factor on cos and sin (rope.py), or None for plain RoPE."""
    if yarn is None:
        inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
        ang = positions.astype(jnp.float32)[..., None] * inv_freq
        return jnp.cos(ang), jnp.sin(ang)
    ang = positions.astype(jnp.float32)[..., None] * jnp.asarray(yarn_inv_freq(dim, theta, yarn))
    factor = jnp.float32(yarn_rope_factor(yarn))
    return jnp.cos(ang) * factor, jnp.sin(ang) * factor


def apply_rope(x, cos, sin):
    """Rotate-half RoPE on the last axis of x [..., R]; cos/sin broadcast to x[..., :R/2].

    Pairs are (i, i + R/2) (the GPT-NeoX / Llama layout). DeepSeek's reference code pairs
    interleaved dims; with random or self-trained weights the two are equivalent up to a fixed
    permutation of the rope dims of W_q and W_kv_a.
    """
    half = x.shape[-1] // 2
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., :half], xf[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


class MLP(nnx.Module):
    """SwiGLU MLP: down(silu(x W_gate) * (x W_up))."""

    def __init__(self, d_model: int, ffn: int, dtype, std: float, *, rngs: nnx.Rngs):
        self.w_gate = param(rngs, (d_model, ffn), dtype, std)
        self.w_up = param(rngs, (d_model, ffn), dtype, std)
        self.w_down = param(rngs, (ffn, d_model), dtype, std)

    def __call__(self, x):
        g = jnp.einsum("...D,DF->...F", x, self.w_gate[...])
        u = jnp.einsum("...D,DF->...F", x, self.w_up[...])
        return jnp.einsum("...F,FD->...D", jax.nn.silu(g) * u, self.w_down[...])

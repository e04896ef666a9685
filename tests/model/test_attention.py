"""Absorbed MLA (decode) against expanded MLA; prefix merge against one masked softmax."""

import jax
import jax.numpy as jnp
import numpy as np

from dualpath_jax.model.attention import absorbed_attention, expanded_attention, flash_attention, merge_attention


def test_absorbed_equals_expanded():
    b, n, h, c, k, r, v = 3, 20, 4, 32, 16, 8, 12
    keys = jax.random.split(jax.random.key(7), 6)
    q_nope = jax.random.normal(keys[0], (b, h, k))
    q_rope = jax.random.normal(keys[1], (b, h, r))
    latent = jax.random.normal(keys[2], (b, n, c))
    rope = jax.random.normal(keys[3], (b, n, r))
    w_uk = jax.random.normal(keys[4], (c, h, k)) * 0.2
    w_uv = jax.random.normal(keys[5], (c, h, v)) * 0.2
    lengths = jnp.array([1, 13, 20])
    valid = jnp.arange(n)[None] < lengths[:, None]
    a = absorbed_attention(q_nope, q_rope, latent, rope, valid, w_uk, w_uv, 0.2)
    e = expanded_attention(q_nope, q_rope, latent, rope, valid, w_uk, w_uv, 0.2)
    assert float(jnp.linalg.norm(a - e) / jnp.linalg.norm(e)) < 1e-5
    # Padding slots must not matter.
    latent2 = jnp.where(valid[..., None], latent, 1e3)
    a2 = absorbed_attention(q_nope, q_rope, latent2, rope, valid, w_uk, w_uv, 0.2)
    np.testing.assert_allclose(a2, a, rtol=1e-5, atol=1e-5)


def test_prefix_merge_equals_offset_causal_softmax():
    b, p, t, h, a, v = 2, 9, 5, 3, 8, 6
    keys = jax.random.split(jax.random.key(8), 3)
    q = jax.random.normal(keys[0], (b, t, h, a))
    kk = jax.random.normal(keys[1], (b, p + t, h, a))
    vv = jax.random.normal(keys[2], (b, p + t, h, v))
    o1, l1 = flash_attention(q, kk[:, p:], vv[:, p:], causal=True, scale=0.3, impl="xla")
    o2, l2 = flash_attention(q, kk[:, :p], vv[:, :p], causal=False, scale=0.3, impl="xla")
    out = merge_attention(o1, l1, o2, l2)
    s = jnp.einsum("bthd,bshd->bhts", q, kk) * 0.3
    mask = jnp.arange(p + t)[None, :] <= (p + jnp.arange(t))[:, None]  # query i sees keys <= p+i
    ref = jnp.einsum("bhts,bshv->bthv", jax.nn.softmax(jnp.where(mask, s, -jnp.inf), -1), vv)
    assert float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref)) < 1e-5

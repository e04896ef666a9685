"""Absorbed MLA (decode, as MQA over the joined cache) against expanded MLA; prefix merge against
one masked softmax; the prefill kernel chosen once when the model is built."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualpath_jax.model import choose_attn_impl, get_config, make_model
from dualpath_jax.model.attention import (
    absorbed_attention,
    expanded_attention,
    flash_attention,
    merge_attention,
    probe_attn_impl,
)


def test_absorbed_equals_expanded():
    b, n, h, c, k, r, v = 3, 20, 4, 32, 16, 8, 12
    keys = jax.random.split(jax.random.key(7), 6)
    q_nope = jax.random.normal(keys[0], (b, h, k))
    q_rope = jax.random.normal(keys[1], (b, h, r))
    kv = jax.random.normal(keys[2], (b, n, c + r))  # joined: latent [C] then rope [R]
    w_uk = jax.random.normal(keys[4], (c, h, k)) * 0.2
    w_uv = jax.random.normal(keys[5], (c, h, v)) * 0.2
    lengths = jnp.array([1, 13, 20])
    valid = jnp.arange(n)[None] < lengths[:, None]
    a = absorbed_attention(q_nope, q_rope, kv, valid, w_uk, w_uv, 0.2)
    e = expanded_attention(q_nope, q_rope, kv, valid, w_uk, w_uv, 0.2)
    assert float(jnp.linalg.norm(a - e) / jnp.linalg.norm(e)) < 1e-5
    # The rope part of the entry matters (it is the key's last R dims, not the value's).
    kv_r = kv.at[..., c:].multiply(-1.0)
    assert float(jnp.linalg.norm(absorbed_attention(q_nope, q_rope, kv_r, valid, w_uk, w_uv, 0.2) - a)) > 1e-3
    # Padding slots must not matter.
    kv2 = jnp.where(valid[..., None], kv, 1e3)
    a2 = absorbed_attention(q_nope, q_rope, kv2, valid, w_uk, w_uv, 0.2)
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


def test_kernel_is_chosen_when_the_model_is_built():
    """On CPU "auto" becomes "xla", recorded in the built model's config; the kernel function
    takes only a chosen kernel; a cuDNN kernel asked for where there is none fails at build time."""
    cfg = get_config("tiny", n_layers=1)
    assert cfg.attn_impl == "auto"
    model = make_model(cfg)
    assert model.cfg.attn_impl == "xla" and all(layer.attn.cfg.attn_impl == "xla" for layer in model.layers)
    if jax.default_backend() != "gpu":
        assert choose_attn_impl(get_config("ds16b")) == "xla"  # bf16, but no GPU
    q = jnp.zeros((1, 4, 2, 8))
    with pytest.raises(ValueError, match="choose_attn_impl"):
        flash_attention(q, q, q, causal=True, scale=1.0, impl="auto")
    for impl in ("cudnn", "cudnn-mla"):
        with pytest.raises(ValueError, match="needs a GPU"):
            make_model(cfg.replace(attn_impl=impl))
    with pytest.raises(ValueError, match="attn_impl"):
        cfg.replace(attn_impl="flash")


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="a GPU has cuDNN: the next test")
def test_the_gpu_probe_falls_back_to_xla_where_cudnn_cannot_compile(caplog):
    """The probe that picks the kernel on a GPU, run here on CPU: each cuDNN kernel fails with an
    exception the probe names and logs, and the choice is XLA (no exception escapes)."""
    cfg = get_config("ds16b", n_layers=1, n_heads=3)  # head count of its own: a fresh probe, not a cached one
    with caplog.at_level(logging.INFO, logger="dualpath_jax.model.attention"):
        assert probe_attn_impl(cfg) == "xla"
    assert [r.getMessage().split(" unavailable")[0] for r in caplog.records] == [
        "attention kernel cudnn-mla",
        "attention kernel cudnn",
    ]


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (Hopper, cuDNN >= 9.10)")
def test_on_a_hopper_gpu_the_mla_kernel_is_chosen_and_agrees_with_xla():
    cfg = get_config("ds16b", n_layers=1)
    assert choose_attn_impl(cfg) == "cudnn-mla"
    keys = jax.random.split(jax.random.key(3), 3)
    q = jax.random.normal(keys[0], (1, 256, 16, 192), jnp.bfloat16)
    k = jax.random.normal(keys[1], (1, 640, 16, 192), jnp.bfloat16)
    v = jax.random.normal(keys[2], (1, 640, 16, 128), jnp.bfloat16)

    def both(impl):
        o1, l1 = flash_attention(q, k[:, 384:], v[:, 384:], causal=True, scale=0.07, impl=impl)
        o2, l2 = flash_attention(q, k[:, :384], v[:, :384], causal=False, scale=0.07, impl=impl)
        return merge_attention(o1, l1, o2, l2).astype(jnp.float32)

    ref = both("xla")
    for impl in ("cudnn-mla", "cudnn"):
        assert float(jnp.linalg.norm(both(impl) - ref) / jnp.linalg.norm(ref)) < 1e-2, impl


def test_latent_norms_use_upstream_eps_not_rms_eps():
    """q_norm and kv_norm take 1e-6 (DeepSeek/transformers) even when rms_norm_eps differs; on
    small activations a latent normed with rms_eps=1e-2 would be far off."""
    from flax import nnx

    from dualpath_jax.model.attention import MLA

    cfg = get_config("tiny", rms_eps=1e-2, attn_impl="xla")
    mla = MLA(cfg, rngs=nnx.Rngs(0))
    x = 0.01 * jax.random.normal(jax.random.key(1), (5, cfg.d_model))
    latent = np.asarray(x @ mla.wkv_a[...])[:, : cfg.kv_lora_rank]
    want = latent / np.sqrt((latent**2).mean(-1, keepdims=True) + 1e-6)
    got = np.asarray(mla.project_kv(x, jnp.arange(5)))[:, : cfg.kv_lora_rank]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    q_a = np.asarray(x @ mla.wq_a[...])
    want_q = q_a / np.sqrt((q_a**2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(np.asarray(mla.q_norm(jnp.asarray(q_a))), want_q, rtol=1e-4, atol=1e-6)

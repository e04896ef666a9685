"""Whole-model consistency on the tiny config (float32, CPU)."""

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dualpath_jax.model import KVCache, LayerwisePrefill, get_config, jit_decode_step, jit_prefill, make_model

SEQ = 12


class TinyModel(NamedTuple):
    """The tiny model, split, with two requests' tokens and their full forward."""

    cfg: object
    model: object
    graphdef: object
    state: object
    tokens: jax.Array  # [2, SEQ]
    prefill_fn: object  # jit_prefill(graphdef)
    full: object  # prefill_fn(state, tokens): PrefillOutput


@pytest.fixture(scope="module")
def tiny():
    cfg = get_config("tiny")
    model = make_model(cfg, seed=0)
    # A non-zero selection bias so the bias path is exercised end to end.
    for layer in model.layers:
        if layer.is_moe:
            layer.ffn.e_bias[...] = jax.random.normal(jax.random.key(11), layer.ffn.e_bias.shape) * 0.2
    graphdef, state = nnx.split(model)
    tokens = jax.random.randint(jax.random.key(1), (2, SEQ), 0, cfg.vocab_size)
    prefill_fn = jit_prefill(graphdef)
    full = prefill_fn(state, tokens)
    return TinyModel(cfg, model, graphdef, state, tokens, prefill_fn, full)


def _close(a, b, tol=2e-5):
    a, b = np.asarray(a), np.asarray(b)
    err = np.linalg.norm(a - b) / np.linalg.norm(b)
    assert err < tol, err


def test_prefill_then_decode_equals_full_forward(tiny):
    assert np.isfinite(np.asarray(tiny.full.logits)).all()
    # Request 0 is prefilled with 3 tokens, request 1 with 5: one padded prefill of 5 tokens
    # (right padding is harmless under the causal mask), then per-request decode.
    lengths = np.array([3, 5])
    t0 = int(lengths.max())
    pad_tokens = tiny.tokens[:, :t0].at[0, 3:].set(0)
    out = tiny.prefill_fn(tiny.state, pad_tokens)
    for b in range(2):
        _close(out.logits[b, : lengths[b]], tiny.full.logits[b, : lengths[b]])
    # Each request's KV goes into its own slot, as the serving testbed's decode engine does it.
    kv = jnp.stack(out.kv)  # [Y, B, T, M]
    cache = tiny.model.init_cache(2, SEQ + 2)
    for b in range(2):
        cache = cache.insert(np.int32(b), kv[:, b, : lengths[b]])
    cache = cache.with_lengths(lengths)
    decode = jit_decode_step(tiny.graphdef)
    pos = lengths.copy()
    for _ in range(SEQ - t0 + 2):
        cur = np.minimum(pos, SEQ - 1)
        step_tokens = tiny.tokens[jnp.arange(2), cur]
        logits, cache = decode(tiny.state, step_tokens, cache)
        for b in range(2):
            if pos[b] < SEQ:
                _close(logits[b], tiny.full.logits[b, pos[b]])
        pos = pos + 1
    assert np.array_equal(np.asarray(cache.lengths), lengths + SEQ - t0 + 2)
    # The decode cache now holds the full forward's joined entries (latent and rope) for every
    # written position, and extract reads them back.
    full_kv = jnp.stack(tiny.full.kv)  # [Y, B, SEQ, M]
    for b in range(2):
        _close(jnp.stack(cache.kv)[:, b, :SEQ], full_kv[:, b])
        _close(cache.extract(np.int32(b), np.int32(2), 7), full_kv[:, b, 2:9])


def test_layerwise_prefill_with_loaded_prefix(tiny):
    p = 7
    # "Storage": the prefix cache computed by a separate prefill, kept as host numpy per layer.
    pre = tiny.prefill_fn(tiny.state, tiny.tokens[:, :p])
    stored = [np.asarray(k) for k in pre.kv]
    assert stored[0].shape == (2, p, tiny.cfg.kv_lora_rank + tiny.cfg.qk_rope_dim)
    lw = LayerwisePrefill(tiny.model)
    x = lw.embed(tiny.tokens[:, p:])
    new_kv = []
    for i in range(tiny.cfg.n_layers):
        x, kv = lw.layer_kv(i, x, jnp.asarray(stored[i]))  # arrives layer by layer
        new_kv.append(kv)
    _close(lw.head(x), tiny.full.logits[:, p:])
    _close(jnp.stack(new_kv), jnp.stack(tiny.full.kv)[:, :, p:])
    # Two distinct layer structures (dense, MoE) -> two compiled layer functions.
    assert lw.n_layer_fns == 2
    # The whole-model jitted prefill with a prefix gives the same, and so does the layerwise whole.
    _close(tiny.prefill_fn(tiny.state, tiny.tokens[:, p:], pre.kv).logits, tiny.full.logits[:, p:])
    _close(lw(tiny.tokens[:, p:], stored).logits, tiny.full.logits[:, p:])


def test_cache_insert_and_extract_touch_only_their_slot():
    cfg = get_config("tiny", n_layers=2)
    m = cfg.kv_width
    cache = KVCache.init(cfg, 3, 10)
    assert [k.shape for k in cache.kv] == [(3, 10, m)] * 2
    kv = jax.random.normal(jax.random.key(0), (2, 6, m))
    cache = cache.insert(np.int32(1), kv)
    np.testing.assert_array_equal(cache.extract(np.int32(1), np.int32(2), 3), kv[:, 2:5])
    for layer in range(2):
        np.testing.assert_array_equal(cache.kv[layer][1, :6], kv[layer])
        assert not np.asarray(cache.kv[layer])[[0, 2]].any() and not np.asarray(cache.kv[layer][1, 6:]).any()
    assert not np.asarray(cache.lengths).any()  # lengths are the caller's


def _scopes(lowered, layer: int) -> set[str]:
    """The named scopes directly under layer `layer` in a lowered program's op names."""
    names = re.findall(r'loc\("jit\(fn\)/layer_%d/([^/"]+)/' % layer, lowered.as_text(debug_info=True))
    return set(names)


def test_every_sublayer_carries_its_name_into_the_program(tiny):
    """Profiles group time by op name: each sublayer's ops sit under layer_i/<sublayer>."""
    dense, moe = {"attn_norm", "attention", "ffn_norm", "mlp"}, {"attn_norm", "attention", "ffn_norm", "moe"}
    step = jit_decode_step(tiny.graphdef).lower(tiny.state, tiny.tokens[:, 0], tiny.model.init_cache(2, 8))
    assert _scopes(step, 0) == dense and _scopes(step, 1) == moe
    pre = tiny.prefill_fn.lower(tiny.state, tiny.tokens, tiny.full.kv)
    assert _scopes(pre, 0) == dense and _scopes(pre, 1) == moe
    text = pre.as_text(debug_info=True)
    for inner in (
        "attention/flash_attention_xla/",
        "attention/prefix_attention_xla/",
        "moe/router/",
        "moe/shared_experts/",
    ):
        assert f"layer_1/{inner}" in text, inner
    assert "layer_1/moe/routed_experts_sort/" in text and "embed/" in text and "logits/" in text

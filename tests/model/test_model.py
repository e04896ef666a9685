"""Whole-model consistency on the tiny config (float32, CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dualpath_jax.model import (
    KVCache,
    LayerwisePrefill,
    get_config,
    insert_prefill,
    jit_decode_step,
    jit_prefill,
    make_model,
)

SEQ = 12


@pytest.fixture(scope="module")
def setup():
    cfg = get_config("tiny")
    model = make_model(cfg, seed=0)
    # A non-zero selection bias so the bias path is exercised end to end.
    for layer in model.layers:
        if layer.is_moe:
            layer.ffn.e_bias[...] = jax.random.normal(jax.random.key(11), layer.ffn.e_bias.shape) * 0.2
    graphdef, state = nnx.split(model)
    tokens = jax.random.randint(jax.random.key(1), (2, SEQ), 0, cfg.vocab_size)
    prefill_fn = jit_prefill(graphdef)
    full_logits, full_lat, full_rope = prefill_fn(state, tokens)
    return cfg, model, graphdef, state, tokens, prefill_fn, full_logits, full_lat, full_rope


def _close(a, b, tol=2e-5):
    a, b = np.asarray(a), np.asarray(b)
    err = np.linalg.norm(a - b) / np.linalg.norm(b)
    assert err < tol, err


@pytest.mark.parametrize("layout", ["stacked", "layers"])
def test_prefill_then_decode_equals_full_forward(setup, layout):
    cfg, model, graphdef, state, tokens, prefill_fn, full_logits, full_lat, full_rope = setup
    assert np.isfinite(np.asarray(full_logits)).all()
    # Request 0 is prefilled with 3 tokens, request 1 with 5: one padded prefill of 5 tokens
    # (right padding is harmless under the causal mask), then per-request decode.
    lengths = np.array([3, 5])
    t0 = int(lengths.max())
    pad_tokens = tokens[:, :t0].at[0, 3:].set(0)
    logits0, lat, rope = prefill_fn(state, pad_tokens)
    for b in range(2):
        _close(logits0[b, : lengths[b]], full_logits[b, : lengths[b]])
    cache = insert_prefill(KVCache.init(cfg, 2, SEQ + 2, layout=layout), lat, rope, lengths)
    decode = jit_decode_step(graphdef)
    pos = lengths.copy()
    for _ in range(SEQ - t0 + 2):
        cur = np.minimum(pos, SEQ - 1)
        step_tokens = tokens[jnp.arange(2), cur]
        logits, cache = decode(state, step_tokens, cache)
        for b in range(2):
            if pos[b] < SEQ:
                _close(logits[b], full_logits[b, pos[b]])
        pos = pos + 1
    assert np.array_equal(np.asarray(cache.lengths), lengths + SEQ - t0 + 2)
    # The decode cache now holds the full forward's latent/rope for every written position.
    lat_all = cache.latent if cache.stacked else jnp.stack(cache.latent)
    rope_all = cache.rope if cache.stacked else jnp.stack(cache.rope)
    _close(lat_all[:, 1, :SEQ], full_lat[:, 1])
    _close(rope_all[:, 0, :SEQ], full_rope[:, 0])


def test_layerwise_prefill_with_loaded_prefix(setup):
    cfg, model, graphdef, state, tokens, prefill_fn, full_logits, full_lat, full_rope = setup
    p = 7
    # "Storage": the prefix cache computed by a separate prefill, kept as host numpy per layer.
    _, pre_lat, pre_rope = prefill_fn(state, tokens[:, :p])
    stored = [(np.asarray(pre_lat[i]), np.asarray(pre_rope[i])) for i in range(cfg.n_layers)]
    lw = LayerwisePrefill(model)
    x = lw.embed(tokens[:, p:])
    new_lat = []
    for i in range(cfg.n_layers):
        lat_i, rope_i = stored[i]  # arrives layer by layer
        x, l_i, r_i = lw.layer(i, x, jnp.asarray(lat_i), jnp.asarray(rope_i))
        new_lat.append(l_i)
    logits = lw.head(x)
    _close(logits, full_logits[:, p:])
    _close(jnp.stack(new_lat), full_lat[:, :, p:])
    # Two distinct layer structures (dense, MoE) -> two compiled layer functions.
    assert len(lw._layer_fns) == 2
    # The whole-model jitted prefill with a prefix gives the same.
    logits2, _, _ = prefill_fn(state, tokens[:, p:], pre_lat, pre_rope)
    _close(logits2, full_logits[:, p:])
    # So does the joined-KV form the serving testbed uses: [B,P,C+R] in, the new tokens' [B,T,C+R] out.
    x = lw.embed(tokens[:, p:])
    for i in range(cfg.n_layers):
        x, kv = lw.layer_kv(i, x, jnp.concatenate([jnp.asarray(a) for a in stored[i]], axis=-1))
        assert kv.shape[-1] == cfg.kv_lora_rank + cfg.qk_rope_dim
        _close(kv[..., : cfg.kv_lora_rank], full_lat[i, :, p:])
        _close(kv[..., cfg.kv_lora_rank :], full_rope[i, :, p:])
    _close(lw.head(x), full_logits[:, p:])

"""The DeepseekV32ForCausalLM fixtures (tests/reference/make_hf_fixtures.py v32: DSA keeping 4 of
the 12 prompt tokens; v32_fp8: the same shape with FP8 block-quantized weights, the indexer's
query and key projections included) loaded with the project's loader compute what transformers
computed: the prompt's logits, prefill-then-decode logits, and every layer's indexer selection
(near-ties allowed); swapping two layers' indexer query weights in the files moves the logits."""

import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors import safe_open

from dualpath_jax.model import KVCache
from dualpath_jax.model.hf import load_checkpoint
from dualpath_jax.model.indexer import index_scores

from .hf_fixtures import DSA_NAMES, path, reference
from .test_hf_load import F32_ATOL, Jitted, max_errors

TIE_TOL = 1e-5  # index scores this close to a query's k-th best may fall either side of the cut


@nnx.jit
def _layer_scores(attn, x, pos):
    """One layer's index scores [B,T,T] of x [B,T,D] (the layer's normed input) over itself."""
    keys = attn.project_entry(x, pos)[..., attn.cfg.kv_width :]
    return index_scores(attn.indexer.queries(attn.q_latent(x), pos), attn.indexer.head_weights(x), keys)


def _rms(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * weight


@pytest.fixture(scope="module")
def loaded():
    return {name: Jitted(load_checkpoint(path(name), dtype="float32")) for name in DSA_NAMES}


def test_v32_fp8_quantizes_the_indexer_as_deepseek_does():
    """What the FP8 fixture covers: the indexer's wq_b and wk are FP8 with block scales (wq_b's
    256 rows in two blocks), its weights_proj and k_norm are not (DeepSeek's V3.2 files)."""
    with safe_open(path("v32_fp8") / "model.safetensors", framework="np") as st:
        names = set(st.keys())
        ix = "model.layers.1.self_attn.indexer"
        for w in ("wq_b", "wk"):
            assert st.get_slice(f"{ix}.{w}.weight").get_dtype() == "F8_E4M3", w
        assert st.get_slice(f"{ix}.wq_b.weight_scale_inv").get_shape() == [2, 1]
    assert {f"{ix}.weights_proj.weight_scale_inv", f"{ix}.k_norm.weight_scale_inv"}.isdisjoint(names)


@pytest.mark.parametrize("name", DSA_NAMES)
def test_v32_matches_transformers_logits_decode_and_selection(loaded, name):
    ref = reference(name)
    model = loaded[name]
    cfg = model.model.cfg
    assert (cfg.index_topk, cfg.index_n_heads, cfg.index_head_dim) == (4, 16, 16) and cfg.rope_yarn is not None
    prompt = jnp.asarray(ref["prompt"])[None]
    out = model.prefill(prompt)
    err, rel = max_errors(out.logits[0], ref["logits"])
    print(f"{name} prefill: max abs {err:.2e}, rel {rel:.2e}")
    assert err < F32_ATOL, (err, rel)

    # Decode after a prefill of the first p tokens: their entries are the whole prompt's first p
    # (an entry projects its own token only), so no second prefill is compiled.
    p = int(ref["prefill_len"])
    cache = KVCache.init(cfg, 1, prompt.shape[1]).insert(np.int32(0), jnp.stack([k[0, :p] for k in out.kv]))
    cache = cache.with_lengths([p])
    steps = []
    for t in range(p, prompt.shape[1]):
        logits, cache = model.decode(prompt[:, t], cache)
        steps.append(np.asarray(logits[0]))
    err, rel = max_errors(np.stack(steps), ref["decode_logits"])
    print(f"{name} decode: max abs {err:.2e}, rel {rel:.2e}")
    assert err < F32_ATOL, err

    # Each layer's selection against transformers', from transformers' own layer inputs.
    t = prompt.shape[1]
    pos = np.arange(t, dtype=np.int32)[None]
    z = cfg.index_topk
    for i, layer in enumerate(model.model.layers):
        h = _rms(ref["hidden"][i], np.asarray(layer.attn_norm.weight[...]), cfg.rms_eps)
        scores = np.asarray(_layer_scores(layer.attn, jnp.asarray(h[None], jnp.float32), pos))[0]
        for q in range(t):
            s = scores[q, : q + 1]
            theirs = {k for k in ref["index_topk"][i, q].tolist() if k <= q}  # past the query: masked
            assert len(theirs) == min(z, q + 1), (i, q)
            if q + 1 <= z:
                continue
            kth = np.sort(s)[::-1][z - 1]
            ours = set(np.flatnonzero(s > kth + TIE_TOL).tolist())
            assert ours <= theirs, (i, q, sorted(ours - theirs))
            assert all(abs(s[k] - kth) <= TIE_TOL or s[k] > kth for k in theirs), (i, q)


def test_swapped_indexer_weights_move_the_logits(loaded, tmp_path):
    """Layers 1 and 2's indexer query weights swapped (same shape): only the selection changes."""
    from safetensors.numpy import load_file, save_file

    ref = reference("v32")
    dst = tmp_path / "v32"
    shutil.copytree(path("v32"), dst)
    tensors = load_file(dst / "model.safetensors")
    a, b = (f"model.layers.{i}.self_attn.indexer.wq_b.weight" for i in (1, 2))
    tensors[a], tensors[b] = tensors[b], tensors[a]
    save_file(tensors, dst / "model.safetensors")
    _, swapped = nnx.split(load_checkpoint(dst, dtype="float32"))
    moved = loaded["v32"]._prefill(swapped, jnp.asarray(ref["prompt"])[None])
    assert max_errors(moved.logits[0], ref["logits"])[0] > 100 * F32_ATOL

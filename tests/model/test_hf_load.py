"""Each Hugging Face fixture loaded with the project's loader computes what transformers computed
(tests/reference/make_hf_fixtures.py): prompt logits, prefill-then-decode logits, in float32 and
bfloat16; a swapped mapping is caught; experts load sharded over 4 (fake CPU) devices."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from dualpath_jax.model import jit_decode_step, jit_prefill
from dualpath_jax.model.hf import load_checkpoint

from .hf_fixtures import NAMES, path, reference

F32_ATOL = 1e-5  # max |logit| is about 3; float32 through 3 layers lands near 1e-6
BF16_ATOL = 0.1  # bf16 weights and activations (8 bits of mantissa) against float32 logits


def max_errors(got, want):
    err = np.abs(np.asarray(got, np.float32) - want).max()
    return float(err), float(err / np.abs(want).max())


class Jitted:
    """A loaded model's jitted prefill and decode (eager op-by-op runs take minutes on 2 cores)."""

    def __init__(self, model):
        self.model = model
        graphdef, self.state = nnx.split(model)
        self._prefill, self._decode = jit_prefill(graphdef), jit_decode_step(graphdef)

    def prefill(self, tokens, prefix_kv=None):
        return self._prefill(self.state, tokens, prefix_kv)

    def decode(self, tokens, cache):
        return self._decode(self.state, tokens, cache)


def prefill(model, tokens, prefix_kv=None):
    return Jitted(model).prefill(tokens, prefix_kv)


@pytest.fixture(scope="module")
def loaded():
    return {name: Jitted(load_checkpoint(path(name), dtype="float32")) for name in NAMES}


DECODE_NAMES = ("v3_fp8", "v2_lite")  # one per attention shape (q_lora or not); compiling is the cost


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_transformers(loaded, name):
    ref = reference(name)
    model = loaded[name]
    assert model.model.cfg.capacity_factor == 0.0  # a loaded checkpoint never drops tokens
    out = model.prefill(jnp.asarray(ref["prompt"])[None])
    abs_err, rel_err = max_errors(out.logits[0], ref["logits"])
    print(f"{name} float32 prompt logits: max abs err {abs_err:.2e}, rel {rel_err:.2e}")
    assert abs_err < F32_ATOL


@pytest.mark.parametrize("name", DECODE_NAMES)
def test_prefill_then_decode_matches_transformers(loaded, name):
    ref = reference(name)
    model, prompt, p = loaded[name], jnp.asarray(ref["prompt"]), int(ref["prefill_len"])
    out = model.prefill(prompt[None, :p])
    cache = (
        model.model.init_cache(1, len(prompt)).insert(np.int32(0), jnp.stack(out.kv)[:, 0]).with_lengths(np.array([p]))
    )
    steps = []
    for t in range(p, len(prompt)):
        logits, cache = model.decode(prompt[t : t + 1], cache)
        steps.append(logits[0])
    abs_err, rel_err = max_errors(jnp.stack(steps), ref["decode_logits"])
    print(f"{name} float32 decode logits: max abs err {abs_err:.2e}, rel {rel_err:.2e}")
    assert abs_err < F32_ATOL
    # the cached prefix fed back through prefill (the testbed's path) gives the same logits
    tail = model.prefill(prompt[None, p:], out.kv)
    assert max_errors(tail.logits[0], ref["logits"][p:])[0] < F32_ATOL


@pytest.mark.parametrize("name", ["v3"])
def test_bf16_logits_match_transformers(name):
    ref = reference(name)
    model = load_checkpoint(path(name))  # bfloat16, the default
    assert model.embed[...].dtype == jnp.bfloat16
    out = prefill(model, jnp.asarray(ref["prompt"])[None])
    abs_err, rel_err = max_errors(out.logits[0], ref["logits"])
    print(f"{name} bfloat16 prompt logits: max abs err {abs_err:.2e}, rel {rel_err:.2e}")
    assert abs_err < BF16_ATOL


def test_a_swapped_mapping_fails(loaded, tmp_path):
    """Layer 1's two norms swapped in the files (same shape, so only the numbers can tell)."""
    from safetensors.numpy import load_file, save_file

    src, dst = path("v3"), tmp_path / "v3"  # same name, same config: v3's compiled prefill runs it
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    a, b = "model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight"
    tensors[a], tensors[b] = tensors[b], tensors[a]
    save_file(tensors, dst / "model.safetensors")
    ref = reference("v3")
    _, swapped = nnx.split(load_checkpoint(dst, dtype="float32"))
    out = loaded["v3"]._prefill(swapped, jnp.asarray(ref["prompt"])[None])
    assert max_errors(out.logits[0], ref["logits"])[0] > 100 * F32_ATOL


def test_experts_load_sharded_over_the_ep_axis():
    devices = jax.devices()
    assert len(devices) >= 4, "tests/conftest.py asks XLA for 4 CPU devices"
    mesh = Mesh(np.array(devices[:4]), ("ep",))
    model = load_checkpoint(path("v3_fp8"), dtype="float32", mesh=mesh)
    w = model.layers[1].ffn.w_gate[...]
    assert w.shape[0] == 8 and {s.data.shape[0] for s in w.addressable_shards} == {2}
    assert len({s.device for s in w.addressable_shards}) == 4
    embed = model.embed[...]
    assert all(s.data.shape == embed.shape for s in embed.addressable_shards)  # replicated
    ref = reference("v3_fp8")
    out = prefill(model, jnp.asarray(ref["prompt"])[None])
    assert max_errors(out.logits[0], ref["logits"])[0] < F32_ATOL

"""The full 61-layer DeepSeek-V3 config at zero memory (nnx.eval_shape / jax.eval_shape): its
parameter count against the analytic count and the published totals, and the shapes of its cache
and of what prefill and decode give back (the joined [.., C+R] = [.., 576] entry)."""

import math

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from dualpath_jax.model import KVCache, abstract_model, decode_step, get_config, prefill

# DeepSeek-V3 technical report (arXiv 2412.19437): 671B total parameters, 37B activated per token
# (the MTP module, 14B more in the released checkpoint, is not counted there and not modelled here).
# Both figures are rounded to the nearest billion, so that is the tolerance: +-0.5B.
PUBLISHED_TOTAL, PUBLISHED_ACTIVE, ROUNDING = 671e9, 37e9, 0.5e9


@pytest.fixture(scope="module")
def dsv3():
    cfg = get_config("dsv3")
    model = abstract_model(cfg)
    graphdef, state = nnx.split(model)
    return cfg, model, graphdef, state


def _size(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def test_parameter_count_matches_the_analytic_and_published_counts(dsv3):
    cfg, model, _, state = dsv3
    leaves = jax.tree.leaves(state)
    assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)  # nothing allocated
    assert cfg.n_layers == len(model.layers) == 61
    for i, layer in enumerate(model.layers):  # layer by layer first, so a miscount names its layer
        assert _size(nnx.state(layer)) == cfg.layer_params(i), i
    total = _size(state)
    assert total == cfg.total_params()
    # Active per token: everything but the routed experts a token does not pick, less what
    # active_matmul_params leaves out: the embedding table (a lookup, not a matmul) and the final
    # norm's weight (7,168).
    unpicked = sum(
        _size((layer.ffn.w_gate, layer.ffn.w_up, layer.ffn.w_down))
        // cfg.n_routed_experts
        * (cfg.n_routed_experts - cfg.top_k)
        for layer in model.layers
        if layer.is_moe
    )
    active = total - unpicked - math.prod(model.embed.shape) - _size(nnx.state(model.final_norm))
    assert active == cfg.active_matmul_params()
    assert abs(total - PUBLISHED_TOTAL) <= ROUNDING, total  # 671.03B
    assert abs(active - PUBLISHED_ACTIVE) <= ROUNDING, active  # 36.63B
    assert {x.dtype for x in leaves} == {jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)}  # router in float32


def test_cache_and_kv_shapes_are_the_joined_entry(dsv3):
    cfg, _, graphdef, state = dsv3
    width = cfg.kv_lora_rank + cfg.qk_rope_dim
    assert width == 576
    cache = jax.eval_shape(lambda: KVCache.init(cfg, 2, 4096))
    assert len(cache.kv) == 61
    assert {(k.shape, k.dtype) for k in cache.kv} == {((2, 4096, 576), jnp.dtype(jnp.bfloat16))}
    assert cache.lengths.shape == (2,)
    # 1,152 bytes per token per layer in bf16: what the KV store and the testbed budget for.
    assert cache.kv[0].dtype.itemsize * width == cfg.kv_bytes_per_token_layer() == 1152

    def step(st, tokens, c):
        return decode_step(nnx.merge(graphdef, st), tokens, c)

    logits, after = jax.eval_shape(step, state, jax.ShapeDtypeStruct((2,), jnp.int32), cache)
    assert logits.shape == (2, cfg.vocab_size)
    assert [(k.shape, k.dtype) for k in after.kv] == [(k.shape, k.dtype) for k in cache.kv]

    def run(st, tokens, prefix_kv):
        return prefill(nnx.merge(graphdef, st), tokens, prefix_kv)

    prefix = tuple(jax.ShapeDtypeStruct((1, 32, width), jnp.bfloat16) for _ in range(cfg.n_layers))
    out = jax.eval_shape(run, state, jax.ShapeDtypeStruct((1, 16), jnp.int32), prefix)
    assert out.logits.shape == (1, 16, cfg.vocab_size)
    assert {(k.shape, k.dtype) for k in out.kv} == {((1, 16, 576), jnp.dtype(jnp.bfloat16))} and len(out.kv) == 61

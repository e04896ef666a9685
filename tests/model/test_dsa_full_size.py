"""The full-size DeepSeek-V3.2 config (`dsv32`) at zero memory (nnx.eval_shape / jax.eval_shape):
one dense and one MoE block's parameters against the analytic counts (the indexer's among them),
and the shapes of a DSA prefill of 4K new tokens over 64K cached and of a batch-64 decode over 64K
slots (the [.., 704] entry: 512 latent + 64 rope + 128 index key). The whole 61-layer model is not
built here: test_full_size.py does that for dsv3, and tracing 61 layers costs ~45 s on the 2-core VM."""

import math

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from dualpath_jax.model import get_config
from dualpath_jax.model.model import Block, with_attn_impl

# The lightning indexer per layer (DeepSeek-V3.2-Exp inference/model.py shapes): W_q 1536 x 64*128,
# W_k 7168 x 128, its LayerNorm's weight and bias 2 x 128, the head weights 7168 x 64.
INDEXER_PARAMS = 1536 * 64 * 128 + 7168 * 128 + 2 * 128 + 7168 * 64  # 13,959,424


def _size(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def test_dsv32_blocks_counts_and_shapes():
    cfg = with_attn_impl(get_config("dsv32"))
    assert (cfg.index_n_heads, cfg.index_head_dim, cfg.index_topk) == (64, 128, 2048)
    assert cfg.indexer_params() == INDEXER_PARAMS
    dsv3 = get_config("dsv3")
    assert cfg.total_params() - dsv3.total_params() == 61 * INDEXER_PARAMS  # +0.85B on V3's 671B
    for i in (0, cfg.first_k_dense):  # a dense block, an MoE block
        block = nnx.eval_shape(lambda i=i: Block(cfg, i, rngs=nnx.Rngs(0)))
        assert _size(nnx.state(block)) == cfg.layer_params(i), i
        assert _size(nnx.state(block.attn.indexer)) == INDEXER_PARAMS
    attn = block.attn
    graphdef, state = nnx.split(attn)
    bf16 = jnp.bfloat16
    width = cfg.cache_width
    assert width == 704 and cfg.kv_bytes_per_token_layer() == 1408

    def prefill(st, x, prefix):
        return nnx.merge(graphdef, st).prefill(x, prefix)

    x = jax.ShapeDtypeStruct((1, 4096, cfg.d_model), bf16)
    prefix = jax.ShapeDtypeStruct((1, 65536, width), bf16)
    out, entries = jax.eval_shape(prefill, state, x, prefix)
    assert out.shape == (1, 4096, cfg.d_model) and (entries.shape, entries.dtype) == ((1, 4096, width), bf16)

    def decode(st, x, cache, pos):
        return nnx.merge(graphdef, st).decode(x, cache, pos)

    cache = jax.ShapeDtypeStruct((64, 65536, width), bf16)
    out, after = jax.eval_shape(
        decode, state, jax.ShapeDtypeStruct((64, cfg.d_model), bf16), cache, jax.ShapeDtypeStruct((64,), jnp.int32)
    )
    assert out.shape == (64, cfg.d_model) and (after.shape, after.dtype) == (cache.shape, bf16)

    def select(st, x, pos, keys, visible):
        return nnx.merge(graphdef, st).select(x, pos, keys, visible)

    idx, selected = jax.eval_shape(
        select,
        state,
        jax.ShapeDtypeStruct((64, 1, cfg.d_model), bf16),
        jax.ShapeDtypeStruct((64, 1), jnp.int32),
        cache,
        jax.ShapeDtypeStruct((64, 1, 65536), jnp.bool_),
    )
    assert idx.shape == selected.shape == (64, 1, 2048)


def test_dsa_fields_are_checked_by_name():
    for over, field in (
        (dict(index_n_heads=0), "index_n_heads"),
        (dict(index_head_dim=4), "index_head_dim"),  # below qk_rope_dim 8: nothing to rotate into
        (dict(q_lora_rank=0), "q_lora_rank"),  # the index query comes from the q latent
    ):
        with pytest.raises(ValueError, match=field):
            get_config("tiny_dsa", **over)
    with pytest.raises(ValueError, match="index_topk"):
        get_config("tiny", index_n_heads=4, index_head_dim=16)  # a half-configured indexer
    assert not get_config("tiny").is_dsa and get_config("tiny").cache_width == get_config("tiny").kv_width

"""The DSA cache entry [W] = MLA's [M] then the indexer key [I], end to end: what a prefill of the
model gives back, the decode cache, the KV codec and the TensorStore KV store (bit-exact round
trip), and the bytes per token against the simulator's `kv_format` table for DS 660B."""

from pathlib import Path

import jax
import numpy as np
import yaml
from flax import nnx

from dualpath_jax.costmodel.counts import ModelCounts
from dualpath_jax.kvstore import KVStore
from dualpath_jax.model import KVCache, get_config, jit_prefill
from dualpath_jax.serving import kvcodec
from dualpath_jax.serving.simcheck import model_spec

from .dsa_helpers import tiny_dsa_model
from .dsa_reference import reference_index_keys, rms_norm

REPO = Path(__file__).resolve().parents[2]
TOKENS_PER_BLOCK = 8


def test_the_cache_and_the_kv_store_carry_the_indexer_keys():
    model = tiny_dsa_model(n_layers=1)  # layer 0's input is the embedding: a NumPy reference is short
    cfg = model.cfg
    assert cfg.cache_width == cfg.kv_width + cfg.index_head_dim
    n = 2 * TOKENS_PER_BLOCK
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, n)).astype(np.int32)
    graphdef, state = nnx.split(model)
    kv = np.stack([np.asarray(k[0]) for k in jit_prefill(graphdef)(state, tokens).kv])  # [Y, n, W]
    assert kv.shape == (1, n, cfg.cache_width)
    # The entry's last I dims are the indexer's keys of the layer's normed input.
    layer = model.layers[0]
    h = rms_norm(
        np.asarray(model.embed[...], np.float64)[tokens[0]], np.asarray(layer.attn_norm.weight[...]), cfg.rms_eps
    )
    want = reference_index_keys(layer.attn, h, np.arange(n))
    np.testing.assert_allclose(kv[0, :, cfg.kv_width :], want, rtol=1e-4, atol=1e-5)

    # Decode cache: a slot holds the whole entry, and gives it back.
    cache = KVCache.init(cfg, batch=2, max_len=n + 4)
    assert cache.width == cfg.cache_width
    cache = cache.insert(np.int32(1), kv)
    np.testing.assert_array_equal(np.asarray(cache.extract(np.int32(1), 0, n)), kv)

    # KV codec and store: bytes per token = W * itemsize; written and read back bit for bit.
    layout = kvcodec.block_layout(cfg, TOKENS_PER_BLOCK)
    assert layout.bytes_per_token == cfg.cache_width * 4 == cfg.kv_bytes_per_token_layer()
    store = KVStore.open(None, layout, capacity_blocks=4, create=True)
    store.write(tokens[0], kvcodec.blocks_of(kv, TOKENS_PER_BLOCK)).result()
    hit = store.lookup(tokens[0])
    assert hit.num_tokens == n
    blocks = store.read_blocks(hit.keys).result()  # uint8 [n/T, Y, T, B]
    host = np.zeros_like(kv)
    kvcodec.copy_hit_to_kv(host, blocks, cfg)  # the PE read path
    np.testing.assert_array_equal(host, kv)
    np.testing.assert_array_equal(kvcodec.layer_of_blocks(blocks, 0, cfg), kv[0])
    staged = kvcodec.stage_blocks(jax.device_put(blocks), cfg.dtype, cfg.cache_width)  # the DE path
    np.testing.assert_array_equal(np.asarray(staged), kv)


def test_bytes_per_token_are_the_simulators_bf16_indexer_format():
    """DS 660B's stored-format table (configs/model/ds660b.yaml) has bf16_indexer = 1,152 B of MLA
    entry + 256 B of indexer key per token per layer: what dsv32 caches in bf16. The testbed's
    simulator check (simcheck.model_spec) counts the same two parts for a DSA model."""
    cfg = get_config("dsv32")
    table = yaml.safe_load((REPO / "configs/model/ds660b.yaml").read_text())["kv_bytes_per_token_layer"]
    fmt = table["bf16_indexer"]
    assert cfg.kv_width * 2 == fmt["main"] and cfg.index_head_dim * 2 == fmt["indexer"]
    assert cfg.kv_bytes_per_token_layer() == fmt["main"] + fmt["indexer"] == 1408
    spec = model_spec(get_config("dsv32_e32"))
    assert spec.attention == "mla_dsa" and spec.dsa_topk == 2048
    assert ModelCounts(spec).kv_parts == (fmt["main"], fmt["indexer"])
    assert model_spec(get_config("dsv3_e32")).kv_bytes_per_token_layer["bf16"] == {"main": 1152, "indexer": 0}

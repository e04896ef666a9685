"""Bit-exact round trips and the Full Block / Layer Block relation."""

import ml_dtypes
import numpy as np
import pytest
from kvstore_testutil import SMALL, rand_blocks

from dualpath_jax.kvstore import BlockLayout, KVStore, LayoutError, mla_bytes_per_token, view_as


def test_mla_sizes():
    assert mla_bytes_per_token("bfloat16") == 1152
    assert mla_bytes_per_token("fp8") == 656
    lay = BlockLayout.mla(61, tokens_per_block=64)
    assert lay.full_block_shape == (61, 64, 1152)
    assert lay.full_block_nbytes == 61 * 64 * 1152
    with pytest.raises(LayoutError, match="kv_dtype"):
        mla_bytes_per_token("int3")


@pytest.mark.parametrize("driver", ["memory", "file"])
def test_bf16_mla_round_trip_bit_exact(tmp_path, driver):
    lay = BlockLayout.mla(layers=3, kv_dtype="bfloat16", tokens_per_block=16)
    rng = np.random.default_rng(1)
    # Random bit patterns, NaN payloads and signed zeros included: only a byte-exact store keeps them.
    bits = rng.integers(0, 2**16, (5, 3, 16, 576), dtype=np.uint16)
    bits[0, 0, 0, :4] = [0x7FC1, 0xFFFF, 0x8000, 0x0000]
    kv = bits.view(ml_dtypes.bfloat16)
    path = None if driver == "memory" else tmp_path / "s"
    with KVStore.open(path, lay, capacity_blocks=8, create=True) as st:
        toks = rng.integers(0, 50_000, 5 * 16 + 7)  # trailing partial block is not cached
        res = st.write(toks, kv).result()
        assert len(res.written) == 5
        hit = st.lookup(toks)
        assert hit.num_tokens == 80
        raw = st.read_blocks(hit.keys).result()
        back = view_as(raw, ml_dtypes.bfloat16)
        assert back.dtype == ml_dtypes.bfloat16 and back.shape == kv.shape
        assert np.array_equal(back.view(np.uint16), bits)


def test_bf16_from_jax_array(tmp_path):
    jnp = pytest.importorskip("jax.numpy")
    lay = BlockLayout(layers=2, bytes_per_token=8 * 2, tokens_per_block=4)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 2, 4, 8)), dtype=jnp.bfloat16)
    with KVStore.open(None, lay, capacity_blocks=4) as st:
        toks = np.arange(12)
        st.write(toks, np.asarray(x)).result()
        back = view_as(st.read_blocks(st.lookup(toks).keys).result(), jnp.bfloat16)
        assert np.array_equal(np.asarray(x).view(np.uint16), back.view(np.uint16))


def test_fp8_bytes_round_trip(tmp_path):
    """fp8 MLA layout (656 B/token) given as e4m3 elements and read back byte-exact, after reopen."""
    lay = BlockLayout.mla(layers=2, kv_dtype="fp8", tokens_per_block=8)
    raw = np.random.default_rng(3).integers(0, 256, (4, 2, 8, 656), dtype=np.uint8)
    as_fp8 = raw.view(ml_dtypes.float8_e4m3fn)  # includes NaN encodings 0x7F/0xFF
    toks = np.arange(32) * 7
    with KVStore.open(tmp_path / "s", lay, capacity_blocks=4, create=True) as st:
        st.write(toks, as_fp8).result()
    with KVStore.open(tmp_path / "s", read_only=True) as st:
        got = st.read_blocks(st.lookup(toks).keys).result()
        assert np.array_equal(got, raw)
        assert np.array_equal(view_as(got, ml_dtypes.float8_e4m3fn).view(np.uint8), raw)


@pytest.mark.parametrize("driver", ["memory", "file"])
def test_layer_block_equals_slice_of_full_block(tmp_path, driver):
    blocks = rand_blocks(SMALL, 6, seed=4)
    path = None if driver == "memory" else tmp_path / "s"
    with KVStore.open(path, SMALL, capacity_blocks=8, create=True) as st:
        toks = np.arange(6 * 8)
        st.write(toks, blocks).result()
        keys = st.lookup(toks).keys
        full = st.read_blocks(keys).result()
        # a subset, out of order
        sub = [keys[4], keys[1], keys[5]]
        full_sub = st.read_blocks(sub).result()
        for layer in range(SMALL.layers):
            lb = st.read_layer(keys, layer).result()
            assert lb.shape == (6, 8, 64)
            assert np.array_equal(lb, full[:, layer])
            assert np.array_equal(st.read_layer(sub, layer).result(), full_sub[:, layer])
        assert np.array_equal(full, blocks)


def test_layer_read_reads_only_that_layer(tmp_path):
    """On disk a Layer Block is a contiguous byte range of its shard file (zarr3 sharding)."""
    from dualpath_jax.kvstore import shard_file

    blocks = rand_blocks(SMALL, 1, seed=5)
    with KVStore.open(tmp_path / "s", SMALL, capacity_blocks=2, create=True) as st:
        st.write(np.arange(8), blocks).result()
        slot = 0
        data = shard_file(tmp_path / "s", slot).read_bytes()
    nb = SMALL.layer_block_nbytes
    for layer in range(SMALL.layers):
        assert data[layer * nb : (layer + 1) * nb] == blocks[0, layer].tobytes()
    assert len(data) == SMALL.full_block_nbytes + 16 * SMALL.layers + 4  # + shard index + crc32c


def test_bad_shapes_and_dtypes_name_the_field():
    with KVStore.open(None, SMALL, capacity_blocks=4) as st:
        toks = np.arange(16)
        with pytest.raises(LayoutError, match="axis 1 \\(layers\\)"):
            st.write(toks, np.zeros((1, 3, 8, 64), np.uint8))
        with pytest.raises(LayoutError, match="tokens_per_block"):
            st.write(toks, np.zeros((1, 4, 7, 64), np.uint8))
        with pytest.raises(LayoutError, match="bytes_per_token"):
            st.write(toks, np.zeros((1, 4, 8, 64), np.float32))  # 256 B per token
        with pytest.raises(LayoutError, match="blocks: dtype"):
            st.write(toks, np.zeros((1, 4, 8, 64), object))
        with pytest.raises(LayoutError, match="tokens: 16 tokens hold 2 full blocks"):
            st.write(toks, np.zeros((3, 4, 8, 64), np.uint8))
        with pytest.raises(LayoutError, match="tokens: expected integer"):
            st.lookup(np.ones(16, np.float32))
        with pytest.raises(LayoutError, match="layer: must be"):
            st.read_layer([], 4)
        with pytest.raises(LayoutError, match="first_block"):
            st.write(toks, np.zeros((1, 4, 8, 64), np.uint8), first_block=-1)
        # float16 with 32 elements = 64 B per token is fine
        st.write(toks, np.zeros((1, 4, 8, 32), np.float16)).result()
    with pytest.raises(LayoutError, match="tokens_per_block"):
        BlockLayout(layers=2, bytes_per_token=8, tokens_per_block=0)
    with pytest.raises(LayoutError, match="capacity_blocks"):
        KVStore.open(None, SMALL, capacity_blocks=0)


def test_read_into_caller_buffer():
    blocks = rand_blocks(SMALL, 3, seed=6)
    with KVStore.open(None, SMALL, capacity_blocks=4) as st:
        toks = np.arange(24)
        st.write(toks, blocks).result()
        keys = st.lookup(toks).keys
        buf = np.zeros((3,) + SMALL.full_block_shape, np.uint8)
        got = st.read_blocks(keys, out=buf).result()
        assert got is buf and np.array_equal(buf, blocks)
        lbuf = np.zeros((2,) + SMALL.layer_block_shape, np.uint8)
        assert st.read_layer(keys[1:], 3, out=lbuf).result() is lbuf
        assert np.array_equal(lbuf, blocks[1:, 3])
        with pytest.raises(LayoutError, match="out: expected"):
            st.read_blocks(keys, out=np.zeros((2,) + SMALL.full_block_shape, np.uint8))
        with pytest.raises(LayoutError, match="out: expected"):
            st.read_layer(keys, 0, out=np.zeros((3,) + SMALL.layer_block_shape, np.int8))

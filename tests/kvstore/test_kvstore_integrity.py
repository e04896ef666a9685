"""Corruption is detected and named; bad store paths give errors that name the path."""

import os
import stat

import numpy as np
import pytest
from kvstore_testutil import SMALL, rand_blocks

from dualpath_jax.kvstore import (
    BlockCorruptionError,
    KVStore,
    KVStoreError,
    LayoutError,
    StoreLockedError,
    StoreNotFoundError,
    StoreReadOnlyError,
    shard_file,
)


def _store_with_blocks(path, n=3, checksum="auto"):
    st = KVStore.open(path, SMALL, capacity_blocks=8, create=True, checksum=checksum)
    toks = np.arange(n * SMALL.tokens_per_block)
    st.write(toks, rand_blocks(SMALL, n)).result()
    return st, toks


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


@pytest.mark.parametrize("checksum", ["crc32", "xxh3_64"])
def test_flipped_data_byte_is_detected_and_names_the_block(tmp_path, checksum):
    if checksum == "xxh3_64":
        pytest.importorskip("xxhash")
    st, toks = _store_with_blocks(tmp_path / "s", checksum=checksum)
    assert st.checksum == checksum
    keys = st.lookup(toks).keys
    victim = keys[1]
    slot = st._index.get(victim).slot
    layer = 2
    _flip(shard_file(tmp_path / "s", slot), layer * SMALL.layer_block_nbytes + 17)
    with pytest.raises(BlockCorruptionError) as ei:
        st.read_blocks(keys).result()
    e = ei.value
    assert e.key == victim and e.slot == slot and e.layer == layer
    assert victim in str(e) and f"layer {layer}" in str(e) and str(tmp_path / "s") in str(e)
    # other layers of the same block are intact and readable on their own
    assert np.array_equal(st.read_layer([victim], 1).result()[0], rand_blocks(SMALL, 3)[1, 1])
    with pytest.raises(BlockCorruptionError, match=victim):
        st.read_layer(keys, layer).result()
    # the failed reads released their pins
    assert st.pins(victim) == 0
    st.close()
    # detected after a restart too (nothing is served from a cache)
    with KVStore.open(tmp_path / "s", read_only=True) as ro:
        with pytest.raises(BlockCorruptionError, match=victim):
            ro.read_blocks([victim]).result()


def test_corrupt_shard_index_is_reported_with_the_block(tmp_path):
    st, toks = _store_with_blocks(tmp_path / "s")
    key = st.lookup(toks).keys[0]
    f = shard_file(tmp_path / "s", st._index.get(key).slot)
    _flip(f, os.path.getsize(f) - 10)  # inside the shard index (protected by crc32c)
    with pytest.raises(KVStoreError, match=f"KV block {key}"):
        st.read_blocks([key]).result()
    st.close()


def test_missing_store_path_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "store"
    with pytest.raises(StoreNotFoundError, match=str(missing)):
        KVStore.open(missing)
    with pytest.raises(StoreNotFoundError, match="create=True"):
        KVStore.open(missing, SMALL, capacity_blocks=4)
    with pytest.raises(StoreNotFoundError, match=str(missing)):
        KVStore.open(missing, read_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError, match=r"holds no KV store"):
        KVStore.open(tmp_path / "empty")
    with pytest.raises(LayoutError, match="layout and capacity_blocks"):
        KVStore.open(tmp_path / "empty", create=True)
    assert not missing.exists()


def test_read_only_store_path_names_the_path(tmp_path):
    path = tmp_path / "s"
    st, toks = _store_with_blocks(path)
    st.close()
    mode = path.stat().st_mode
    os.chmod(path, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        with pytest.raises(StoreReadOnlyError, match=str(path)):
            KVStore.open(path)
        with KVStore.open(path, read_only=True) as ro:  # reading still works
            assert ro.lookup(toks).num_blocks == 3
            assert np.array_equal(ro.read_blocks(ro.lookup(toks).keys).result(), rand_blocks(SMALL, 3))
            with pytest.raises(StoreReadOnlyError, match="read_only"):
                ro.write(toks, rand_blocks(SMALL, 1))
    finally:
        os.chmod(path, mode)
    parent = tmp_path / "ro_parent"
    parent.mkdir()
    os.chmod(parent, 0o555)
    try:
        with pytest.raises(StoreReadOnlyError, match=str(parent)):
            KVStore.open(parent / "new", SMALL, capacity_blocks=2, create=True) if os.geteuid() else KVStore.open(
                parent, SMALL, capacity_blocks=2, create=True
            )
    finally:
        os.chmod(parent, 0o755)


def test_layout_mismatch_and_second_writer(tmp_path):
    st, _ = _store_with_blocks(tmp_path / "s")
    try:
        with pytest.raises(StoreLockedError, match=str(tmp_path / "s")):
            KVStore.open(tmp_path / "s")
        with KVStore.open(tmp_path / "s", read_only=True) as ro:
            assert len(ro) == 3
    finally:
        st.close()
    from dualpath_jax.kvstore import BlockLayout

    with pytest.raises(LayoutError, match="layout.bytes_per_token: asked for 128"):
        KVStore.open(tmp_path / "s", BlockLayout(4, 128, 8))
    with pytest.raises(LayoutError, match="capacity_blocks: asked for 9"):
        KVStore.open(tmp_path / "s", capacity_blocks=9)
    with KVStore.open(tmp_path / "s", read_only=True) as ro:
        other = "crc32" if ro.checksum != "crc32" else "xxh3_64"
    with pytest.raises(LayoutError, match="checksum: asked for"):
        KVStore.open(tmp_path / "s", checksum=other)
    with KVStore.open(tmp_path / "s", SMALL) as again:
        assert len(again) == 3

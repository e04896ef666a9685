"""A read-only handle of a store that another process writes (the multi-process testbed: the
scheduler writes, each node reads the shared files): blocks committed after the handle opened
are unknown to it until it adopts the writer's records of them, and then read back exactly."""

import numpy as np
import pytest
from kvstore_testutil import SMALL, rand_blocks

from dualpath_jax.kvstore import KVStore
from dualpath_jax.kvstore.errors import BlockNotFoundError, StoreReadOnlyError


def test_a_reader_reads_blocks_written_after_it_opened_once_it_adopts_them(tmp_path):
    writer = KVStore.open(tmp_path / "kv", SMALL, capacity_blocks=16, create=True)
    reader = KVStore.open(tmp_path / "kv", read_only=True)
    tokens = np.arange(3 * SMALL.tokens_per_block)
    blocks = rand_blocks(SMALL, 3)
    keys = writer.write(tokens, blocks).result().keys
    with pytest.raises(BlockNotFoundError):
        reader.read_blocks(keys).result()
    reader.adopt(writer.entries(keys))
    np.testing.assert_array_equal(reader.read_blocks(keys, verify=True).result(), blocks)
    reader.adopt(writer.entries(keys))  # again: nothing changes
    np.testing.assert_array_equal(reader.read_blocks(keys[1:]).result(), blocks[1:])
    with pytest.raises(StoreReadOnlyError, match="adopt is for read-only handles"):
        writer.adopt(writer.entries(keys))
    reader.close()
    writer.close()


def test_adopted_checksums_are_checked(tmp_path):
    writer = KVStore.open(tmp_path / "kv", SMALL, capacity_blocks=16, create=True)
    reader = KVStore.open(tmp_path / "kv", read_only=True)
    keys = writer.write(np.arange(SMALL.tokens_per_block), rand_blocks(SMALL, 1)).result().keys
    [rec] = writer.entries(keys)
    other = writer.write(np.arange(SMALL.tokens_per_block) + 1, rand_blocks(SMALL, 1, seed=1)).result().keys
    [wrong] = writer.entries(other)
    reader.adopt([{**rec, "s": wrong["s"]}])  # the right key pointing at another block's bytes
    with pytest.raises(Exception, match="checksum|corrupt"):
        reader.read_blocks(keys, verify=True).result()
    reader.close()
    writer.close()

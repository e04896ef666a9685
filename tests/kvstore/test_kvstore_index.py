"""Prefix index: longest-prefix lookup on branching sequences, persistence, LRU eviction with pins."""

import numpy as np
import pytest
from kvstore_testutil import SMALL, rand_blocks

from dualpath_jax.kvstore import BlockNotFoundError, KVStore, StoreFullError, Throttle, block_keys
from dualpath_jax.kvstore.index import Entry, PrefixIndex

T = SMALL.tokens_per_block


def seq(*parts):
    """Token sequence made of whole blocks, each block given by one filler id."""
    return np.concatenate([np.full(T, p) for p in parts]).astype(np.int64)


def test_keys_chain_and_differ_by_prefix():
    a = block_keys(seq(1, 2, 3), T)
    b = block_keys(seq(9, 2, 3), T)
    assert len(a) == 3 and len(set(a) | set(b)) == 6  # same later blocks, different prefix
    assert block_keys(seq(1, 2, 3), T)[:2] == block_keys(seq(1, 2), T)
    assert block_keys(seq(1, 2), T, namespace="other") != block_keys(seq(1, 2), T)
    # a token change inside a block changes that key and every later one
    s = seq(1, 2, 3)
    s[T + 3] = 77
    c = block_keys(s, T)
    assert c[0] == a[0] and c[1] != a[1] and c[2] != a[2]


def test_longest_prefix_on_branching_sequences(tmp_path):
    with KVStore.open(tmp_path / "s", SMALL, capacity_blocks=32, create=True) as st:
        trunk = seq(1, 2, 3)
        st.write(trunk, rand_blocks(SMALL, 3)).result()
        # branch A shares 2 blocks with trunk; branch B shares 1; C diverges at block 0
        a, b = seq(1, 2, 5, 6), seq(1, 7, 8)
        st.write(a, rand_blocks(SMALL, 2, 1), first_block=2).result()
        st.write(b, rand_blocks(SMALL, 2, 2), first_block=1).result()
        assert st.lookup(trunk).num_blocks == 3
        assert st.lookup(a).num_blocks == 4
        assert st.lookup(b).num_blocks == 3
        assert st.lookup(seq(4, 2, 3)).num_blocks == 0
        assert st.lookup(seq(1, 2, 5, 9, 9)).num_blocks == 3  # diverges after 3 blocks
        assert st.lookup(seq(1, 2, 3)[: 2 * T + 5]).num_tokens == 2 * T  # partial block not counted
        # block 3 of (1,2,9,6) has the same tokens as a's block 3 but another prefix: no hit
        assert st.lookup(seq(1, 2, 9, 6)).num_blocks == 2
        assert len(st) == 7
        # the trie shape survives a restart
    with KVStore.open(tmp_path / "s") as st:
        assert len(st) == 7
        assert [st.lookup(x).num_blocks for x in (trunk, a, b)] == [3, 4, 3]
        got = st.read_blocks(st.lookup(a).keys[2:]).result()
        assert np.array_equal(got, rand_blocks(SMALL, 2, 1))


def test_duplicate_write_is_skipped():
    with KVStore.open(None, SMALL, capacity_blocks=8) as st:
        s = seq(1, 2)
        r1 = st.write(s, rand_blocks(SMALL, 2)).result()
        r2 = st.write(s, rand_blocks(SMALL, 2, 9)).result()
        assert len(r1.written) == 2 and r2.written == [] and r2.skipped == r1.keys
        assert np.array_equal(st.read_blocks(r1.keys).result(), rand_blocks(SMALL, 2))


def test_lru_eviction_skips_pinned_blocks():
    with KVStore.open(None, SMALL, capacity_blocks=4) as st:
        seqs = [seq(i) for i in range(6)]
        for i in range(4):
            st.write(seqs[i], rand_blocks(SMALL, 1, i)).result()
        k = [st.block_keys(s)[0] for s in seqs]
        with st.lookup(seqs[0], pin=True) as hit:  # oldest, but held by a running request
            assert hit.num_blocks == 1 and st.pins(k[0]) == 1
            st.write(seqs[4], rand_blocks(SMALL, 1, 4)).result()
            assert k[0] in st and k[1] not in st  # evicted the LRU *unpinned* block
            st.lookup(seqs[2])  # touch 2: now 3 is the LRU unpinned block
            st.write(seqs[5], rand_blocks(SMALL, 1, 5)).result()
            assert k[3] not in st and k[2] in st and k[0] in st
        assert st.pins(k[0]) == 0
        assert st.stats["evictions"] == 2
        # once released, the pinned block is evictable again
        with st.hold([k[2], k[4], k[5]]):
            st.write(seqs[1], rand_blocks(SMALL, 1, 1)).result()
            assert k[0] not in st
            with st.hold([k[1]]):
                with pytest.raises(StoreFullError, match="full.*4 pinned"):
                    st.write(seqs[3], rand_blocks(SMALL, 1, 3))  # every cached block is held
            assert len(st) == 4
        with pytest.raises(BlockNotFoundError, match="not in the index"):
            st.read_blocks([k[0]])


def test_eviction_takes_leaves_before_their_ancestors():
    with KVStore.open(None, SMALL, capacity_blocks=4) as st:
        chain = seq(1, 2, 3)
        st.write(chain, rand_blocks(SMALL, 3)).result()
        other = seq(9)
        st.write(other, rand_blocks(SMALL, 1, 5)).result()
        st.lookup(other)
        st.write(seq(8), rand_blocks(SMALL, 1, 6)).result()
        # the chain is LRU; its leaf (block 3) goes, not its root
        assert st.lookup(chain).num_blocks == 2


def test_reads_and_lookups_without_pin_do_not_pin():
    """A read holds its blocks while in flight and releases them when done; a lookup without
    pin=True holds nothing. Checked through pins() and through eviction, which skips held blocks."""
    blocks = rand_blocks(SMALL, 1)
    with KVStore.open(None, SMALL, capacity_blocks=2) as st:
        st.write(seq(1), blocks).result()
        k = st.block_keys(seq(1))
        assert st.lookup(seq(1)).num_blocks == 1 and st.pins(k[0]) == 0
        slow = Throttle(SMALL.full_block_nbytes / 0.3)  # the read takes 0.3 s of link time
        fut = st.read_blocks(k, throttle=slow)
        assert st.pins(k[0]) == 1 and st.evict(1) == []  # held mid-read
        assert np.array_equal(fut.result(), blocks)
        assert st.pins(k[0]) == 0
        assert np.array_equal(st.read_layer(k, 2).result()[0], blocks[0, 2])
        assert st.pins(k[0]) == 0
        assert st.evict(1) == k  # nothing left a pin behind


def test_index_unit_victim_order():
    ix = PrefixIndex()
    ix.insert(Entry("a", "root", 0, ()))
    ix.insert(Entry("b", "a", 1, ()))
    ix.insert(Entry("c", "root", 2, ()))
    assert ix.victim().key == "b"  # a is older but has a child
    ix.pin(["b"])
    assert ix.victim().key == "c"
    ix.remove("c")
    assert ix.victim() is None  # a has a child, b is pinned
    ix.unpin(["b"])
    ix.remove("b")
    assert ix.victim().key == "a"


def test_index_log_compaction_and_torn_tail(tmp_path):
    with KVStore.open(tmp_path / "s", SMALL, capacity_blocks=6, create=True, compact_min_records=5) as st:
        for i in range(12):  # forces evictions and several snapshots
            st.write(seq(i, i + 100), rand_blocks(SMALL, 2, i)).result()
        live = set(st.keys())
        assert st._journal.generation >= 1
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert "index.json" in files and len([f for f in files if f.endswith(".log")]) == 1
    log = next((tmp_path / "s").glob("index.*.log"))
    with open(log, "ab") as f:
        f.write(b'0badc0de {"op":"put","k":"zz')  # a torn append
    with pytest.warns(RuntimeWarning, match="torn"):
        st = KVStore.open(tmp_path / "s")
    with st:
        assert set(st.keys()) == live
        for i in range(9, 12):
            assert np.array_equal(st.read_blocks(st.lookup(seq(i, i + 100)).keys).result(), rand_blocks(SMALL, 2, i))
        st.write(seq(50), rand_blocks(SMALL, 1, 50)).result()  # appends on a fresh line after it
    assert b'0badc0de {"op":"put","k":"zz' in log.read_bytes()  # never truncated
    with KVStore.open(tmp_path / "s", read_only=True) as st:
        assert st.lookup(seq(50)).num_blocks == 1 and st.recovery == []

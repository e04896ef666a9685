"""Index recovery: a damaged snapshot or log record loses only itself, is reported with its file
and byte offset, and no block is ever served with wrong bytes (docs/kvstore.md, Index recovery)."""

import json
import os
import random
import shutil
import warnings

import numpy as np
import pytest
from kvstore_testutil import SMALL, rand_blocks

from dualpath_jax.kvstore import IndexRecoveryWarning, KVStore
from dualpath_jax.kvstore.journal import split_lines

T = SMALL.tokens_per_block
SNAP_SEQS = (3, 2)  # sequences 0 and 1 end up in the snapshot
LOG_SEQ = 2  # sequence 2 (4 blocks) is written one block per record, into the log


def tokens(i, n):
    return np.arange(n * T, dtype=np.int64) + 1000 * i


def build(path):
    """A store whose snapshot holds 5 blocks and whose log holds 4 put records.
    Returns {key: bytes}, the keys of the log records in order, and the log path."""
    expected = {}
    with KVStore.open(path, SMALL, capacity_blocks=16, create=True) as st:
        for i, n in enumerate(SNAP_SEQS):
            blocks = rand_blocks(SMALL, n, i)
            r = st.write(tokens(i, n), blocks).result()
            expected.update(zip(r.keys, blocks))
        st.compact()
        blocks = rand_blocks(SMALL, 4, LOG_SEQ)
        for b in range(4):
            r = st.write(tokens(LOG_SEQ, 4), blocks[b : b + 1], first_block=b).result()
            expected[r.keys[0]] = blocks[b]
        log_keys = st.block_keys(tokens(LOG_SEQ, 4))
        log = path / f"index.{st._journal.generation}.log"
    return expected, log_keys, log


def survivors(st, expected):
    """Keys indexed by st; every one must be a written block that reads back byte-exact."""
    keys = st.keys()
    unknown = [k for k in keys if k not in expected]
    assert not unknown, f"blocks indexed under keys never written: {unknown}"
    got = st.read_blocks(keys).result()
    for k, g in zip(keys, got):
        assert np.array_equal(g, expected[k]), f"block {k} served with wrong bytes"
    return set(keys)


def flip(path, offset, bit=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def files(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def open_recorded(path, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        st = KVStore.open(path, **kw)
    return st, [str(x.message) for x in w if issubclass(x.category, IndexRecoveryWarning)]


def open_clean(path, **kw):
    """Open with every warning an error: nothing is left to report."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return KVStore.open(path, **kw)


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_flipped_log_record_loses_only_itself(tmp_path, which):
    path = tmp_path / "s"
    expected, log_keys, log = build(path)
    offsets = [o for o, _ in split_lines(log.read_bytes())]
    i = {"first": 0, "middle": 2, "last": 3}[which]
    flip(log, offsets[i] + 20)  # inside the record's JSON
    damaged = log.read_bytes()
    before = files(path)
    # read-only: reported, recovered in memory, nothing on disk touched
    ro, msgs = open_recorded(path, read_only=True)
    with ro:
        assert survivors(ro, expected) == set(expected) - {log_keys[i]}
    assert any(str(log) in m and f"at byte {offsets[i]} " in m for m in msgs), msgs
    assert files(path) == before
    # the writer recovers the same, keeps the damaged log's bytes, and the next open is clean
    st, msgs = open_recorded(path)
    with st:
        assert survivors(st, expected) == set(expected) - {log_keys[i]}
        # an orphan (parent record lost) stays cached, unreachable until its parent is rewritten
        assert st.lookup(tokens(LOG_SEQ, 4)).num_blocks == i
        st.write(tokens(LOG_SEQ, 4), expected[log_keys[i]][None], first_block=i).result()
        assert st.lookup(tokens(LOG_SEQ, 4)).num_blocks == 4
    kept = [p for p in path.iterdir() if p.name.startswith(log.name)]
    assert any(p.read_bytes().startswith(damaged) for p in kept), "damaged log bytes were dropped"
    with open_clean(path) as st:
        assert survivors(st, expected) == set(expected)


def test_torn_tail_then_appends_and_reopen(tmp_path):
    path = tmp_path / "s"
    expected, _, log = build(path)
    fragment = b'0badc0de {"op":"put","k":"zz'  # an append cut off by a crash
    with open(log, "ab") as f:
        f.write(fragment)
    with pytest.warns(IndexRecoveryWarning, match=f"{log}: ignored a torn tail"):
        st = KVStore.open(path)
    with st:
        assert survivors(st, expected) == set(expected)
        blocks = rand_blocks(SMALL, 2, 9)
        r = st.write(tokens(9, 2), blocks).result()  # appends after the torn fragment
        expected.update(zip(r.keys, blocks))
    assert fragment in log.read_bytes(), "the torn tail was truncated"
    for _ in range(2):
        with open_clean(path) as st:  # the marked fragment is not reported again
            assert survivors(st, expected) == set(expected)
            assert st.lookup(tokens(9, 2)).num_blocks == 2


def _evicting_store(path):
    """Capacity 3: x0, x1, x2 fill slots 0-2; writing x3 evicts x0 ("del x0") and reuses slot 0."""
    data = {i: rand_blocks(SMALL, 1, 40 + i) for i in range(4)}
    with KVStore.open(path, SMALL, capacity_blocks=3, create=True) as st:
        for i in range(4):
            st.write(tokens(40 + i, 1), data[i]).result()
        keys = {i: st.block_keys(tokens(40 + i, 1))[0] for i in range(4)}
        assert keys[0] not in st and st._index.get(keys[3]).slot == 0
        log = path / f"index.{st._journal.generation}.log"
    lines = [(o, json.loads(line[9:])) for o, line in split_lines(log.read_bytes())]
    assert [r["op"] for _, r in lines] == ["put", "put", "put", "del", "put"]
    return {keys[i]: data[i][0] for i in range(4)}, keys, log, [o for o, _ in lines]


def test_skipped_del_whose_slot_a_later_put_reused(tmp_path):
    path = tmp_path / "s"
    expected, keys, log, offsets = _evicting_store(path)
    flip(log, offsets[3] + 20)  # the "del x0" record
    st, msgs = open_recorded(path)
    with st:
        # x0 and x3 both claim slot 0: the later claim (x3, whose bytes are in the slot) wins
        assert keys[0] not in st
        assert survivors(st, expected) == {keys[1], keys[2], keys[3]}
    assert any(f"at byte {offsets[3]} " in m for m in msgs) and any("later claim wins" in m for m in msgs)


def test_skipped_del_and_put_unproven_entry_is_verified(tmp_path):
    path = tmp_path / "s"
    expected, keys, log, offsets = _evicting_store(path)
    flip(log, offsets[3] + 20)  # "del x0" ...
    flip(log, offsets[4] + 20)  # ... and "put x3 -> slot 0" are lost
    st, msgs = open_recorded(path, read_only=True)
    with st:
        # nothing claims slot 0 but x0, whose del may be lost: its bytes (x3's now) do not verify
        assert keys[0] not in st
        assert survivors(st, expected) == {keys[1], keys[2]}
    assert any(keys[0] in m and "dropped" in m for m in msgs), msgs


def test_snapshot_bit_flips_never_serve_wrong_bytes(tmp_path):
    seed = int(os.environ.get("KVSTORE_FLIP_SEED", "1234"))
    print(f"snapshot bit flips: KVSTORE_FLIP_SEED={seed}")
    base = tmp_path / "base"
    expected, log_keys, _ = build(base)
    snap = base / "index.json"
    size = snap.stat().st_size
    rng = random.Random(seed)
    for n, off in enumerate(sorted(rng.sample(range(size), 60))):
        case = f"seed {seed}, flip {n}: bit at byte {off} of {size}"
        path = tmp_path / f"c{n}"
        shutil.copytree(base, path)
        flip(path / "index.json", off, rng.randrange(8))
        before = files(path)
        st, msgs = open_recorded(path, read_only=True)
        with st:
            got = survivors(st, expected)
        assert files(path) == before, f"{case}: a read-only open changed files"
        assert any(str(path / "index.json") in m for m in msgs), f"{case}: not reported: {msgs}"
        lost = set(expected) - got
        # one flip damages at most two lines (a flipped newline joins two); log blocks all survive
        assert len(lost) <= 2 and not lost & set(log_keys), f"{case}: lost {len(lost)}: {msgs}"
        st, _ = open_recorded(path)  # the writer rebuilds the same index
        with st:
            assert survivors(st, expected) == got, case
        with open_clean(path) as st:  # ... and the next open is clean
            assert survivors(st, expected) == got, case
        shutil.rmtree(path)


def test_snapshot_header_and_trailer_lost_generation_from_the_log(tmp_path):
    path = tmp_path / "s"
    expected, _, log = build(path)
    snap = path / "index.json"
    lines = [line for _, line in split_lines(snap.read_bytes())]
    snap.write_bytes(b"garbage\n" + b"".join(lines[1:-1]) + b"garbage\n")
    st, msgs = open_recorded(path)
    assert any("generation 1 taken from the newest log" in m for m in msgs), msgs
    with st:
        assert survivors(st, expected) == set(expected)  # snapshot entries verified, log replayed
    with open_clean(path) as st:
        assert survivors(st, expected) == set(expected)


def test_version_1_snapshot_is_read_and_verified(tmp_path):
    path = tmp_path / "s"
    expected, _, _ = build(path)
    snap = path / "index.json"
    lines = [json.loads(line[9:]) for _, line in split_lines(snap.read_bytes())]
    entries = lines[1:-1]
    entries[0][2] = 15  # v1 has no checksum: a silently wrong slot
    snap.write_text(
        json.dumps(
            {
                "format": "dualpath-kvstore-index",
                "version": 1,
                "generation": 1,
                "checksum": lines[0]["checksum"],
                "entries": entries,
            }
        )
    )
    st, msgs = open_recorded(path)
    with st:
        assert survivors(st, expected) == set(expected) - {entries[0][0]}
    assert not snap.read_bytes().startswith(b"{")  # the writer rewrote it as version 2
    with open_clean(path) as st:
        assert survivors(st, expected) == set(expected) - {entries[0][0]}

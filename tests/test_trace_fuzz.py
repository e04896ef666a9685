"""Property-based fuzzing of the trace reader, writer and Mooncake importer (hypothesis).

(a) valid trajectories round-trip write_trace -> read_trace exactly (and rewrite to the same bytes);
(b) mutated trajectories, mutated traces, random lines and random bytes: the writer, reader and
    importer raise only TraceError, every message names the file and a line (`file:<n>: `, byte
    offsets included), and each accepts exactly what a small independent oracle below accepts.
"""

import dataclasses
import json
import math
import os
import random
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dualpath_jax.workload import TraceError, Trajectory, Turn, read_trace, write_trace
from dualpath_jax.workload.mooncake import import_mooncake

LIMIT = 2**63
SHIPPED = Path(__file__).resolve().parents[1] / "dualpath_jax/workload/data/mooncake/conversation_trace.jsonl"


def cases(n: int) -> settings:
    """n examples, no deadline; the counts below keep this file at ~30 s on one core."""
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One folder for every example: RAM-backed where the machine has one, since write_trace's
    fsync and rename on a disk cost more than the code under test."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("fuzz")
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="trace-fuzz-") as d:
        yield Path(d)


# --- the oracle: the format's rules, written again independently of trace.py ------------------


def _no_dupes(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        raise ValueError("repeated key")
    return dict(pairs)


def _strict_json(text: str):
    """json.loads without NaN/Infinity/overflowing floats or repeated keys; ValueError if not."""

    def no_constant(name):
        raise ValueError(name)

    def finite(text):
        if not math.isfinite(float(text)):
            raise ValueError(text)
        return float(text)

    return json.loads(text, parse_constant=no_constant, parse_float=finite, object_pairs_hook=_no_dupes)


def _is_count(v, least=0) -> bool:
    return type(v) is int and least <= v < LIMIT


def _is_time(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)  # OverflowError for a huge int


def _oracle_lines(data: bytes, limit: int | None = None):
    """The parsed non-blank lines (up to line `limit`), or None if one is not UTF-8 JSON."""
    rows = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if limit is not None and n > limit:
            break
        if raw.strip(b" \t\r"):
            try:
                rows.append(_strict_json(raw.decode("utf-8")))
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                return None
    return rows


def _trajectory_ok(obj) -> bool:
    if not isinstance(obj, dict) or set(obj) != {"id", "turns"}:
        return False
    if not isinstance(obj["id"], str) or not obj["id"] or not isinstance(obj["turns"], list):
        return False
    prev, last_t = None, -math.inf
    for turn in obj["turns"]:
        if not isinstance(turn, dict) or not {"input", "cached", "output"} <= set(turn) <= {
            "input",
            "cached",
            "output",
            "t",
        }:
            return False
        i, c, o = turn["input"], turn["cached"], turn["output"]
        if not (_is_count(i, 1) and _is_count(c) and _is_count(o)) or c >= i:
            return False
        if prev is not None and c > prev[0] + prev[1]:
            return False
        if "t" in turn:
            try:
                if not _is_time(turn["t"]) or float(turn["t"]) < last_t:
                    return False
            except OverflowError:
                return False
            last_t = float(turn["t"])
        prev = (i, o)
    return prev is not None


def trace_oracle(data: bytes) -> bool:
    rows = _oracle_lines(data)
    if not rows or not all(_trajectory_ok(r) for r in rows):
        return False
    return len({r["id"] for r in rows}) == len(rows)


def mooncake_oracle(data: bytes, limit: int | None) -> bool:
    rows = _oracle_lines(data, limit)
    if not rows:
        return False
    last = 0.0
    for r in rows:
        if not isinstance(r, dict) or not {"timestamp", "input_length", "output_length", "hash_ids"} <= set(r):
            return False
        ts, ids = r["timestamp"], r["hash_ids"]
        try:
            if not _is_time(ts) or not last <= float(ts):
                return False
        except OverflowError:
            return False
        last = float(ts)
        if not (_is_count(r["input_length"], 1) and _is_count(r["output_length"])):
            return False
        if not isinstance(ids, list) or not all(type(i) is int for i in ids):
            return False
    return True


def blank(data: bytes, limit: int | None = None) -> bool:
    return not any(line.strip(b" \t\r") for line in data.split(b"\n")[:limit])


# --- running the code under test ----------------------------------------------------------------


def check_error(e: TraceError, path: Path, empty: str, is_blank: bool) -> None:
    msg = str(e)
    if msg == f"{path}: {empty}":
        assert is_blank, msg  # the one file-level message: there is no line to name
    else:
        assert re.match(rf"{re.escape(str(path))}:\d+: \S", msg), msg
    # what was caught, for --hypothesis-show-statistics: the message's first words, no values
    what = re.sub(r"turns\[\d+\]: |\(.*|got .*|byte offset \d+: ", "", msg[len(str(path)) :])
    event(f"{path.name} rejected: " + " ".join(re.sub(r"^:\d+:", "", what).split()[:6]))


def read_or_error(path: Path, data: bytes):
    path.write_bytes(data)
    try:
        return read_trace(path)
    except TraceError as e:  # anything else escapes and fails the test
        check_error(e, path, "trace holds no trajectories", blank(data))
        return None


def import_or_error(path: Path, data: bytes, limit=None):
    path.write_bytes(data)
    try:
        return import_mooncake(path, limit=limit)
    except TraceError as e:
        empty = "trace holds no requests" + ("" if limit is None else f" in lines 1-{limit}")
        check_error(e, path, empty, blank(data, limit))
        return None


def assert_trace_verdict(folder: Path, data: bytes) -> None:
    got = read_or_error(folder / "mutated.jsonl", data)
    event("trace accepted" if got is not None else "trace rejected")
    assert (got is not None) == trace_oracle(data), (data[:300], got)
    if got is not None:  # what the reader accepts, the writer writes back the same
        write_trace(folder / "again.jsonl", got)
        assert read_trace(folder / "again.jsonl") == got


# --- generators ---------------------------------------------------------------------------
# A hypothesis draw costs ~0.1 ms, more than reading a small trace, so valid traces come from a
# seeded Random whose seed hypothesis draws (printed on failure), biased towards
# edge values by hand; the mutations themselves are hypothesis draws and shrink as usual.


def _count(rng: random.Random, hi: int) -> int:
    """A count in [0, hi], edges often."""
    pick = rng.randrange(6)
    v = (0, 1, hi, hi - 1, rng.randrange(min(hi, 40) + 1), rng.randrange(hi + 1))[pick]
    return max(0, min(v, hi))


def _time(rng: random.Random, after: float | None) -> float | None:
    if rng.randrange(3) == 0:
        return None
    t = rng.choice([0.0, -0.0, 1e-310, 1e308, -1e308, rng.uniform(-1e6, 1e6), float(rng.randrange(100))])
    return t if after is None else max(t, after)


ODD_CHARS = 'a:"\\\n\r\t\x00\x7f \u00e9\u2028\ufeff\U0001f600'


def _id(rng: random.Random, k: int) -> str:
    text = "".join(
        rng.choice(ODD_CHARS) if rng.randrange(2) else chr(rng.randrange(0x20, 0xD7FF)) for _ in range(rng.randrange(5))
    )
    return f"{k}:{text}"  # unique by construction; repeats come from the mutations


def valid_trace(rng: random.Random) -> list[Trajectory]:
    out = []
    for k in range(rng.randrange(1, 4)):
        turns, prev, last_t = [], None, None
        for _ in range(rng.randrange(1, 5)):
            room = LIMIT - 2 if prev is None else min(prev.input + prev.output, LIMIT - 2)
            cached = _count(rng, room)
            inp = cached + 1 + _count(rng, min(LIMIT - 2 - cached, rng.choice([40, 1 << 20, LIMIT])))
            t = _time(rng, last_t)
            last_t = last_t if t is None else t
            prev = Turn(input=inp, cached=cached, output=_count(rng, rng.choice([40, LIMIT - 1])), t=t)
            turns.append(prev)
        out.append(Trajectory(_id(rng, k), tuple(turns)))
    return out


def as_objects(trajs):
    return [
        {
            "id": t.id,
            "turns": [
                {"input": u.input, "cached": u.cached, "output": u.output, **({} if u.t is None else {"t": u.t})}
                for u in t.turns
            ],
        }
        for t in trajs
    ]


def mooncake_rows(rng: random.Random) -> list[dict]:
    """Requests, often continuing an earlier one (its blocks plus more) as a conversation does."""
    ts, out = 0, []
    for _ in range(rng.randrange(1, 7)):
        ts += rng.choice([0, 1, rng.randrange(3000)])
        ids = rng.choice(out)["hash_ids"][:] if out and rng.randrange(2) else []
        ids += [rng.randrange(8) for _ in range(rng.randrange(4))]
        inp = max(1, rng.choice([len(ids) * 512 - rng.randrange(600), rng.randrange(1, 3000), 1]))
        out.append({"timestamp": ts, "input_length": inp, "output_length": rng.choice([0, 1, 40]), "hash_ids": ids})
    return out


# Mutations are decoded from one drawn byte string (4 bytes an edit): a single draw is cheap, and
# hypothesis still shrinks it (towards edit 0 at position 0).
ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    0.5,
    3.0,
    -0.0,
    1e308,
    2**63 - 1,
    2**63,
    10**30,
    "",
    "1",
    "a",
    "\ud800",
    [],
    [1],
    [True],
    [None],
    {},
    {"input": 1},
    {"t": math.nan},
    math.nan,
    math.inf,
    -math.inf,
    [math.inf],
]
OPS = ("set", "delete", "add", "shuffle", "same_id", "nudge")
CHUNKS = [
    b'"',
    b",",
    b":",
    b"{",
    b"}",
    b"[",
    b"]",
    b"-",
    b"0",
    b"9",
    b".5",
    b"e9",
    b"e999",
    b" ",
    b"\n",
    b"\r",
    b"\x00",
    b"\x0c",
    b"\\",
    b"NaN",
    b"true",
    b"null",
    b'"t": 1, ',
    b'"id": "0:", ',
    b"\xc3\xa9",
    b"\xed\xa0\x80",
    b"\xf0\x9f",
]
edits = st.binary(min_size=4, max_size=16)


def _groups(blob: bytes):
    return [blob[k : k + 4] for k in range(0, len(blob) - 3, 4)]


def mutate(objs: list[dict], blob: bytes) -> list[dict]:
    """Structural edits of a trace's objects: values, keys, turn order, repeated ids."""
    for b in _groups(blob):
        op, where, value = OPS[b[0] % len(OPS)], b[1] << 8 | b[2], ODD_VALUES[b[3] % len(ODD_VALUES)]
        targets = [(o, None) for o in objs] + [
            (o, u) for o in objs if isinstance(o.get("turns"), list) for u in o["turns"] if isinstance(u, dict)
        ]
        obj, turn = targets[where % len(targets)]
        target = obj if turn is None else turn
        keys = sorted(target) or ["id"]
        key = keys[where // len(targets) % len(keys)]
        if op == "set":
            target[key] = value
        elif op == "delete":
            target.pop(key, None)
        elif op == "add":
            target[("t", "x", "id", "Input", "")[where % 5]] = value
        elif op == "shuffle" and isinstance(obj.get("turns"), list):
            random.Random(where).shuffle(obj["turns"])
        elif op == "same_id":
            obj["id"] = objs[0].get("id")
        elif op == "nudge" and type(target.get(key)) is int:
            target[key] += (-1, 1, 0.0, 0.5)[where % 4]
    return objs


def mutate_trajectories(trajs: list[Trajectory], blob: bytes) -> list[Trajectory]:
    """Edits of Trajectory objects as a caller might pass them: odd field values, ids, turn order."""
    for b in _groups(blob):
        k, value = b[1] % len(trajs), ODD_VALUES[b[3] % len(ODD_VALUES)]
        tr = trajs[k]
        i = b[2] % len(tr.turns) if tr.turns else 0
        turns, tid = tr.turns, tr.id
        if b[0] % 4 == 0 and turns:
            name = ("input", "cached", "output", "t")[b[2] % 4]
            turns = turns[:i] + (dataclasses.replace(turns[i], **{name: value}),) + turns[i + 1 :]
        elif b[0] % 4 == 1:
            tid = value if b[3] % 2 else trajs[0].id
        elif b[0] % 4 == 2:
            turns = turns[::-1]
        else:
            turns = turns[:i] + turns[i + 1 :]
        trajs[k] = Trajectory(tid, turns)
    return trajs


def apply_bytes(data: bytes, blob: bytes) -> bytes:
    """Byte edits: insert, delete or overwrite a JSON token or a raw byte (>= 0x80) somewhere."""
    for b in _groups(blob):
        pos, op = (b[0] << 8 | b[1]) % (len(data) + 1), b[2] % 3
        chunk = CHUNKS[b[3] % len(CHUNKS)] if b[3] < 0x80 else bytes([b[3]])
        end = pos if op == 0 else pos + len(chunk)
        data = data[:pos] + (b"" if op == 1 else chunk) + data[end:]
    return data


def as_bytes(objs) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objs).encode()  # NaN as JSON's NaN literal


seeds = st.integers(0, 2**32 - 1).map(random.Random)  # st.randoms() wraps every call: slower


# --- (a) round trip -------------------------------------------------------------------------


@cases(2000)
@given(rng=seeds)
def test_valid_trajectories_round_trip_exactly(folder, rng):
    trajs = valid_trace(rng)
    path = folder / "t.jsonl"
    write_trace(path, trajs)
    got = read_trace(path)
    assert got == trajs
    assert [repr(u.t) for tr in got for u in tr.turns] == [repr(u.t) for tr in trajs for u in tr.turns]
    first = path.read_bytes()
    write_trace(path, got)
    assert path.read_bytes() == first and trace_oracle(first)


# --- (b) bad input: only TraceError, always located, verdict as the oracle's -------------------


@cases(2000)
@given(rng=seeds, blob=edits)
def test_write_trace_refuses_exactly_what_read_trace_would(folder, rng, blob):
    trajs = mutate_trajectories(valid_trace(rng), blob)
    path = folder / "written.jsonl"
    path.unlink(missing_ok=True)
    as_read = trace_oracle(as_bytes(as_objects(trajs)))  # the same trajectories as a file
    try:
        write_trace(path, trajs)
    except TraceError as e:
        check_error(e, path, "trace holds no trajectories", False)
        assert not as_read and not path.exists(), str(e)
        return
    assert as_read
    event("written")
    assert _fields(read_trace(path)) == _fields(trajs)


def _fields(trajs):
    """What write_trace keeps: every field, times as floats (an int time is written as a float)."""
    return [
        (t.id, [(u.input, u.cached, u.output, None if u.t is None else float(u.t)) for u in t.turns]) for t in trajs
    ]


@cases(2000)
@given(rng=seeds, ops=edits)
def test_structurally_mutated_traces(folder, rng, ops):
    assert_trace_verdict(folder, as_bytes(mutate(as_objects(valid_trace(rng)), ops)))


@cases(2000)
@given(rng=seeds, edits=edits)
def test_byte_mutated_traces(folder, rng, edits):
    assert_trace_verdict(folder, apply_bytes(as_bytes(as_objects(valid_trace(rng))), edits))


lines = st.lists(
    st.one_of(
        st.sampled_from(ODD_VALUES).map(json.dumps),
        st.text(max_size=30),
        st.sampled_from(
            [
                "",
                " ",
                "\r",
                "\ufeff{}",
                "{",
                "[" * 3000,
                "1" * 5000,
                '{"id": "a", "turns": [{"input": 1, "cached": 0, "output": 0}]}',
                ('{"timestamp": 0, "input_length": 1, "output_length": 0, "hash_ids": []}'),
            ]
        ),
    ),
    max_size=5,
).map(lambda ls: "\n".join(ls).encode())


@cases(2000)
@given(data=st.one_of(st.binary(max_size=120), lines))
def test_random_bytes_and_lines(folder, data):
    assert_trace_verdict(folder, data)
    rows = import_or_error(folder / "mc.jsonl", data)
    assert (rows is not None) == mooncake_oracle(data, None), (data[:300], rows)


def assert_mooncake_verdict(folder: Path, data: bytes, limit) -> None:
    agents = import_or_error(folder / "mc.jsonl", data, limit)
    event("mooncake accepted" if agents is not None else "mooncake rejected")
    assert (agents is not None) == mooncake_oracle(data, limit), (data[:300], agents)
    if agents is not None:  # the importer's output obeys the trace format too
        write_trace(folder / "out.jsonl", agents)
        assert trace_oracle((folder / "out.jsonl").read_bytes())


@cases(2000)
@given(rng=seeds, blob=edits, how=st.sampled_from(["none", "rows", "bytes"]), limit=st.none() | st.integers(1, 7))
def test_mooncake_rows_structural_and_byte_mutations(folder, rng, blob, how, limit):
    rows = mooncake_rows(rng)
    raw = as_bytes(mutate(rows, blob)) if how == "rows" else as_bytes(rows)
    assert_mooncake_verdict(folder, apply_bytes(raw, blob) if how == "bytes" else raw, limit)


@pytest.fixture(scope="module")
def shipped_lines():
    return SHIPPED.read_bytes().split(b"\n")[:400]


@cases(1500)
@given(start=st.integers(0, 380), size=st.integers(1, 20), edits=edits)
def test_mutated_slices_of_the_shipped_mooncake_trace(folder, shipped_lines, start, size, edits):
    raw = b"\n".join(shipped_lines[start : start + size])
    assert_mooncake_verdict(folder, apply_bytes(raw, edits), None)

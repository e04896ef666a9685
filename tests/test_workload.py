import json
import os
from dataclasses import replace

import pytest

from dualpath_jax.config import TraceStats, WorkloadSpec
from dualpath_jax.workload import (
    TraceError,
    Trajectory,
    Turn,
    assign_agents,
    generate,
    read_trace,
    stats_for_mal,
    trajectory_stats,
    write_trace,
)
from dualpath_jax.workload.mooncake import import_mooncake

from .helpers import ROOT, load

TABLE = tuple(TraceStats(**row) for row in load("workload", "synthetic")["table"])


def spec(mal, seed=0, n=500):
    return WorkloadSpec(source="synthetic", agents=n, mal=mal, mal_label="x", trajectories=n, seed=seed, table=TABLE)


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"mal{r.mal}")
@pytest.mark.parametrize("seed", [0, 7])
def test_synthetic_matches_published_means_within_5pct(row, seed):
    got = trajectory_stats(generate(spec(row.mal, seed)))
    for key, value in got.items():
        want = getattr(row, key)
        assert abs(value / want - 1) < 0.05, (key, value, want)


def test_synthetic_turns_reload_whole_context_and_respect_cap():
    for tr in generate(spec(32768, n=50)):
        ctx = 0
        for t in tr.turns:
            assert t.cached == ctx and t.new >= 1 and t.output >= 1
            ctx = t.input + t.output
        assert tr.final_length <= 32768


def test_the_turn_count_tail_knob_shortens_or_lengthens_the_tail_around_the_same_mean():
    turns = {k: [len(t.turns) for t in generate(replace(spec(65536), turns_sigma_scale=k))] for k in (0.5, 1.0, 1.5)}
    assert max(turns[0.5]) < max(turns[1.0]) < max(turns[1.5])
    means = [sum(v) / len(v) for v in turns.values()]
    assert max(means) / min(means) < 1.25  # the mean is the published one; the tail moves
    assert generate(spec(65536)) == generate(replace(spec(65536), turns_sigma_scale=1.0))


def test_same_seed_same_trajectories_and_other_seed_differs():
    assert generate(spec(49152, seed=3, n=40)) == generate(spec(49152, seed=3, n=40))
    assert generate(spec(49152, seed=3, n=40)) != generate(spec(49152, seed=4, n=40))


def test_stats_for_mal_interpolates_between_rows():
    mid = stats_for_mal(TABLE, (32768 + 49152) // 2)
    assert mid.turns == pytest.approx((60 + 106) / 2)
    assert stats_for_mal(TABLE, 65536) == TABLE[2]


def test_trace_round_trip(tmp_path):
    trajs = generate(spec(32768, n=5))
    path = tmp_path / "t.jsonl"
    write_trace(path, trajs)
    assert read_trace(path) == trajs


TURN = '{"input": 5, "cached": 0, "output": 1}'


def line(*turns, tid='"a"', extra=""):
    return f'{{"id": {tid}, "turns": [{", ".join(turns or (TURN,))}]{extra}}}'


@pytest.mark.parametrize(
    "text, words",
    [
        (line('{"input": 5, "cached": 9, "output": 1}'), "turns[0]: field 'cached' (9) exceeds 'input' (5)"),
        (line('{"input": 5, "cached": 5, "output": 1}'), "at least one new input token"),
        (line('{"input": 5, "cached": 0}'), "turns[0]: field 'output' is missing"),
        ('{"id": "a", "turns": []}', "field 'turns' must be a non-empty list"),
        (line()[:-1], "not valid JSON"),
        ('{"turns": [' + TURN + "]}", "field 'id' is missing"),
        (line(tid='""'), "field 'id' must be a non-empty string"),
        # cached may not exceed what the agent's previous turn produced (5 + 1 here)
        (
            line(TURN, '{"input": 9, "cached": 7, "output": 1}'),
            "turns[1]: field 'cached' (7) exceeds what the agent's previous turn produced (input 5 + output 1)",
        ),
        # counts are real JSON integers
        (line('{"input": 5, "cached": 0, "output": true}'), "field 'output' must be an integer >= 0"),
        (line('{"input": 5.5, "cached": 0, "output": 1}'), "field 'input' must be an integer >= 1"),
        (line('{"input": 5.0, "cached": 0, "output": 1}'), "got 5.0"),
        (line('{"input": 5, "cached": -1, "output": 1}'), "field 'cached' must be an integer >= 0"),
        (line('{"input": 5, "cached": "0", "output": 1}'), "field 'cached' must be an integer"),
        (line(f'{{"input": {2**63}, "cached": 0, "output": 1}}'), "below 2**63"),
        (line('{"input": 1' + "0" * 5000 + ', "cached": 0, "output": 1}'), "not a usable JSON number"),
        # times: finite, numbers, non-decreasing within a trajectory
        (
            line('{"input": 5, "cached": 0, "output": 1, "t": NaN}'),
            "field 'turns[0].t' must be a finite number, got NaN",
        ),
        (line('{"input": 5, "cached": 0, "output": 1, "t": -Infinity}'), "got -Infinity"),
        (line('{"input": 5, "cached": 0, "output": 1, "t": 1e999}'), "got 1e999"),
        (line('{"input": 5, "cached": 0, "output": 1, "t": "1"}'), "field 't' must be a number"),
        (line('{"input": 5, "cached": 0, "output": 1, "t": null}'), "field 't' must be a number, got null"),
        (
            line('{"input": 5, "cached": 0, "output": 1, "t": 2}', '{"input": 9, "cached": 6, "output": 1, "t": 1.5}'),
            "turns[1]: field 't' (1.5) is before turns[0]'s (2.0): times may not decrease",
        ),
        (line(extra=', "x": NaN'), "field 'x' must be a finite number"),
        # unknown and repeated keys
        (line(extra=', "note": "hi"'), "field 'note' is unknown (known: id, turns)"),
        (line('{"input": 5, "cached": 0, "output": 1, "T": 1}'), "turns[0]: field 'T' is unknown"),
        (line(extra=', "id": "b"'), "field 'id' appears more than once"),
        ("[" * 100000, "JSON nested too deeply"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_malformed_trace_line_names_file_and_line(tmp_path, text, words):
    path = tmp_path / "bad.jsonl"
    good = line(tid='"ok"')
    path.write_text(good + "\n\n" + text + "\n")
    with pytest.raises(TraceError) as e:
        read_trace(path)
    assert str(e.value).startswith(f"{path}:3: ") and words in str(e.value), str(e.value)


def test_first_turn_may_start_with_preloaded_kv_and_times_may_repeat(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        line(
            '{"input": 50, "cached": 49, "output": 1, "t": 3}',
            '{"input": 60, "cached": 51, "output": 2, "t": 3.0}',
            '{"input": 70, "cached": 62, "output": 2}',
        )
        + "\n"
    )
    (tr,) = read_trace(path)
    assert [t.cached for t in tr.turns] == [49, 51, 62]
    assert [t.t for t in tr.turns] == [3.0, 3.0, None] and type(tr.turns[0].t) is float


def test_repeated_id_names_both_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(line(tid='"a"') + "\n" + line(tid='"b"') + "\n" + line(tid='"a"') + "\n")
    with pytest.raises(TraceError, match=rf"^{path}:3: field 'id' \('a'\) repeats line 1$"):
        read_trace(path)


def test_undecodable_bytes_name_the_byte_offset(tmp_path):
    path = tmp_path / "t.jsonl"
    good = (line(tid='"ok"') + "\n").encode()
    path.write_bytes(good + b'{"id": "caf\xc3\xa9\xff", "turns": []}\n')
    with pytest.raises(TraceError) as e:
        read_trace(path)
    offset = len(good) + len(b'{"id": "caf\xc3\xa9')
    assert str(e.value).startswith(f"{path}:2: byte offset {offset}: not valid UTF-8"), str(e.value)


def test_non_utf8_text_after_a_valid_multibyte_line_keeps_offsets_in_bytes(tmp_path):
    path = tmp_path / "t.jsonl"
    first = (line(tid='"\u00e9\u00e9"') + "\n").encode()  # two 2-byte characters
    path.write_bytes(first + b"\x80\n")
    with pytest.raises(TraceError, match=rf"{path}:2: byte offset {len(first)}:"):
        read_trace(path)


def test_missing_and_empty_trace_files(tmp_path):
    with pytest.raises(TraceError, match="trace file not found"):
        read_trace(tmp_path / "nope.jsonl")
    (tmp_path / "blank.jsonl").write_text("\n \r\n\t\n")
    with pytest.raises(TraceError, match="holds no trajectories"):
        read_trace(tmp_path / "blank.jsonl")


def tr(*turns, tid="a"):
    return Trajectory(tid, tuple(turns))


@pytest.mark.parametrize(
    "bad, words",
    [
        ([tr(Turn(5, 0, 1), Turn(9, 7, 1))], "2: turns[1]: field 'cached' (7) exceeds what the agent's previous"),
        ([tr(Turn(5, 5, 1))], "2: turns[0]: a turn must have at least one new input token"),
        ([tr(Turn(5, 0, 1, t=float("nan")))], "2: turns[0]: field 't' must be a finite number, got nan"),
        ([tr(Turn(5, 0, 1, t=2.0), Turn(9, 6, 1, t=1.0))], "2: turns[1]: field 't' (1.0) is before turns[0]'s (2.0)"),
        ([tr(Turn(5, 0, True))], "2: turns[0]: field 'output' must be an integer"),
        ([tr(Turn(5.0, 0, 1))], "2: turns[0]: field 'input' must be an integer"),
        ([tr(Turn(5, 0, 1), tid="ok")], "2: field 'id' ('ok') repeats line 1"),
        ([tr(tid="b")], "2: field 'turns' must be a non-empty tuple of turns"),
        ([Trajectory("b", [Turn(5, 0, 1)])], "2: field 'turns' must be a non-empty tuple"),
        ([tr(Turn(5, 0, 1), tid="")], "2: field 'id' must be a non-empty string"),
    ],
)
def test_write_trace_refuses_what_read_trace_rejects_and_keeps_old_file(tmp_path, bad, words):
    path = tmp_path / "t.jsonl"
    ok = [tr(Turn(5, 0, 1), tid="ok")]
    write_trace(path, ok)
    before = path.read_bytes()
    with pytest.raises(TraceError) as e:
        write_trace(path, ok + bad)
    assert str(e.value).startswith(f"{path}:") and words in str(e.value), str(e.value)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


def test_write_trace_refuses_an_empty_trace_and_writes_normal_modes(tmp_path):
    with pytest.raises(TraceError, match="holds no trajectories"):
        write_trace(tmp_path / "t.jsonl", [])
    assert not (tmp_path / "t.jsonl").exists()
    write_trace(tmp_path / "sub" / "t.jsonl", [tr(Turn(5, 0, 1, t=1))])
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "sub" / "t.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert read_trace(tmp_path / "sub" / "t.jsonl") == [tr(Turn(5, 0, 1, t=1.0))]


def test_write_trace_failure_keeps_old_file(tmp_path):
    path = tmp_path / "t.jsonl"
    write_trace(path, generate(spec(32768, n=2)))
    before = path.read_bytes()

    def broken():
        yield generate(spec(32768, n=1))[0]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_trace(path, broken())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


def test_assign_agents_reuses_trajectories_round_robin():
    trajs = generate(spec(32768, n=3))
    agents = assign_agents(trajs, 7)
    assert [a.id for a in agents] == [trajs[k % 3].id for k in range(7)]


def mooncake_file(tmp_path, rows):
    path = tmp_path / "mc.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_mooncake_import_prefix_and_chaining(tmp_path):
    path = mooncake_file(
        tmp_path,
        [
            {"timestamp": 0, "input_length": 1536, "output_length": 10, "hash_ids": [1, 2, 3]},
            {"timestamp": 5, "input_length": 2100, "output_length": 20, "hash_ids": [1, 2, 3, 4, 5]},
            {"timestamp": 9, "input_length": 700, "output_length": 5, "hash_ids": [1, 9]},
        ],
    )
    agents = import_mooncake(path)
    assert len(agents) == 2  # request 2 continues request 1; request 3 starts a new agent
    first, second = agents
    assert [t.cached for t in first.turns] == [0, 3 * 512]
    assert second.turns[0].cached == 512  # shares block 1 (the system prompt)
    assert first.turns[1].t == pytest.approx(0.005)


def test_mooncake_continuing_turn_reuses_at_most_what_its_agent_produced(tmp_path):
    # request 1's third block is partial (1500 = 2 * 512 + 476): request 2 matches all three
    # blocks (1536 tokens), but the agent produced only 1500 + 10; the trace rule caps it there
    path = mooncake_file(
        tmp_path,
        [
            {"timestamp": 0, "input_length": 1500, "output_length": 10, "hash_ids": [1, 2, 3]},
            {"timestamp": 5, "input_length": 2100, "output_length": 20, "hash_ids": [1, 2, 3, 4, 5]},
        ],
    )
    (agent,) = import_mooncake(path)
    assert [t.cached for t in agent.turns] == [0, 1510]


ROW = '"input_length": 700, "output_length": 5, "hash_ids": [1, 2]'


@pytest.mark.parametrize(
    "bad, words",
    [
        (
            '{"timestamp": 5, "input_length": "many", "output_length": 1, "hash_ids": []}',
            "field 'input_length' must be an integer >= 1 (below 2**63), got 'many'",
        ),
        (
            '{"timestamp": 5, "input_length": NaN, "output_length": 1, "hash_ids": []}',
            "field 'input_length' must be a finite number, got NaN",
        ),
        (
            '{"timestamp": 5, "input_length": 700.5, "output_length": 1, "hash_ids": []}',
            "field 'input_length' must be an integer >= 1",
        ),
        (
            '{"timestamp": 5, "input_length": 0, "output_length": 1, "hash_ids": []}',
            "field 'input_length' must be an integer >= 1",
        ),
        (
            '{"timestamp": 5, "input_length": 700, "output_length": -1, "hash_ids": []}',
            "field 'output_length' must be an integer >= 0",
        ),
        (
            '{"timestamp": 5, "input_length": 700, "output_length": false, "hash_ids": []}',
            "field 'output_length' must be an integer >= 0",
        ),
        ('{"timestamp": Infinity, ' + ROW + "}", "field 'timestamp' must be a finite number, got Infinity"),
        ('{"timestamp": -1, ' + ROW + "}", "field 'timestamp' must be >= 0, got -1"),
        ('{"timestamp": true, ' + ROW + "}", "field 'timestamp' must be a number, got True"),
        (
            '{"timestamp": 3, ' + ROW + "}",
            "field 'timestamp' (3) is earlier than the previous request's (4): the trace must be sorted by arrival",
        ),
        (
            '{"timestamp": 5, "input_length": 700, "output_length": 5, "hash_ids": [1, true]}',
            "field 'hash_ids' must be a list of integers; item 1 is True",
        ),
        (
            '{"timestamp": 5, "input_length": 700, "output_length": 5, "hash_ids": 7}',
            "field 'hash_ids' must be a list of integers, got 7",
        ),
        ('{"timestamp": 5, "input_length": 700, "output_length": 5}', "field 'hash_ids' is missing"),
        (
            '{"timestamp": 5, "input_length": 700, "output_length": 5, "hash_ids": [1], "x": NaN}',
            "field 'x' must be a finite number",
        ),
    ],
)
def test_mooncake_malformed_line_names_file_and_line(tmp_path, bad, words):
    path = mooncake_file(tmp_path, ['{"timestamp": 4, ' + ROW + "}", bad])
    with pytest.raises(TraceError) as e:
        import_mooncake(path)
    assert str(e.value).startswith(f"{path}:2: ") and words in str(e.value), str(e.value)


def test_mooncake_undecodable_bytes_name_the_byte_offset(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_bytes(b'{"timestamp": 0, "input_length": 7, "output_length": 1, "hash_ids": [\xfe]}\n')
    with pytest.raises(TraceError, match=rf"^{path}:1: byte offset 69: not valid UTF-8"):
        import_mooncake(path)


MOONCAKE = ROOT / "dualpath_jax" / "workload" / "data" / "mooncake"


def test_mooncake_shipped_conversation_trace_imports_within_the_trace_rules():
    cfg = load("workload", "mooncake")
    assert (ROOT / cfg["path"]).resolve() == (MOONCAKE / "conversation_trace.jsonl").resolve()
    agents = import_mooncake(ROOT / cfg["path"])  # checked like a JSONL trace on the way out
    turns = [t for a in agents for t in a.turns]
    assert len(agents) == 8099 and len(turns) == 12031
    assert 0.37 < sum(t.cached for t in turns) / sum(t.input for t in turns) < 0.38
    # the one turn the cap changed (it would reuse 24,984 tokens; its agent produced 24,602):
    # an uncapped prefix is whole blocks or input - 1, so a capped one is neither
    capped = [
        b
        for a in agents
        for p, b in zip(a.turns, a.turns[1:])
        if b.cached == p.input + p.output and b.cached < b.input - 1 and b.cached % 512
    ]
    assert [(t.input, t.cached) for t in capped] == [(24985, 24602)]


def test_mooncake_shipped_synthetic_trace_and_license_note():
    agents = import_mooncake(MOONCAKE / "synthetic_trace.jsonl", limit=500)
    turns = [t for a in agents for t in a.turns]
    assert len(turns) == 500
    assert any(t.cached > 0 for t in turns) and all(t.cached < t.input for t in turns)
    note = (MOONCAKE / "LICENSE").read_text()
    assert "kvcache-ai/Mooncake" in note and "Apache" in note and "unchanged" in note


def test_scale_turns_scales_appends_and_generation():
    from dualpath_jax.workload.agents import scale_turns

    base = generate(spec(32768, n=3))
    scaled = scale_turns(base, 2.0, 1.5)
    for b, s_ in zip(base, scaled):
        assert [t.new for t in s_.turns] == [round(t.new * 2.0) for t in b.turns]
        assert [t.output for t in s_.turns] == [round(t.output * 1.5) for t in b.turns]
        assert all(t.cached == p.input + p.output for p, t in zip(s_.turns, s_.turns[1:]))
    with pytest.raises(ValueError, match="workload.append_scale=0"):
        scale_turns(base, 0, 1)

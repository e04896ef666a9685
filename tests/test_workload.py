import json

import pytest

from dualpath_jax.config import TraceStats, WorkloadSpec
from dualpath_jax.workload import (TraceError, assign_agents, generate, read_trace, stats_for_mal,
                                   trajectory_stats, write_trace)
from dualpath_jax.workload.mooncake import import_mooncake

from .helpers import load

TABLE = tuple(TraceStats(**row) for row in load("workload", "synthetic")["table"])


def spec(mal, seed=0, n=500):
    return WorkloadSpec(source="synthetic", agents=n, mal=mal, mal_label="x", trajectories=n,
                        seed=seed, table=TABLE)


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


@pytest.mark.parametrize("line, words", [
    ('{"id": "a", "turns": [{"input": 5, "cached": 9, "output": 1}]}', "exceeds"),
    ('{"id": "a", "turns": [{"input": 5, "cached": 0}]}', "'output'"),
    ('{"id": "a", "turns": []}', "'turns'"),
    ('{"id": "a", "turns": [{"input": 5, "cached": 0, "output": 1}]', "not valid JSON"),
    ('{"turns": [{"input": 5, "cached": 0, "output": 1}]}', "'id'"),
])
def test_malformed_trace_line_names_file_and_line(tmp_path, line, words):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "ok", "turns": [{"input": 5, "cached": 0, "output": 1}]})
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(TraceError) as e:
        read_trace(path)
    assert f"{path}:2" in str(e.value) and words in str(e.value)


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


def test_mooncake_import_prefix_and_chaining(tmp_path):
    rows = [
        {"timestamp": 0, "input_length": 1500, "output_length": 10, "hash_ids": [1, 2, 3]},
        {"timestamp": 5, "input_length": 2100, "output_length": 20, "hash_ids": [1, 2, 3, 4, 5]},
        {"timestamp": 9, "input_length": 700, "output_length": 5, "hash_ids": [1, 9]},
    ]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    agents = import_mooncake(path)
    assert len(agents) == 2  # request 2 continues request 1; request 3 starts a new agent
    first, second = agents
    assert [t.cached for t in first.turns] == [0, 3 * 512]
    assert second.turns[0].cached == 512  # shares block 1 (the system prompt)
    assert first.turns[1].t == pytest.approx(0.005)


def test_mooncake_malformed_line(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text('{"timestamp": 0, "input_length": "many", "output_length": 1, "hash_ids": []}\n')
    with pytest.raises(TraceError, match=rf"{path}:1: field 'input_length'"):
        import_mooncake(path)


def test_mooncake_shared_trace_imports(tmp_path):
    from .helpers import ROOT
    path = ROOT.parent / "shared" / "data" / "mooncake" / "synthetic_trace.jsonl"
    if not path.is_file():
        pytest.skip("shared Mooncake data not beside the checkout")
    agents = import_mooncake(path, limit=500)
    turns = [t for a in agents for t in a.turns]
    assert len(turns) == 500
    assert any(t.cached > 0 for t in turns) and all(t.cached < t.input for t in turns)


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

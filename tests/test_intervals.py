"""Interaction intervals: the lognormal and trace think times draw what they say, their fields enter a
cell's identity only when read, bad input exits 2 naming it, and python -m experiments.intervals
turns one capacity cell per think time and one online cell per capacity into the fitted exponents."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dualpath_jax.config import THINK_SIGMA, THINK_TRACE, ConfigError, ThinkSpec
from dualpath_jax.online import think_sampler, trace_gaps
from dualpath_jax.results import cell_of
from experiments import intervals
from experiments.figures import cells, working_set

# Three agents as the Mooncake importer groups them (a request that extends all full blocks of an
# earlier one continues its agent): A at 0, 10, 40 s; B once at 3 s; C at 5, 25 s.
AGENTS_TRACE = [
    (0, 1024, [1, 2]),
    (3000, 100, [11]),
    (5000, 1024, [7, 8]),
    (10000, 2048, [1, 2, 3, 4]),
    (25000, 2048, [7, 8, 9, 10]),
    (40000, 3072, [1, 2, 3, 4, 5, 6]),
]
GAPS = [10.0, 20.0, 30.0]  # A: 10, 30; C: 20


def write_mooncake(path: Path, rows) -> Path:
    lines = [json.dumps({"timestamp": t, "input_length": n, "output_length": 8, "hash_ids": ids}) for t, n, ids in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_lognormal_think_times_have_the_mean_and_sigma_asked_for():
    draw = think_sampler(ThinkSpec("lognormal", 10.0, sigma=0.5), seed=1)
    x = np.array([draw() for _ in range(20000)])
    assert x.mean() == pytest.approx(10.0, rel=0.02)
    assert np.log(x).std() == pytest.approx(0.5, rel=0.03)


def test_trace_think_times_are_one_agents_gaps_rescaled_to_the_mean(tmp_path):
    path = write_mooncake(tmp_path / "t.jsonl", AGENTS_TRACE)
    assert sorted(trace_gaps(path)) == GAPS
    draw = think_sampler(ThinkSpec("trace", 5.0, trace=str(path)), seed=2)
    x = np.array([draw() for _ in range(6000)])
    assert set(x) == {2.5, 5.0, 7.5}  # 10, 20, 30 s x 5 / 20
    assert x.mean() == pytest.approx(5.0, rel=0.03)


def test_the_default_sigma_is_the_mooncake_gaps():
    gaps = trace_gaps(THINK_TRACE)
    assert gaps.size > 3000 and gaps.min() > 0
    assert np.log(gaps).std() == pytest.approx(THINK_SIGMA, abs=0.05)


def online(extra, aps=1.0):
    return cells.online_config(["model=ds27b", "cluster=1p1d", "+len=32k", *extra], aps)


def test_think_fields_enter_the_identity_only_when_read(tmp_path):
    # an existing cell keeps its id (results/online/ds27b_1p1d/aps1_len32k_costv2_thinkfixed30-58b49d90.json)
    spec = ("online", working_set.think_base(extra=working_set.think_overrides(30)), 1.0)
    assert cells.locate(spec).id == "58b49d90"
    exp = cell_of(online(["online.think.kind=exponential", "online.think.mean_s=5"]), "online")
    assert set(exp.identity["config"]["online"]["think"]) == {"kind", "mean_s"}
    logn = [cell_of(online(["online.think.kind=lognormal", "online.think.mean_s=5", *s]), "online") for s in
            ([], ["online.think.sigma=1.5"])]  # fmt: skip
    assert logn[0].id != logn[1].id and logn[1].path.name.startswith("aps1_len32k_costv2_thinklognormal5_sigma1.5-")
    a, b = (
        write_mooncake(tmp_path / f"{n}.jsonl", rows) for n, rows in (("a", AGENTS_TRACE), ("b", AGENTS_TRACE[:-1]))
    )
    traced = [cell_of(online(["online.think.kind=trace", "online.think.mean_s=5", f"online.think.trace={p}"]), "online")
              for p in (a, b)]  # fmt: skip
    assert all("think_trace_sha256" in c.identity["inputs"] for c in traced)
    assert traced[0].id != traced[1].id


@pytest.mark.parametrize(
    "extra, says",
    [
        (["online.think.kind=lognormal", "online.think.mean_s=5", "online.think.sigma=0"], "sigma: must be > 0"),
        (["online.think.kind=exponential", "online.think.mean_s=5", "online.think.sigma=2"], "sigma: 2 has no effect"),
        (["online.think.kind=fixed", "online.think.mean_s=5", "online.think.trace=x.jsonl"], "trace: 'x.jsonl' has no"),
        (["online.think.kind=trace", "online.think.mean_s=5", "online.think.trace=nope.jsonl"], "trace: no such file"),
        (["online.think.kind=trace"], "mean_s: config.online.think.kind=trace needs a mean think time > 0"),
    ],
)
def test_bad_think_settings_name_the_field(extra, says):
    with pytest.raises(ConfigError, match=r"^config\.online\.think\.") as e:
        online(extra)
    assert says in str(e.value)


def test_a_trace_without_gaps_or_with_a_bad_line_is_refused(tmp_path):
    single = write_mooncake(tmp_path / "single.jsonl", AGENTS_TRACE[1:3])  # B and C's first turn
    bad = tmp_path / "bad.jsonl"
    bad.write_text(write_mooncake(tmp_path / "ok.jsonl", AGENTS_TRACE[:2]).read_text() + '{"timestamp": 1}\n')
    for path, says in ((single, "no agent with two timed turns"), (bad, f"{bad}:3: ")):
        with pytest.raises(ConfigError, match=r"^config\.online\.think\.trace: ") as e:
            online(["online.think.kind=trace", "online.think.mean_s=5", f"online.think.trace={path}"])
        assert says in str(e.value)


def test_the_fit_is_the_ln_ln_least_squares_slope():
    b, a = intervals.loglog_fit([1, 2, 4, 8], [3 * r**1.5 for r in (1, 2, 4, 8)])
    assert (b, a) == (pytest.approx(1.5), pytest.approx(3.0))
    # r = 0, a missing value and y = 0 are left out; a line through fewer than two points is no fit
    assert intervals.loglog_fit([0, 1, 2, 4], [9, 2, None, 32])[0] == pytest.approx(2.0)  # (1, 2), (4, 32)
    assert intervals.loglog_fit([0, 5, 10], [1, 2, 0]) is None


TINY = [
    "model=ds27b",
    "cluster=1p1d",
    "+len=32k",
    "workload.trajectories=4",
    "online.duration_s=30",
    "online.warmup_s=5",
    "online.capacity_lo=0.4123456789",  # digits that :g would round away: the cells take the exact rate
    "online.capacity_max_probes=2",
    "~system.oracle",
    "system_set=paper_no_oracle",
    "+jobs=1",
    "tracking.wandb=false",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("intervals")
    before = dict(cells.RUNS)
    csv_path, png, points, fits = intervals.main(
        [*TINY, "+r=[0,5,10]", "online.think.kind=lognormal", f"results_dir={out}"]
    )
    ran = {k: cells.RUNS[k] - before.get(k, 0) for k in ("capacity", "online")}
    return out, csv_path, png, points, fits, ran


def test_each_think_time_is_a_capacity_cell_and_each_capacity_an_online_cell(sweep):
    out, csv_path, png, points, fits, ran = sweep
    names = sorted(p.name.split("-")[0] for p in (out / "online" / "ds27b_1p1d").glob("capacity*.json"))
    assert names == [
        "capacity_len32k_paper_no_oracle_costv2",
        "capacity_len32k_paper_no_oracle_costv2_thinklognormal10_sigma1",
        "capacity_len32k_paper_no_oracle_costv2_thinklognormal5_sigma1",
    ]
    rates = {(p["r_s"], p["capacity_aps"]) for p in points}
    assert ran == {"capacity": 3, "online": len(rates)} and png.stat().st_size > 0
    for p in points:
        cap = json.loads(Path(p["capacity_file"]).read_text())
        assert p["capacity_aps"] == cap["systems"][p["system"]]["capacity_aps"] > 0
        load = json.loads(Path(p["online_file"]).read_text())
        assert load["config"]["online"]["aps"] == p["capacity_aps"]  # exactly the rate found
        assert load["config"]["online"]["think"] == cap["config"]["online"]["think"]
        m = load["systems"][p["system"]]
        assert (p["ws_mean_bytes"], p["ws_max_bytes"]) == (
            m["working_set_bytes"]["mean"],
            m["working_set_bytes"]["max"],
        )
        assert p["agent_jct_mean_s"] == m["agent_jct_s"]["mean"]
        assert p["ws_slo_met"]  # the cell at the capacity is the search's last passing probe again


def test_the_csv_holds_the_points_and_the_fits_of_them(sweep):
    _, csv_path, _, points, fits, _ = sweep
    written = list(csv.DictReader(csv_path.open()))
    assert [w["row"] for w in written] == ["point"] * len(points) + ["fit"] * len(fits)
    for s in ("basic", "dualpath"):
        mine = [p for p in points if p["system"] == s and p["r_s"] > 0]
        for q in ("capacity_aps", "ws_mean_bytes"):
            f = next(w for w in written if w["row"] == "fit" and w["system"] == s and w["quantity"] == q)
            want = np.polyfit([math.log(p["r_s"]) for p in mine], [math.log(p[q]) for p in mine], 1)[0]
            assert float(f["exponent"]) == pytest.approx(want)
            assert float(f["argument_exponent"]) == intervals.ARGUMENT[q] and f["fit_r_s"] == "5;10"


def test_a_second_sweep_reads_every_cell(sweep):
    out = sweep[0]
    before = dict(cells.RUNS)
    intervals.main([*TINY, "+r=[0,5,10]", "online.think.kind=lognormal", f"results_dir={out}"])
    assert dict(cells.RUNS) == before


@pytest.mark.parametrize(
    "args, says",
    [
        (["+r=[5]"], "+r=[5]: the fits need at least two think times > 0"),
        (["+r=[0,-1,5]"], "+r=[0,-1,5]: r takes a list of mean think times in seconds >= 0"),
        (["+r=[5,x]"], "+r=[5,x]: r takes a list"),
        (["+r=[5,5,10]"], "a think time is given twice"),
        (["online.think.mean_s=3"], "the mean think time comes from +r=[...]"),
        (["online.think.kind=none"], "needs a think-time distribution"),
        (["+aps=1"], "+aps=1: experiments.intervals searches each system's capacity itself"),
        (["+jobs=0"], "+jobs=0: jobs takes a positive integer"),
        (["online.think.kind=gamma"], "config.online.think.kind: must be one of none | fixed | exponential"),
        (["online.think.sigma=-1", "online.think.kind=lognormal"], "config.online.think.sigma: must be > 0"),
        (["model=[1,2]"], "model=[1,2]: the config group model takes one option name"),
    ],
)
def test_bad_input_exits_2_naming_it(capsys, args, says):
    with pytest.raises(SystemExit) as e:
        intervals.main([*TINY, *args])
    assert e.value.code == 2
    assert says in capsys.readouterr().out.replace("\n", "")

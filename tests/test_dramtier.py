"""python -m experiments.dramtier: one offline cell per DRAM tier size through the results store
(tier 0: the given cell with its oracle; the others: every system with I/O given the tier, the
oracle left out), the figure's CSV from those cells, and bad sizes refused with exit 2."""

import csv
import json
from pathlib import Path

import pytest

from experiments import dramtier
from experiments.figures import cells

TINY = ["model=ds27b", "+agents=8", "+len=32k", "workload.trajectories=8", "tracking.wandb=false"]
TIERS = "+tiers=0,0.0005"  # TB per node: none, and part of these 8 agents' KV


def run(out):
    jobs, cells.JOBS = cells.JOBS, 1  # in-process: the module's cell counter sees every run
    try:
        before = cells.RUNS["offline"]
        got = dramtier.main([*TINY, TIERS, f"results_dir={out}"])
        return got, cells.RUNS["offline"] - before
    finally:
        cells.JOBS = jobs


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("tier")
    (csv_path, png, rows), ran = run(out)
    return out, csv_path, png, rows, ran


def test_each_tier_size_is_one_cell_with_the_tier_on_every_system_with_io(study):
    out, _, png, rows, ran = study
    assert ran == 2 and png.stat().st_size > 0
    files = {r["tier_tb_per_node"]: r["file"] for r in rows}
    for tier, path in files.items():
        systems = json.loads(Path(path).read_text())["config"]["systems"]
        names = [s["name"] for s in systems]
        assert names == (["basic", "dualpath", "oracle"] if tier == 0 else ["basic", "dualpath"]), tier
        assert all(s["dram_tier_tb"] == tier for s in systems if not s["free_io"]), tier


def test_the_csv_is_the_cells_numbers_and_the_gain_is_against_no_tier(study):
    _, csv_path, _, rows, _ = study
    written = list(csv.DictReader(csv_path.open()))
    assert len(written) == len(rows) == 3 + 2
    jct0 = {r["system"]: r["jct_s"] for r in rows if r["tier_tb_per_node"] == 0}
    for w, r in zip(written, rows):
        m = json.loads(Path(w["file"]).read_text())["systems"][w["system"]]
        assert float(w["jct_s"]) == m["jct_s"] == r["jct_s"]
        assert r["gain_vs_no_tier"] == jct0[r["system"]] / m["jct_s"]
        assert r["tier_hit_share"] == (m["tier_hit_bytes"] / m["hit_bytes"] if m["hit_bytes"] else 0.0)
    share = {(r["tier_tb_per_node"], r["system"]): r["tier_hit_share"] for r in rows}
    assert share[(0.0, "dualpath")] == 0 < share[(0.0005, "dualpath")] < 1
    best = dramtier.verdict(rows)
    assert set(best) == {"basic", "dualpath"}
    for s, v in best.items():
        assert v["gain"] == max(r["gain_vs_no_tier"] for r in rows if r["system"] == s and r["tier_tb_per_node"] > 0)


def test_a_second_study_reads_every_cell(study):
    assert run(study[0])[1] == 0


@pytest.mark.parametrize(
    "args, says",
    [
        (["+tiers=0,big"], "+tiers=0,big: tiers takes comma-separated TB per node"),
        (["+tiers=-1,0"], "+tiers=-1,0: tier sizes must be >= 0 TB per node"),
        (["model=[1,2]"], "model=[1,2]: the config group model takes one option name"),
        (
            ["+system.basic.dram_tier_tb=1", "+system.dualpath.dram_tier_tb=1", "~system.oracle"],
            "the study needs a system without a DRAM tier",
        ),  # fmt: skip
    ],
)
def test_a_bad_study_exits_2_naming_it(capsys, args, says):
    with pytest.raises(SystemExit) as e:
        dramtier.main([*TINY, *args])
    assert e.value.code == 2
    assert says in capsys.readouterr().out

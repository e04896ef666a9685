"""The figure scripts: a cell is run once and then read from disk; a figure's CSV holds the
numbers of its cells' results files, and a PNG is drawn."""

import csv
import json

import pytest

from experiments.figures import cells, pd_ratio
from experiments.figures.__main__ import FIGURES
from experiments.figures.__main__ import main as figures_main

TINY = ["model=ds27b", "cluster=1p1d", "+agents=8", "+len=32k", "workload.trajectories=8"]


def only_file(folder, pattern):
    [path] = folder.glob(pattern)
    return path


def test_a_cell_is_run_once_then_read_from_disk(tmp_path):
    before = cells.RUNS["offline"]
    first = cells.offline(TINY, results_dir=tmp_path)
    path = only_file(tmp_path / "offline" / "ds27b_1p1d", "agents8_len32k_costv2-*.json")
    assert first["_path"] == str(path)
    assert cells.RUNS["offline"] == before + 1
    mtime = path.stat().st_mtime_ns
    second = cells.offline(TINY, results_dir=tmp_path)
    assert cells.RUNS["offline"] == before + 1  # read, not run
    assert path.stat().st_mtime_ns == mtime
    assert second["systems"] == first["systems"]
    # The same file name with another configuration in it is stale: that cell is run again.
    data = json.loads(path.read_text())
    data["config"]["workload"]["seed"] = 7
    path.write_text(json.dumps(data))
    cells.offline(TINY, results_dir=tmp_path)
    assert cells.RUNS["offline"] == before + 2
    assert json.loads(path.read_text())["config"]["workload"]["seed"] == 0


def test_figure_writes_a_png_and_a_csv_matching_the_cells(tmp_path):
    csv_path, png = pd_ratio.make(
        results_dir=tmp_path, clusters=("1p1d",), length="32k", agents=(8,), extra=["workload.trajectories=8"]
    )
    assert csv_path == tmp_path / "figures" / "pd_ratio.csv"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(csv_path.open()))
    data = json.loads(only_file(tmp_path / "offline" / "ds27b_1p1d", "agents8_len32k_costv2-*.json").read_text())
    assert {r["system"] for r in rows} == set(data["systems"]) == {"basic", "dualpath", "oracle"}
    for r in rows:
        assert (r["model"], r["cluster"], r["mal"], int(r["agents"])) == ("ds27b", "1p1d", "32k", 8)
        assert float(r["jct_s"]) == pytest.approx(data["systems"][r["system"]]["jct_s"], rel=1e-12)
        assert float(r["speedup_vs_basic"]) == pytest.approx(
            data["comparison"][r["system"]]["speedup_vs_basic"], rel=1e-12
        )


def test_an_online_cell_is_run_once_then_read_from_disk(tmp_path):
    small = [
        "model=ds27b",
        "cluster=1p1d",
        "+len=32k",
        "workload.trajectories=8",
        "online.duration_s=60",
        "online.warmup_s=10",
    ]
    before = cells.RUNS["online"]
    first = cells.online(small, 0.2, results_dir=tmp_path)
    path = only_file(tmp_path / "online" / "ds27b_1p1d", "aps0.2_len32k_costv2-*.json")
    assert first["_path"] == str(path) and cells.RUNS["online"] == before + 1
    assert first["config"]["online"]["duration_s"] == 60  # the caller's overrides win over cells.ONLINE
    assert set(first["systems"]) == {"basic", "dualpath", "oracle"}
    second = cells.online(small, 0.2, results_dir=tmp_path)
    assert cells.RUNS["online"] == before + 1 and second["systems"] == first["systems"]
    # cells.ONLINE's 900 s is another configuration: a different cell, run again.
    cells.online(small[:-2], 0.2, results_dir=tmp_path)
    assert cells.RUNS["online"] == before + 2


def test_the_command_refuses_unknown_figures(capsys):
    assert "offline_jct" in FIGURES and "large_scale" in FIGURES
    with pytest.raises(SystemExit) as exit_:
        figures_main(["no_such_figure"])
    assert exit_.value.code == 2
    assert "unknown figure(s) no_such_figure; known: offline_jct" in capsys.readouterr().err


def test_missing_cells_run_in_a_pool_and_match_a_serial_run(tmp_path):
    specs = [("offline", [*TINY[:2], f"+agents={n}", *TINY[3:]]) for n in (4, 8)]
    serial = cells.fetch(specs, "serial", results_dir=tmp_path / "serial", jobs=1)
    before = cells.RUNS["offline"]
    pooled = cells.fetch(specs, "pooled", results_dir=tmp_path / "pooled", jobs=2)
    assert cells.RUNS["offline"] == before + 2  # the workers' runs are counted in the parent
    assert all(cells.stored(s, tmp_path / "pooled") for s in specs)
    for a, b in zip(serial, pooled):  # same order as the specs, same numbers
        assert a["config"]["workload"]["agents"] == b["config"]["workload"]["agents"]
        assert a["systems"] == b["systems"]
    assert cells.fetch(specs, "again", results_dir=tmp_path / "pooled", jobs=2)[1]["systems"] == pooled[1]["systems"]
    assert cells.RUNS["offline"] == before + 2  # read, not run


def test_the_command_runs_each_cell_once_costliest_first(tmp_path):
    from experiments.figures import online_latency, ttft_breakdown
    from experiments.figures.__main__ import all_specs

    def paths(specs):
        return [cells.locate(s, tmp_path).path for s in specs]

    chosen = ["online_latency", "ttft_breakdown"]  # ttft_breakdown's cells are online_latency's
    specs = all_specs(chosen, results_dir=tmp_path)
    assert sorted(paths(specs)) == sorted(set(paths(online_latency.specs()) + paths(ttft_breakdown.specs())))
    assert len(set(paths(specs))) == len(specs) == len(online_latency.specs())
    assert [s[0] for s in specs] == sorted((s[0] for s in specs), key=["capacity", "online", "offline"].index)

"""python -m experiments.pdsearch: one offline cell per P:D split of a GPU budget, through the
results store, the best shape per system from those cells, and bad budgets refused with exit 2."""

import csv
import json
from pathlib import Path

import pytest

from experiments import pdsearch
from experiments.figures import cells

TINY = ["model=ds27b", "+agents=8", "+len=32k", "workload.trajectories=8", "tracking.wandb=false"]


def test_shapes_split_every_node_count():
    assert pdsearch.shapes(48, 8) == [(1, 5), (2, 4), (3, 3), (4, 2), (5, 1)]
    assert pdsearch.shapes(16, 8) == [(1, 1)]


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    out = tmp_path_factory.mktemp("pds")
    jobs, cells.JOBS = cells.JOBS, 1  # in-process: the module's cell counter sees every run
    try:
        before = cells.RUNS["offline"]
        csv_path, png, rows = pdsearch.main([*TINY, "+gpus=32", f"results_dir={out}"])
        ran = cells.RUNS["offline"] - before
    finally:
        cells.JOBS = jobs
    return out, csv_path, png, rows, ran


def test_each_split_is_one_cell_of_its_shape(search):
    out, csv_path, png, rows, ran = search
    folders = sorted(p.name for p in (out / "offline").iterdir())
    assert folders == ["ds27b_1p3d", "ds27b_2p2d", "ds27b_3p1d"] and ran == 3
    for r in rows:
        cfg = json.loads(Path(r["file"]).read_text())["config"]["cluster"]
        assert (cfg["prefill_nodes"], cfg["decode_nodes"]) == (r["prefill_nodes"], r["decode_nodes"])
        assert cfg["gpus_per_node"] * (cfg["prefill_nodes"] + cfg["decode_nodes"]) == 32
    assert png.stat().st_size > 0


def test_the_csv_and_the_best_shapes_are_the_cells_numbers(search):
    _, csv_path, _, rows, _ = search
    written = list(csv.DictReader(csv_path.open()))
    assert len(written) == len(rows) == 3 * 3
    for w in written:
        data = json.loads(Path(w["file"]).read_text())
        assert float(w["jct_s"]) == data["systems"][w["system"]]["jct_s"]
    best = pdsearch.best_by_system(rows)
    for s, b in best.items():
        assert b["jct_s"] == min(r["jct_s"] for r in rows if r["system"] == s)
    bar = min(r["jct_s"] for r in rows if r["system"] != "oracle") * (1 + pdsearch.TOL)
    assert [r["good"] for r in rows] == [r["jct_s"] <= bar for r in rows]
    own = {s: b["jct_s"] * (1 + pdsearch.TOL) for s, b in best.items()}
    assert [r["near_own_best"] for r in rows] == [r["jct_s"] <= own[r["system"]] for r in rows]
    assert all(
        set(b["good_shapes"]) == {r["shape"] for r in rows if r["system"] == s and r["good"]} for s, b in best.items()
    )


def test_the_pd_bound_is_marked_per_shape(search):
    rows = search[3]
    # a 400 Gb/s SNIC per node = one 400 Gb/s CNIC (s = 1), 8 GPUs, DRAM 10 CNICs:
    # 1/7 <= P/D <= min(6, 7/2, (10 - 3)/2) = 3.5
    assert {r["shape"]: r["in_pd_bound"] for r in rows} == {"1P3D": True, "2P2D": True, "3P1D": True}
    template = cells.offline_config(TINY).cluster
    fake = {"systems": {"basic": {"jct_s": 1.0}}, "comparison": {"basic": {"speedup_vs_basic": 1.0}}, "_path": "x"}
    marked = pdsearch.rows_of([(3, 1), (4, 1), (1, 8)], [fake] * 3, template, 0.1)
    assert [r["in_pd_bound"] for r in marked] == [True, False, False]  # 4 > 3.5; 1/8 < 1/7


def test_with_wandb_the_figure_is_logged_as_image_table_and_artifact(search, tmp_path, monkeypatch):
    out, csv_path, png, rows, ran = search
    monkeypatch.chdir(tmp_path)  # W&B writes its offline run here
    monkeypatch.setenv("WANDB_MODE", "offline")
    before = cells.RUNS["offline"]
    wandb_on = [o for o in TINY if not o.startswith("tracking.")] + ["tracking.wandb=true"]
    pdsearch.main([*wandb_on, "+gpus=32", f"results_dir={out}"])
    assert cells.RUNS["offline"] == before  # the stored cells were read, not run
    [run] = (tmp_path / "wandb").glob("offline-run-*")
    [log] = run.glob("*.wandb")
    raw = log.read_bytes()
    assert b"image-file" in raw and b"table-file" in raw  # the figure and its CSV
    assert f"figure-{png.stem}".encode() in raw  # the artifact named after the figure
    assert sorted(p.name for p in run.rglob("media/images/*.png"))  # the PNG itself went along


def test_a_second_search_reads_every_cell(search):
    out = search[0]
    jobs, cells.JOBS = cells.JOBS, 1
    try:
        before = cells.RUNS["offline"]
        pdsearch.main([*TINY, "+gpus=32", f"results_dir={out}"])
        assert cells.RUNS["offline"] == before
    finally:
        cells.JOBS = jobs


@pytest.mark.parametrize(
    "args, says",
    [
        (["+gpus=12"], "+gpus=12: the budget must be a positive multiple of 8 GPUs per node"),
        (["+gpus=8"], "+gpus=8: 1 node of 8 GPUs; a P/D split needs at least 2"),
        (["+gpus=many"], "+gpus=many: gpus takes an integer"),
        (["+gpus=16", "+tol=2"], "+tol=2: tol takes a number in [0, 1)"),
        ([], "+gpus=N is required"),
        (["+gpus=16", "model=[1,2]"], "model=[1,2]: the config group model takes one option name"),
        (["+gpus=16", "model=ds660b"], "no split of the budget holds the model: ds660b on 1p1d: prefill weights"),
    ],
)
def test_a_bad_budget_exits_2_naming_it(capsys, args, says):
    with pytest.raises(SystemExit) as e:
        pdsearch.main([*TINY, *args])
    assert e.value.code == 2
    assert says in capsys.readouterr().out


def test_a_shape_that_cannot_hold_the_model_is_skipped_with_its_reason():
    base = ["model=ds660b", "cluster=2p4d", "+agents=8", "+len=32k", "tracking.wandb=false"]
    ok, skipped = pdsearch.feasible(base, pdsearch.shapes(48, 8))
    assert ok == [(2, 4), (3, 3), (4, 2)]
    assert [s for s, _ in skipped] == [(1, 5), (5, 1)]
    assert "prefill weights" in skipped[0][1] and "decode weights" in skipped[1][1]

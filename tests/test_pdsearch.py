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
    plan = [pdsearch.Deployment(3, 1), pdsearch.Deployment(4, 1), pdsearch.Deployment(1, 8)]
    marked = pdsearch.rows_of(plan, [fake] * 3, template, 0.1)
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
        (["+gpus=16", "+ep_decode=0"], "+ep_decode=0: takes distinct positive EP group sizes"),
        (["+gpus=16", "+ep_decode=8,x"], "+ep_decode=8,x: takes distinct positive EP group sizes"),
        (["+gpus=16", "+ep_decode=8", "costmodel=v1"], "cost model v1 has no EP groups"),
        (["+gpus=16", "+capacity=maybe"], "+capacity=maybe: capacity takes true or false"),
        (["+gpus=16", "online.duration_s=60"], "online.duration_s=60: online settings shape only the capacity cells"),
    ],
)
def test_a_bad_budget_exits_2_naming_it(capsys, args, says):
    with pytest.raises(SystemExit) as e:
        pdsearch.main([*TINY, *args])
    assert e.value.code == 2
    assert says in capsys.readouterr().out


def test_a_shape_that_cannot_hold_the_model_is_skipped_with_its_reason():
    base = ["model=ds660b", "cluster=2p4d", "+agents=8", "+len=32k", "tracking.wandb=false"]
    ok, skipped = pdsearch.feasible(base, pdsearch.deployments(pdsearch.shapes(48, 8), (), ()))
    assert [(d.p, d.d) for d in ok] == [(2, 4), (3, 3), (4, 2)]
    assert [(d.p, d.d) for d, _ in skipped] == [(1, 5), (5, 1)]
    assert "prefill weights" in skipped[0][1] and "decode weights" in skipped[1][1]


def test_ep_caps_are_deployment_options_that_keep_the_anchor_calibration(tmp_path):
    """+ep_decode searches the decode EP cap with every split, one cell each, under the anchor's own
    calibration (choosing the deployment's EP re-fits nothing); rows carry each cell's numbers."""
    from dualpath_jax.configure import anchor_model
    from dualpath_jax.costmodel import calibrate

    _, png, rows = pdsearch.main([*TINY, "+gpus=16", "+ep_prefill=4", "+ep_decode=4,8", f"results_dir={tmp_path}"])
    assert png.name == "pdsearch_ds27b_16g_len32k_a8_epp4_epd4-8.png"
    assert [(r["deployment"], r["ep_max_prefill"], r["ep_max_decode"]) for r in rows if r["system"] == "basic"] == [
        ("1P1D (EP prefill 4, EP decode 4)", 4, 4),
        ("1P1D (EP prefill 4, EP decode 8)", 4, 8),
    ]
    cfg = cells.offline_config(TINY)  # the cost model's own EP caps
    anchor = calibrate(anchor_model(cfg), cfg.hardware, cfg.cluster.gpus_per_node, cfg.costmodel).as_dict()
    data = [json.loads(Path(f).read_text()) for f in sorted({r["file"] for r in rows})]
    assert [d["calibration"] for d in data] == [anchor, anchor]
    for r in rows:
        assert r["jct_s"] == json.loads(Path(r["file"]).read_text())["systems"][r["system"]]["jct_s"]


def test_capacity_per_deployment_through_the_capacity_cells(tmp_path):
    """+capacity=true adds one SLO capacity search per deployment (its online settings from the
    `online.*` overrides); the best for capacity is the highest, good ones within tol of the best."""
    short = [
        "system=paper",
        "online.duration_s=60",
        "online.warmup_s=10",
        "online.capacity_lo=1",
        "online.capacity_max_probes=3",
    ]
    _, _, rows = pdsearch.main([*TINY, "+gpus=16", "+capacity=true", *short, f"results_dir={tmp_path}"])
    [cap_file] = {r["capacity_file"] for r in rows}
    cap = json.loads(Path(cap_file).read_text())
    assert cap["cell"]["kind"] == "capacity" and cap["config"]["online"]["duration_s"] == 60
    assert {r["system"]: r["capacity_aps"] for r in rows} == {s: m["capacity_aps"] for s, m in cap["systems"].items()}
    best = pdsearch.best_by_system(rows)
    top = max(r["capacity_aps"] for r in rows if r["system"] != "oracle")
    for s, b in best.items():
        assert b["best_capacity"]["capacity_aps"] == max(r["capacity_aps"] for r in rows if r["system"] == s)
        assert b["good_capacity_shapes"] == (["1P1D"] if b["best_capacity"]["capacity_aps"] >= 0.9 * top else [])

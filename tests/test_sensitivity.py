"""python -m experiments.sensitivity: one cell per input end, through the results store, and a CSV
whose numbers are those cells' results files."""

import csv
import json
from pathlib import Path

import pytest

from experiments import sensitivity
from experiments.figures import cells

TINY = ["model=ds27b", "cluster=1p1d", "+agents=8", "+len=32k", "workload.trajectories=8"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("sens")
    jobs, cells.JOBS = cells.JOBS, 1  # in-process: the module's cell counter sees every run
    try:
        before = cells.RUNS["offline"]
        csv_path, png = sensitivity.main([*TINY, f"results_dir={out}", "tracking.wandb=false"])
        ran = cells.RUNS["offline"] - before
    finally:
        cells.JOBS = jobs
    return out, csv_path, png, ran


def test_each_input_end_is_one_cell_on_cost_model_v2(study):
    out, csv_path, png, ran = study
    files = sorted((out / "offline" / "ds27b_1p1d").glob("*.json"))
    # base + 2 ends of 12 inputs; decode_step_overhead_ms=0.0 is the base cell itself
    assert len(files) == 24 and ran == 24
    assert all("_costv2-" in f.name for f in files)
    assert png.stat().st_size > 0


def test_the_csv_holds_the_cells_numbers(study):
    out, csv_path, _, _ = study
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 25 * 3
    inputs = {r["input"] for r in rows} - {"base"}
    assert inputs == {i.label for i in sensitivity.INPUTS}
    for r in rows:
        data = json.loads(Path(r["file"]).read_text())  # outside the repository: an absolute path
        assert float(r["jct_s"]) == data["systems"][r["system"]]["jct_s"]
        if r["input"] != "base":
            inp = next(i for i in sensitivity.INPUTS if i.label == r["input"])
            section, *path = inp.key.split(".")
            value = data["config"][section]
            for k in path:
                value = value[k]
            assert str(value) == r["value"]
    kv = {r["end"]: r["value"] for r in rows if r["input"] == "KV format"}
    assert kv == {"low": "fp8", "high": "bf16_indexer"}  # the model's smallest and largest


def test_a_second_run_reads_every_cell(study):
    out, *_ = study
    jobs, cells.JOBS = cells.JOBS, 1
    try:
        before = cells.RUNS["offline"]
        sensitivity.main([*TINY, f"results_dir={out}", "tracking.wandb=false"])
        assert cells.RUNS["offline"] == before
    finally:
        cells.JOBS = jobs


@pytest.mark.parametrize(
    "override, says",
    [
        ("costmodel.storage_efficiency=2", "config.costmodel.storage_efficiency"),
        ("model=[1,2]", "model=[1,2]: the config group model takes one option name"),
    ],
)
def test_a_bad_override_exits_2_naming_it(capsys, override, says):
    with pytest.raises(SystemExit) as e:
        sensitivity.main([*TINY, override])
    assert e.value.code == 2
    assert says in capsys.readouterr().out

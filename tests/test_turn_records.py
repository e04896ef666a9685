"""sim.record_turns=true: per-turn records beside the results file (the same cell, the same
numbers), read back by `experiments.cdf`, whose percentiles are the records' own."""

import csv
import json

import numpy as np
import pytest

from dualpath_jax.results.turns import FIELDS, turns_path
from experiments import cdf

from .helpers import project_workdir, run_cli

TINY = [
    "model=ds27b",
    "cluster=1p1d",
    "+len=32k",
    "workload.trajectories=8",
    "tracking.wandb=false",
    "sim.progress=false",
]


@pytest.fixture(scope="module")
def cells_with_records(tmp_path_factory):
    work = project_workdir(tmp_path_factory.mktemp("rec"))
    out = work / "results"
    plain = run_cli("experiments.offline", [*TINY, "+agents=8", f"results_dir={out}"], work)
    assert plain.returncode == 0, plain.stderr
    [path] = sorted((out / "offline").glob("*/*.json"))
    before = path.read_text()
    rec = run_cli("experiments.offline", [*TINY, "+agents=8", f"results_dir={out}", "sim.record_turns=true"], work)
    assert rec.returncode == 0, rec.stderr
    online = run_cli(
        "experiments.online",
        [*TINY, "+aps=1", "online.duration_s=40", "online.warmup_s=10", f"results_dir={out}", "sim.record_turns=true"],
        work,
    )
    assert online.returncode == 0, online.stderr
    [opath] = sorted((out / "online").glob("*/*.json"))
    return out, path, before, rec.stdout, opath


def test_records_are_the_same_cell_with_the_same_numbers(cells_with_records):
    out, path, before, stdout, _ = cells_with_records
    assert sorted(p.name for p in (out / "offline").glob("*/*.json")) == [path.name]  # one cell either way
    strip = lambda text: {k: v for k, v in json.loads(text).items() if k != "code"}  # noqa: E731
    assert strip(path.read_text()) == strip(before)
    assert f"per-turn records: {turns_path(path)}" in stdout.replace("\n", "")


def test_records_hold_every_turn_with_its_stages_in_order(cells_with_records):
    _, path, _, _, _ = cells_with_records
    data = json.loads(path.read_text())
    rows = list(csv.DictReader(turns_path(path).open()))
    assert tuple(rows[0]) == FIELDS
    for s, m in data["systems"].items():
        mine = [r for r in rows if r["system"] == s]
        assert len(mine) == m["turns"]
        assert sum(int(r["hit"]) for r in mine) == m["tokens_cached"]
        ttft = [float(r["first_token"]) - float(r["arrive"]) for r in mine]
        assert np.isclose(np.mean(ttft), m["ttft_s"]["mean"], rtol=1e-12)
        jct = max(float(r["finished"]) for r in mine)
        assert np.isclose(jct, m["jct_s"], rtol=1e-12)
    for r in rows:
        t = [float(r[k]) for k in ("arrive", "placed", "ready", "started", "first_token", "joined", "finished")]
        assert t == sorted(t)


def test_cdf_percentiles_are_the_records_own(cells_with_records):
    out, path, _, _, opath = cells_with_records
    csv_path, png = cdf.main([path.stem.rsplit("-", 1)[1], "--results-dir", str(out)])
    assert png.stat().st_size > 0
    rows = list(csv.DictReader(csv_path.open()))
    recs = list(csv.DictReader(turns_path(path).open()))
    ttft = [float(r["first_token"]) - float(r["arrive"]) for r in recs if r["system"] == "dualpath"]
    p90 = next(
        float(r["value"]) for r in rows if (r["system"], r["metric"], r["percentile"]) == ("dualpath", "ttft_s", "90")
    )
    assert p90 == pytest.approx(np.percentile(ttft, 90), rel=1e-12)
    # online: only turns arriving after the warm-up, as the cell's summary counts them
    csv_path, _ = cdf.main([str(opath), "--results-dir", str(out)])
    n = {r["system"]: int(r["n"]) for r in csv.DictReader(csv_path.open()) if r["metric"] == "ttft_s"}
    orecs = list(csv.DictReader(turns_path(opath).open()))
    assert n["basic"] == sum(1 for r in orecs if r["system"] == "basic" and float(r["arrive"]) >= 10)
    assert n["basic"] < sum(1 for r in orecs if r["system"] == "basic")


def test_cdf_without_records_exits_2_saying_how_to_make_them(cells_with_records, tmp_path, capsys):
    _, path, _, _, _ = cells_with_records
    lone = tmp_path / path.name
    lone.write_text(path.read_text())
    with pytest.raises(SystemExit) as e:
        cdf.main([str(lone)])
    assert e.value.code == 2
    assert "no per-turn records; run the cell again with sim.record_turns=true" in capsys.readouterr().out.replace(
        "\n", ""
    )

"""python -m experiments.results compare A B: two stored cells side by side, every ratio B/A read
from the two files, and bad references refused with exit 2."""

import json

import pytest

from experiments import results
from experiments.figures import cells

TINY = ["model=ds27b", "cluster=1p1d", "+agents=8", "+len=32k", "workload.trajectories=8", "system=paper"]


@pytest.fixture(scope="module")
def two_cells(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    a = cells.offline([*TINY, "costmodel=v1"], results_dir=out)
    b = cells.offline([*TINY, "costmodel=v2"], results_dir=out)
    return out, a, b


def test_compare_prints_the_config_difference_and_each_ratio(two_cells, capsys):
    out, a, b = two_cells
    ida, idb = a["cell"]["id"], b["cell"]["id"]
    assert results.main(["compare", ida, idb, "--results-dir", str(out), "--metric", "jct_s"]) == 0
    text = capsys.readouterr().out
    assert "costmodel.version: - -> v2" in text  # a v1 cell's config has no costmodel section
    line = next(ln for ln in text.splitlines() if "jct_s" in ln)
    cols = [c.strip() for c in line.split("│") if c.strip()]
    for k, s in enumerate(("basic", "dualpath", "oracle")):
        x, y = a["systems"][s]["jct_s"], b["systems"][s]["jct_s"]
        assert cols[3 + 3 * k] == f"{y / x:.3f}"


def test_metric_prefix_selects_sub_keys(two_cells, capsys):
    out, a, b = two_cells
    results.main(["compare", a["_path"], b["_path"], "--results-dir", str(out), "--metric", "ttft_s"])
    rows = [ln.split("│")[1].strip() for ln in capsys.readouterr().out.splitlines() if ln.startswith("│")]
    assert rows and all(r.startswith("ttft_s.") for r in rows)


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda out, a: "0000beef", "0000beef: no stored cell under"),
        (lambda out, a: str(out / "missing.json"), "missing.json: no such results file"),
        (lambda out, a: _write(out / "junk.json", "{"), "junk.json: not readable as a results file"),
        (lambda out, a: _write(out / "other.json", json.dumps({"x": 1})), "other.json: not a results file"),
        (lambda out, a: _as_online(out, a), "is an offline cell and online.json an online cell"),
    ],
)
def test_a_bad_reference_exits_2_naming_it(two_cells, capsys, make, says):
    out, a, _ = two_cells
    assert results.main(["compare", a["_path"], make(out, a), "--results-dir", str(out)]) == 2
    assert says in capsys.readouterr().out.replace("\n", "")


def _write(path, text):
    path.write_text(text)
    return str(path)


def _as_online(out, a):
    data = json.loads(open(a["_path"]).read())
    data["cell"]["kind"] = "online"
    return _write(out / "online.json", json.dumps(data))

"""The offline experiment end to end: Hydra composition, results files, errors, W&B runs."""

import json
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dualpath_jax.config import ConfigError, ModelSpec, from_dict
from dualpath_jax.configure import build_config, parse_len
from dualpath_jax.experiment import run_offline
from dualpath_jax.paths import load_named
from dualpath_jax.results import as_text, cell_of, comparison_table, offline_payload, write_cell

from .helpers import ROOT, run_cli

SMALL = ["model=ds27b", "cluster=1p1d", "workload.trajectories=24", "tracking.wandb=false", "sim.progress=false"]


def composed(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_container(compose("offline", overrides=overrides), resolve=True)


def run_small(tmp_path, extra=()):
    cfg = build_config(composed(["+agents=24", "+len=32k", *SMALL, f"results_dir={tmp_path}", *extra]))
    anchor = from_dict(ModelSpec, load_named("model", cfg.hardware.calibration.anchor_model))
    return run_offline(cfg, anchor)


def write_result(res):
    return write_cell(cell_of(res.cfg, "offline"), offline_payload(res), as_text(comparison_table(res)))


def test_results_file_schema_and_ordering(tmp_path):
    res = run_small(tmp_path)
    path = write_result(res)
    assert path.parent == tmp_path / "offline" / "ds27b_1p1d"
    assert path.name.startswith("agents24_len32k_costv2-") and path.suffix == ".json"
    data = json.loads(path.read_text())
    assert set(data["systems"]) == {"basic", "dualpath", "oracle"}
    jct = {k: v["jct_s"] for k, v in data["systems"].items()}
    assert jct["oracle"] <= jct["dualpath"] <= jct["basic"]
    assert data["config"]["workload"]["agents"] == 24 and data["config"]["model"]["name"] == "ds27b"
    assert data["comparison"]["basic"]["speedup_vs_basic"] == 1.0


def test_same_seed_gives_identical_results_file(tmp_path):
    a = write_result(run_small(tmp_path)).read_bytes()
    b = write_result(run_small(tmp_path)).read_bytes()
    assert a == b
    c = offline_payload(run_small(tmp_path, ["workload.seed=1"]))
    assert c["systems"]["basic"]["jct_s"] != json.loads(a)["systems"]["basic"]["jct_s"]


@pytest.mark.parametrize(
    "value, mal, label",
    [("64k", 65536, "64k"), ("32K", 32768, "32k"), (40000, 40000, "40000"), ("40000", 40000, "40000")],
)
def test_parse_len(value, mal, label):
    assert parse_len(value) == (mal, label)


@pytest.mark.parametrize("value", ["banana", "-3k", True, "0"])
def test_bad_len_says_what_len_accepts(value):
    with pytest.raises(ConfigError, match="len takes 32k, 48k or 64k"):
        parse_len(value)


def test_missing_agents_and_bad_agents():
    with pytest.raises(ConfigError, match=r"missing 'agents'.*\+agents=1024"):
        build_config(composed(["+len=32k"]))
    with pytest.raises(ConfigError, match=r"\+agents=-4: agents takes a positive integer"):
        build_config(composed(["+agents=-4", "+len=32k"]))


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match=r"config.sim: unknown field\(s\) \['batch'\]"):
        build_config(composed(["+agents=4", "+len=32k", "+sim.batch=3"]))


def test_unknown_named_config_lists_known():
    with pytest.raises(ConfigError, match="model='nope' is unknown; known: ds27b, ds660b, dsv3, qwen32b"):
        load_named("model", "nope")


def _cli(args, cwd, env=None):
    return run_cli("experiments.offline", args, cwd, env)


def test_cli_unknown_model_and_bad_len(workdir):
    out = _cli(["+agents=4", "+len=32k", "model=nope"], workdir)
    assert out.returncode != 0 and "ds660b" in out.stderr and "qwen32b" in out.stderr
    out = _cli(["+agents=4", "+len=banana", "tracking.wandb=false"], workdir)
    assert out.returncode == 2 and "len takes 32k, 48k or 64k" in out.stdout


def test_cli_multirun_writes_results_and_finishes_each_wandb_run(workdir):
    out = _cli(
        ["--multirun", "+agents=4,8", "+len=32k", *SMALL[:-2], "tracking.wandb=true", f"results_dir={workdir / 'res'}"],
        workdir,
        {"WANDB_MODE": "offline"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    files = sorted(
        re.sub(r"-[0-9a-f]{8}\.", ".", p.name) for p in (workdir / "res" / "offline" / "ds27b_1p1d").iterdir()
    )
    assert files == [f"agents{n}_len32k_costv2.{ext}" for n in (4, 8) for ext in ("json", "txt")]
    runs = sorted((workdir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # one W&B run per job, not one shared run
    logged = []
    for run in runs:
        [log] = run.glob("*.wandb")
        raw = log.read_bytes()
        assert b"systems" in raw and b"table-file" in raw  # the per-system table
        logged += re.findall(rb"cell-(agents\d+_len32k_costv2-[0-9a-f]{8})", raw)  # the cell's artifact
    stems = sorted(p.stem for p in (workdir / "res" / "offline" / "ds27b_1p1d").glob("*.json"))
    assert sorted({x.decode() for x in logged}) == stems


@pytest.mark.xdist_group("testbed")  # after tests/serving: its shapes are in the run's XLA cache
def test_cli_backend_real_writes_the_results_schema_under_the_testbed_model(workdir):
    """`backend=real` runs the offline experiment on the testbed (tiny model, CPU devices) and
    writes the simulator's schema plus the measured fields, filed under the model that ran."""
    from dualpath_jax.workload.trace import write_trace
    from tests.serving.test_testbed import agents

    trace = workdir / "trace.jsonl"
    write_trace(trace, agents(n=3, turns=2))
    out = _cli(
        [
            "backend=real",
            "cluster=testbed_1p1d",
            "workload=jsonl",
            f"workload.path={trace}",
            "+agents=3",
            "+len=32k",
            "+testbed.max_context=256",
            "tracking.wandb=false",
            f"results_dir={workdir / 'res'}",
        ],
        workdir,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    [path] = (workdir / "res" / "offline" / "tiny_testbed_1p1d").glob("agents3_len32k_real_jsonl-*.json")
    data = json.loads(path.read_text())
    assert set(data["systems"]) == {"basic", "dualpath", "oracle"}
    assert data["calibration"]["attn_impl"] == "xla"  # the kernel the model was built with, on CPU
    for name, m in data["systems"].items():
        assert m["turns"] == 6 and m["jct_s"] > 0, name
        assert set(m["gpu_busy"]) == {"pe0", "de1"} and set(m["stages_s"]) >= {"read", "prefill", "decode"}
        assert (m["link_bytes"].get("snic_read[0]", 0) > 0) == (name != "oracle"), name
    assert data["comparison"]["basic"]["speedup_vs_basic"] == 1.0

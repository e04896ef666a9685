"""costmodel=profiled: the profiler writes a table the simulator reads; the cost model returns the
table's times at its grid points and interpolates between them; a simulation on a testbed-sized
cluster prefills each turn in the table's time; a bad table is an error naming file and field."""

import copy
import json
import warnings

import pytest

from dualpath_jax.config import ConfigError
from dualpath_jax.configure import anchor_model, build_config
from dualpath_jax.costmodel.deploy import deployed
from dualpath_jax.costmodel.profile_table import FORMAT, FORMAT_VERSION, OutsideTable, TableError, load_table
from dualpath_jax.experiment import simulate
from dualpath_jax.results.identity import cell_of
from dualpath_jax.workload import Trajectory, Turn
from dualpath_jax.workload.trace import write_trace

from .helpers import project_workdir, run_cli
from .test_config_validation import composed

# The tiny Flax config as the simulator's ModelSpec (serving.simcheck.model_spec(get_config("tiny")),
# written out so that these tests need no JAX; test_profiler_writes_a_table_the_simulator_reads
# checks it against the mapping).
TINY_SPEC = {
    "name": "tiny", "layers": 3, "d_model": 64, "heads": 4, "vocab": 256, "attention": "mla", "q_lora": 32,
    "kv_lora": 32, "qk_nope": 16, "qk_rope": 8, "v_head": 16, "dsa_topk": 0, "indexer_heads": 0, "indexer_dim": 0,
    "kv_heads": 0, "head_dim": 0, "dense_layers": 1, "dense_ffn": 128, "routed_experts": 16, "top_k": 4,
    "shared_experts": 1, "expert_ffn": 32, "weight_bytes": 4, "compute_dtype": "bf16", "kv_format": "fp32",
    "kv_bytes_per_token_layer": {"fp32": {"main": 160, "indexer": 0}}, "expert_shard": "node", "dense_ffn_tp": 1,
    "paper_cluster": "", "assumed": [],
}  # fmt: skip
CACHED, NEW, BATCH = [0, 64], [16, 32], [1, 2]
DEC_BATCH, DEC_CONTEXT = [1, 2], [16, 256]


def prefill_s(c, n, b):  # made-up times, growing in every dimension
    return 1e-3 * (1 + c / 32 + n / 8) * (1 + 0.6 * (b - 1))


def decode_s(b, ctx):
    return 1e-3 * (2 + b * ctx / 64)


def table_dict():
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": "tiny",
        "sim_model": TINY_SPEC,
        "device_kind": "test",
        "device_memory_gb": 40.0,
        "jax": "test",
        "grid": {
            "prefill": {"cached": CACHED, "new": NEW, "batch": BATCH},
            "decode": {"batch": DEC_BATCH, "context": DEC_CONTEXT},
        },
        "prefill_s": [[[prefill_s(c, n, b) for b in BATCH] for n in NEW] for c in CACHED],
        "decode_s": [[decode_s(b, x) for x in DEC_CONTEXT] for b in DEC_BATCH],
    }


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(table_dict()))
    return path


def test_table_values_at_grid_points_and_linear_monotone_between(table):
    t = load_table(table)
    for c in CACHED:
        for n in NEW:
            for b in BATCH:
                assert t.prefill_time(c, n, b) == pytest.approx(prefill_s(c, n, b), rel=1e-12)
    for b in DEC_BATCH:
        for x in DEC_CONTEXT:
            assert t.decode_time(b, x) == pytest.approx(decode_s(b, x), rel=1e-12)
    # halfway between two grid points: their mean (linear per dimension)
    assert t.prefill_time(32, 16, 1) == pytest.approx((prefill_s(0, 16, 1) + prefill_s(64, 16, 1)) / 2)
    assert t.decode_time(1, 136) == pytest.approx((decode_s(1, 16) + decode_s(1, 256)) / 2)
    sweep = [t.prefill_time(c, 24, 1.5) for c in range(0, 65, 4)]
    assert all(a < b for a, b in zip(sweep, sweep[1:]))
    sweep = [t.decode_time(2, x) for x in range(16, 257, 16)]
    assert all(a < b for a, b in zip(sweep, sweep[1:]))


def test_outside_the_grid_errors_above_and_clamps_below(table):
    t = load_table(table)
    with pytest.raises(OutsideTable, match=r"grid\.prefill\.cached: 65 is above .* largest 64"):
        t.prefill_time(65, 16)
    with pytest.raises(OutsideTable, match=r"grid\.decode\.context"):
        t.check_range(64, 32, 257)
    with pytest.warns(UserWarning, match=r"grid\.prefill\.new: 8 is below"):
        assert t.prefill_time(0, 8) == t.prefill_time(0, 16)
    with pytest.warns(UserWarning, match=r"grid\.decode\.batch: 6 is above"):  # per request as at batch 2
        assert t.decode_time(6, 16) == pytest.approx(3 * decode_s(2, 16))


def trace_of_grid_turns(path):
    """Turns whose (cached, new) are grid points: 0+32, then 64+16; one agent at a time per PE."""
    turns = (Turn(input=32, cached=0, output=32), Turn(input=80, cached=64, output=8))
    write_trace(path, [Trajectory("a0", turns)])


def profiled_config(table, trace, extra=(), agents=1):
    raw = composed(
        "offline",
        [
            f"+agents={agents}", "cluster=testbed_1p1d", "costmodel=profiled", f"costmodel.table={table}",
            "workload=jsonl", f"workload.path={trace}", "sim.record_turns=true", "tracking.wandb=false",
            "sim.progress=false", *extra,
        ],
    )  # fmt: skip
    return build_config(raw)


def test_simulation_on_a_testbed_cluster_prefills_each_turn_in_the_tables_time(table, tmp_path):
    trace_of_grid_turns(tmp_path / "t.jsonl")
    cfg = profiled_config(table, tmp_path / "t.jsonl")
    assert cfg.model.name == "tiny" and cfg.hardware.gpu.hbm_gb == 40.0  # the table's model and device
    res = simulate(cfg, anchor_model(cfg))
    oracle = {(r[2]): r for r in res.turns["oracle"]}  # free I/O: the step is the compute alone
    started, first = 15, 16  # results/turns.py FIELDS
    assert oracle[0][first] - oracle[0][started] == pytest.approx(prefill_s(0, 32, 1), rel=1e-9)
    assert oracle[1][first] - oracle[1][started] == pytest.approx(prefill_s(64, 16, 1), rel=1e-9)
    for name in ("basic", "dualpath"):  # their KV crosses links too: never faster than the table
        for r in res.turns[name]:
            assert r[first] - r[started] >= prefill_s(r[4], r[5], 1) * (1 - 1e-9), name
    _, cost = deployed(cfg, cfg.systems[0], res.efficiency)
    assert cost.decode_ep_floor_s == 0 and not cost.decode_lockstep  # one GPU holds every expert
    assert cost.decode_step_time(2, 0, 2 * 100) == pytest.approx(load_table(table).decode_time(2, 100))
    # a turn alone (quota packing's predictor, the chain floor) is the table's batch of 1
    assert cost.prefill_split(64, 16) == (pytest.approx(prefill_s(64, 16, 1)), 0.0)


@pytest.mark.filterwarnings("ignore:.*grid.decode.batch")  # 4 decoding at once: above the table's 2
@pytest.mark.parametrize("batching", ["quota", "tokens"])
def test_a_prefill_batch_is_the_tables_batch_and_no_larger_than_its_largest(table, tmp_path, batching):
    """Four agents arrive at once with one shape: the first starts alone; the three queued behind it
    go as the table's largest batch (2), in the table's time for 2, then the last alone."""
    write_trace(tmp_path / "t.jsonl", [Trajectory(f"a{i}", (Turn(input=32, cached=0, output=4),)) for i in range(4)])
    cfg = profiled_config(table, tmp_path / "t.jsonl", [f"system.oracle.batching={batching}"], agents=4)
    res = simulate(cfg, anchor_model(cfg))
    took = sorted(r[16] - r[15] for r in res.turns["oracle"])
    one, two = prefill_s(0, 32, 1), prefill_s(0, 32, 2)
    assert took == [pytest.approx(one), pytest.approx(one), pytest.approx(two), pytest.approx(two)]


def test_the_table_digest_is_in_the_cell_identity(table, tmp_path):
    trace_of_grid_turns(tmp_path / "t.jsonl")
    a = cell_of(profiled_config(table, tmp_path / "t.jsonl"), "offline")
    other = table_dict()
    other["prefill_s"][0][0][0] *= 2
    table.write_text(json.dumps(other))
    b = cell_of(profiled_config(table, tmp_path / "t.jsonl"), "offline")
    assert a.identity["inputs"]["costmodel_table_sha256"] != b.identity["inputs"]["costmodel_table_sha256"]
    assert a.path != b.path and a.path.parent.name == "tiny_testbed_1p1d"


def _broken(data, key, value):
    data = copy.deepcopy(data)
    node, *path = key.split(".")
    target = data
    for part in [node, *path][:-1]:
        target = target[part]
    target[[node, *path][-1]] = value
    return data


BAD = [
    ("format", "nope", "format: expected"),
    ("grid.prefill.cached", [64, 0], "grid.prefill.cached: must be strictly increasing"),
    ("grid.decode.batch", [], "grid.decode.batch: expected a non-empty list"),
    ("prefill_s", [[[1.0]]], "prefill_s: expected a list of 2 entries"),
    ("decode_s", [[1.0, -1.0], [1.0, 1.0]], "decode_s[0][1]: expected a positive finite number"),
    ("sim_model.layers", 0, "sim_model.layers: must be >= 1"),
]


@pytest.mark.parametrize("key, value, message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_table_is_an_error_naming_the_file_and_field(table, tmp_path, key, value, message):
    table.write_text(json.dumps(_broken(table_dict(), key, value)))
    trace_of_grid_turns(tmp_path / "t.jsonl")
    with pytest.raises(ConfigError) as e:
        profiled_config(table, tmp_path / "t.jsonl")
    assert str(e.value).startswith(f"config.costmodel.table: {table}: ") and message in str(e.value)


def test_refused_setups_name_their_field(table, tmp_path):
    trace_of_grid_turns(tmp_path / "t.jsonl")
    with pytest.raises(ConfigError, match=r"config\.cluster\.gpus_per_node: costmodel=profiled"):
        profiled_config(table, tmp_path / "t.jsonl", ["cluster=1p1d"])
    with pytest.raises(ConfigError, match=r"config\.costmodel\.table: only costmodel=profiled"):
        build_config(composed("offline", ["+agents=1", "+len=32k", "+costmodel.table=x.json"]))
    long = tmp_path / "long.jsonl"
    write_trace(long, [Trajectory("a0", (Turn(input=100, cached=80, output=4),))])
    cfg = profiled_config(table, long)
    with pytest.raises(ConfigError, match=r"grid\.prefill\.cached: the workload needs 80 tokens"):
        simulate(cfg, anchor_model(cfg))


def test_cli_with_a_garbled_table_exits_2_naming_file_and_line(tmp_path):
    (tmp_path / "w").mkdir()
    work = project_workdir(tmp_path / "w")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "dualpath-jax profiled costs",\n "grid": }')
    out = run_cli(
        "experiments.offline",
        [
            "+agents=1",
            "+len=32k",
            "cluster=testbed_1p1d",
            "costmodel=profiled",
            f"costmodel.table={bad}",
            "tracking.wandb=false",
        ],
        work,
    )
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 2, text[-2000:]
    assert f"config.costmodel.table: {bad}: line 2: not JSON" in text and "Traceback" not in text


def test_profiler_writes_a_table_the_simulator_reads(tmp_path, capsys):
    """benchmarks/profile_costs.py on the tiny model on CPU: one prefill and one decode
    shape (each new shape compiles: 3-7 s apiece on the loaded 2-core VM; the interpolation over
    larger grids is tested above on a written table)."""
    from benchmarks.profile_costs import main
    from dualpath_jax.config import to_dict
    from dualpath_jax.model import get_config
    from dualpath_jax.serving.simcheck import model_spec

    assert to_dict(model_spec(get_config("tiny"))) == TINY_SPEC  # the spec the other tests use
    args = ["--model", "tiny", "--out", str(tmp_path), "--name", "t", "--repeats", "2"]
    grid = ["--prefill-cached", "0", "--prefill-new", "8", "--prefill-batch", "1"]
    grid += ["--decode-batch", "1", "--decode-context", "32"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args, *grid]) == 0
    t = load_table(tmp_path / "t.json")
    assert t.model == "tiny" and t.sim_model == TINY_SPEC
    assert t.prefill_grid == {"cached": (0,), "new": (8,), "batch": (1,)}
    assert t.decode_grid == {"batch": (1,), "context": (32,)}
    assert t.header["platform"] == "cpu" and t.header["statistic"] == "median" and t.header["repeats"] == 2
    assert set(t.header["units"]) == {"time", "tokens"} and "git_commit" in t.header
    assert all(len(c["all_s"]) == 2 for c in t.header["cells"]["prefill"] + t.header["cells"]["decode"])
    import statistics

    assert t.prefill_time(0, 8) == statistics.median(t.header["cells"]["prefill"][0]["all_s"])
    assert t.decode_time(1, 32) == statistics.median(t.header["cells"]["decode"][0]["all_s"])
    with pytest.raises(SystemExit) as refused:  # never a silent overwrite
        main([*args, *grid])
    assert refused.value.code == 2 and "exists; pass --force" in capsys.readouterr().err
    with pytest.raises(TableError):
        load_table(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "script,flag,value",
    [
        ("profile_costs", "--prefill-new", "4096,512"),
        ("profile_costs", "--decode-context", "x"),
        ("bench_dsa", "--new", "0"),
    ],
)
def test_a_bad_grid_list_exits_2_naming_its_flag(script, flag, value, capsys):
    import importlib

    main = importlib.import_module(f"benchmarks.{script}").main
    with pytest.raises(SystemExit) as refused:
        main(["--tiny" if script == "bench_dsa" else "--model=tiny", flag, value])
    assert refused.value.code == 2 and f"error: {flag}: expected" in capsys.readouterr().err

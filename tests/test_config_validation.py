"""Config validation: every bad input a user can give is a ConfigError naming the field as written
on the command line, the entry points exit 2 with it (no traceback), every shipped config still
builds, and build_config raises nothing but ConfigError for any input (hypothesis)."""

import copy
import dataclasses
import functools
import math
import typing

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dualpath_jax import config as C
from dualpath_jax.config import ConfigError, ExperimentConfig, ModelSpec, TraceStats, from_dict, to_dict
from dualpath_jax.configure import MAX_LEN, MIN_LEN, build_config
from dualpath_jax.experiment import BACKENDS, run_offline
from dualpath_jax.paths import load_named
from dualpath_jax.workload.synthetic import generate, mal_problem, supported_mal_range
from experiments.sweep import refuse_group_lists

from .helpers import ROOT, project_workdir, run_cli

QUIET = ["tracking.wandb=false", "sim.progress=false"]
SMALL = ["model=ds27b", "cluster=1p1d", *QUIET]
# Where a ConfigError message may start: a field (config.<section>.<field>) or a command-line key.
PREFIXES = ("config.", "config:", "+len=", "+agents=", "+aps", "+capacity", "missing '")
SUPPORTED_MAL = (18139, 165527)  # the synthetic generator with configs/workload/synthetic.yaml


def _merge(base, overrides):
    """`overrides` after those of `base` whose key they do not set (Hydra refuses a key twice)."""
    keys = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    return [o for o in base if o.lstrip("+~").split("=", 1)[0] not in keys] + list(overrides)


def composed_many(jobs):
    """[(config name, overrides)] -> composed configs as plain containers (one Hydra init)."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return [OmegaConf.to_container(compose(name, overrides=list(ov)), resolve=True) for name, ov in jobs]


def composed(name, overrides):
    return composed_many([(name, overrides)])[0]


def _job(overrides=(), online=False):
    # a trace workload brings its own lengths (+len is refused there)
    length = [] if any(o in ("workload=jsonl", "workload=mooncake") for o in overrides) else ["+len=32k"]
    if not online:
        return "offline", _merge(["+agents=4", *length, *SMALL], overrides)
    base = [*length, *SMALL]
    if not any(o.startswith(("+aps", "+capacity")) for o in overrides):
        base.append("+aps=0.5")
    return "online", _merge(base, overrides)


def offline_raw(overrides=()):
    return composed(*_job(overrides))


def online_raw(overrides=()):
    return composed(*_job(overrides, online=True))


# ---- bad inputs: the message names the field -----------------------------------------------------
# (overrides, online?, how the message starts, another part it holds)
BAD = [
    (["system.dualpath.batching=greedy"], False, "config.system.dualpath.batching: ", "tokens | quota"),
    (
        ["system.basic.scheduler=nope"],
        False,
        "config.system.basic.scheduler: ",
        "least_loaded | round_robin | dualpath",
    ),
    (["model.attention=x"], False, "config.model.attention: ", "mla | mla_dsa | gqa"),
    (["model.kv_format=x"], False, "config.model.kv_format: ", "bf16_indexer | fp8 | fp8_indexer"),
    (["model.compute_dtype=fp16"], False, "config.model.compute_dtype: ", "fp8 | bf16"),
    (["model.expert_shard=rack"], False, "config.model.expert_shard: ", "role | node"),
    (["model.layers=-61"], False, "config.model.layers: ", "must be >= 1, got -61"),
    (["model.d_model=0"], False, "config.model.d_model: ", ">= 1"),
    (["model.top_k=100"], False, "config.model.top_k: ", "[1, routed_experts=72]"),
    (["model.dense_layers=31"], False, "config.model.dense_layers: ", "<= layers=30"),
    (["model.routed_experts=0"], False, "config.model.top_k: ", "without routed experts"),
    (["model=qwen32b", "cluster=1p2d", "model.kv_heads=7"], False, "config.model.kv_heads: ", "heads=40"),
    (["model.d_model=99999999999999999999"], False, "config.model.d_model: ", "2**53"),
    (["model.d_model=1.5"], False, "config.model.d_model: ", "expected an integer"),
    (["model.assumed=[layerz]"], False, "config.model.assumed[0]: ", "not a field"),
    (["cluster.prefill_nodes=0"], False, "config.cluster.prefill_nodes: ", "must be >= 1, got 0"),
    (["cluster.gpus_per_node=0"], False, "config.cluster.gpus_per_node: ", ">= 1"),
    (["cluster.snic_gbps=0"], False, "config.cluster.snic_gbps: ", "must be > 0"),
    (["cluster.cnic_gbps=-1"], False, "config.cluster.cnic_gbps: ", "must be > 0"),
    (["cluster.snic_gbps=inf"], False, "config.cluster.snic_gbps: ", "finite"),
    (
        ["cluster.activation_reserve_gb=100"],
        False,
        "config.cluster.activation_reserve_gb: ",
        "< config.hardware.gpu.hbm_gb=80",
    ),
    (["cluster.snic_gbps=3200"], False, "config.cluster.snic_gbps: ", "divides by zero"),
    (["model=ds660b", "cluster=1p1d"], False, "config.cluster: ", "leave no HBM for KV"),
    (
        ["model=qwen32b", "cluster=testbed_1p1d", "system=all"],
        False,
        "config.system.sglang_mc.tp_dense: ",
        "does not divide",
    ),
    (["cluster=paper", "+cluster.prefill_nodes=2"], False, "config.cluster: ", "cluster=paper"),
    (["sim.prefill_batch_tokens=0"], False, "config.sim.prefill_batch_tokens: ", "must be >= 1, got 0"),
    (["sim.quota_ms=0"], False, "config.sim.quota_ms: ", "> 0"),
    (["sim.min_chunk_tokens=0"], False, "config.sim.min_chunk_tokens: ", ">= 1"),
    (["sim.alpha_s=nan"], False, "config.sim.alpha_s: ", "finite number, got nan"),
    (["sim.beta_s=-inf"], False, "config.sim.beta_s: ", "finite"),
    (["sim.qos_weight=1.5"], False, "config.sim.qos_weight: ", "(0, 1]"),
    (["sim.qos_weight=0"], False, "config.sim.qos_weight: ", "(0, 1]"),
    (["workload.trajectories=0"], False, "config.workload.trajectories: ", ">= 1"),
    (["workload.seed=-1"], False, "config.workload.seed: ", "[0, 4294967295]"),
    (["workload.append_scale=0"], False, "config.workload.append_scale: ", "> 0"),
    (["workload.turn_size_shape=0.01"], False, "config.workload.turn_size_shape: ", ">= 0.1"),
    (["workload.initial_prompt_sigma=3"], False, "config.workload.initial_prompt_sigma: ", "[0, 1]"),
    (["workload.source=csv"], False, "config.workload.source: ", "synthetic | jsonl | mooncake"),
    (["workload.table=[]"], False, "config.workload.table: ", "trace statistics"),
    (["workload=jsonl"], False, "config.workload.path: ", "workload.path=<file>"),
    (["workload=jsonl", "workload.path=/no/such.jsonl"], False, "config.workload.path: ", "no such file"),
    (["workload=mooncake", "+len=64k"], False, "+len=64k: workload=mooncake replays", "drop it"),
    (["+len=8k"], False, "+len=8k: ", "from 18139 to 165527 tokens"),
    (["+len=17k"], False, "+len=17k: ", "workload=jsonl"),
    (["+len=162k"], False, "+len=162k: ", "+len=18k to +len=161k"),
    (["+len=1024k"], False, "+len=1024k: ", "from 18139 to 165527 tokens"),
    (["+len=2048k"], False, "+len='2048k' is out of range", "1k..1024k"),
    (["+len=banana"], False, "+len='banana': ", "len takes"),
    (["+agents=0"], False, "+agents=0: ", "positive integer"),
    (["seed=3"], False, "config.seed: ", "workload.seed=3"),
    (["+online.aps=3"], False, "config.online: ", "experiments.online"),
    (["+aps=3"], False, "+aps=3: ", "experiments.online"),
    (["+testbed.max_context=2048"], False, "config.testbed: ", "backend=real"),
    (["+testbed.force_read_side=x"], False, "config.testbed.force_read_side: ", '"" | pe | de'),
    (
        ["backend=real", "cluster=testbed_1p1d", "+testbed.model=nope"],
        False,
        "config.testbed.model: ",
        "tiny | tiny_dsa | ds16b | dsv3 | dsv3_e32 | dsv32 | dsv32_e32",
    ),
    (
        ["backend=real", "cluster=testbed_1p1d", "+testbed.moe_backend=x"],
        False,
        "config.testbed.moe_backend: ",
        "sort | ragged | dense",
    ),
    (["+system.basic.split_read=true"], False, "config.system.basic.split_read: ", "dual_path=true"),
    (["+system.basic.name=foo"], False, "config.system.basic.name: ", "key"),
    (["~system.basic"], False, "config.system: ", "'basic'"),
    (["tracking.mode=foo"], False, "config.tracking.mode: ", "online | offline | disabled | shared"),
    (["tracking.wandb=maybe"], False, "config.tracking.wandb: ", "true/false"),
    (["backend=gpu"], False, "config.backend: ", "sim | real"),
    (["rerun=maybe"], False, "config.rerun: ", "true/false"),
    (["hardware.calibration.anchor_model=nope"], False, "config.hardware.calibration.anchor_model: ", "known: ds27b"),
    (["hardware.calibration.hbm_efficiency=0.01"], False, "config.hardware.calibration: ", "memory time"),
    (["hardware.calibration.prefill_hit_ratio=1"], False, "config.hardware.calibration.prefill_hit_ratio: ", "[0, 1)"),
    (["+foo=1"], False, "config: unknown field(s) ['foo']", "known"),
    (["costmodel=v1", "+costmodel.storage_efficiency=0.5"], False, "config.costmodel.storage_efficiency: ", "v2"),
    (
        ["backend=real", "cluster=testbed_1p1d", "costmodel=v2", "costmodel.storage_efficiency=0.5"],
        False,
        "config.costmodel: ",
        "the real testbed measures its times",
    ),
    (["costmodel=v2", "costmodel.storage_efficiency=0"], False, "config.costmodel.storage_efficiency: ", "(0, 1]"),
    (["costmodel=v2", "costmodel.ep_latency_scale=3"], False, "config.hardware.calibration: ", "EP all-to-all"),
    (["online.sample_s=0"], True, "config.online.sample_s: ", "must be > 0"),
    (["online.warmup_s=2000"], True, "config.online.warmup_s: ", "< config.online.duration_s=1800"),
    (["online.duration_s=0"], True, "config.online.duration_s: ", "> 0"),
    (["online.slo.percentile=0"], True, "config.online.slo.percentile: ", "(0, 100]"),
    (["online.slo.percentile=101"], True, "config.online.slo.percentile: ", "(0, 100]"),
    (["online.slo.tpot_s=0"], True, "config.online.slo.tpot_s: ", "> 0"),
    (["online.capacity_max_probes=0"], True, "config.online.capacity_max_probes: ", ">= 1"),
    (["online.capacity_rel_tol=nan"], True, "config.online.capacity_rel_tol: ", "finite"),
    (["online.think.kind=gamma"], True, "config.online.think.kind: ", "none | fixed | exponential"),
    (["online.think.kind=fixed"], True, "config.online.think.mean_s: ", "> 0"),
    (["online.think.mean_s=30"], True, "config.online.think.mean_s: ", "kind=none"),
    (["online.think.kind=fixed", "online.think.mean_s=-1"], True, "config.online.think.mean_s: ", ">= 0"),
    (["online.arrivals=replay"], True, "config.online.arrivals: ", "poisson | trace"),
    (["online.arrivals=trace"], True, "config.online.arrivals: ", "workload=synthetic"),
    (["seed=3"], True, "config.seed: ", "exponential"),
    (["+aps=0"], True, "+aps=0: ", "positive number"),
    (["+aps=nan"], True, "+aps=nan: ", "positive number"),
    (["+capacity=yes"], True, "+capacity='yes': ", "true or false"),
    (["+capacity=true", "+aps=1"], True, "+aps=1: ", "not both"),
    (
        ["+capacity=true", "workload=mooncake", "online.arrivals=trace"],
        True,
        "+capacity=true: ",
        "online.arrivals=trace",
    ),
    (["workload=mooncake", "online.arrivals=trace", "+aps=0.5"], True, "+aps=0.5: ", "would change nothing; drop it"),
    (["+agents=3"], True, "+agents=3: ", "drop +agents"),
    (["+online.aps=1"], True, "config.online.aps: ", "+aps"),
    (["backend=real"], True, "config.backend='real': ", "simulator only"),
]


@functools.cache
def _bad_raws():
    return composed_many([_job(ov, online) for ov, online, _, _ in BAD])


@pytest.mark.parametrize(
    "overrides, online, start, part", BAD, ids=[" ".join(b[0]) + (" (online)" if b[1] else "") for b in BAD]
)
def test_bad_input_names_the_field(overrides, online, start, part):
    raw = _bad_raws()[BAD.index((overrides, online, start, part))]
    with pytest.raises(ConfigError) as e:
        build_config(raw, online=online)
    msg = str(e.value)
    assert msg.startswith(start), msg
    assert part in msg, msg


def test_good_inputs_next_to_the_bad_ones_build():
    """The other side of the boundaries above."""
    build_config(offline_raw(["sim.qos_weight=1"]))
    for ov in (
        ["online.think.kind=exponential", "online.think.mean_s=30", "seed=3"],
        ["online.warmup_s=0"],
        ["online.slo.percentile=100"],
        ["online.think.kind=fixed", "online.think.mean_s=0.5"],
    ):
        build_config(online_raw(ov), online=True)
    build_config(offline_raw(["backend=real", "cluster=testbed_1p1d", "+testbed.seed=5"]))
    build_config(offline_raw(["workload.seed=4294967295", "model.d_model=2560.0"]))


def test_the_testbed_needs_no_simulator_model():
    cfg = build_config(offline_raw(["backend=real", "cluster=testbed_1p1d"]))
    assert cfg.model is None and cfg.testbed.model == "tiny"
    assert cfg.costmodel.version == "v1"
    cfg = build_config(offline_raw(["backend=real", "cluster=testbed_1p1d", "costmodel=v2"]))
    assert cfg.costmodel.version == "v1"  # v2 at its defaults is dropped: nothing to time
    raw = to_dict(cfg)
    from_dict(ExperimentConfig, raw, "config")  # a testbed config round-trips without one
    with pytest.raises(ConfigError, match=r"^config\.model: the simulator needs a model"):
        from_dict(ExperimentConfig, dict(raw, backend="sim", testbed={}), "config")


# ---- +len: exactly what the synthetic generator supports -----------------------------------------
def _table():
    return tuple(TraceStats(**r) for r in load_named("workload", "synthetic")["table"])


def test_supported_len_range_is_the_generators():
    table = _table()
    lo, hi = supported_mal_range(table, MIN_LEN, MAX_LEN)
    assert (lo, hi) == SUPPORTED_MAL
    for mal in (lo, hi):
        assert mal_problem(table, mal) is None
        build_config(offline_raw([f"+len={mal}"]))
    for mal in (lo - 1, hi + 1):
        assert mal_problem(table, mal) is not None
        with pytest.raises(ConfigError, match=rf"^\+len={mal}: workload=synthetic supports MALs from {lo} to "):
            build_config(offline_raw([f"+len={mal}"]))


@pytest.mark.parametrize("mal", SUPPORTED_MAL)
def test_generator_makes_valid_trajectories_at_the_boundaries(mal):
    cfg = build_config(offline_raw([f"+len={mal}", "workload.trajectories=500"]))
    trajs = generate(cfg.workload)
    assert len(trajs) == 500
    for t in trajs:
        assert t.final_length <= mal
        for u in t.turns:
            assert u.new >= 1 and u.output >= 1 and 0 <= u.cached < u.input, (t.id, u)


@pytest.mark.parametrize("mal", SUPPORTED_MAL)
def test_simulator_runs_at_the_boundaries(mal):
    cfg = build_config(offline_raw([f"+len={mal}", "+agents=8", "workload.trajectories=8"]))
    anchor = from_dict(ModelSpec, load_named("model", cfg.hardware.calibration.anchor_model))
    res = run_offline(cfg, anchor)
    assert set(res.systems) == {"basic", "dualpath", "oracle"}
    assert all(m.jct_s > 0 for m in res.systems.values())


def test_a_trace_workload_refuses_len_it_would_not_shape(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"id": "a0", "turns": [{"input": 40, "cached": 0, "output": 5}]}\n')
    for workload in (["workload=jsonl", f"workload.path={trace}"], ["workload=mooncake"]):
        with pytest.raises(ConfigError, match=r"^\+len=32k: workload=(jsonl|mooncake) replays .* drop it"):
            build_config(offline_raw([*workload, "+len=32k"]))


# ---- the schema's string choices are the code's ---------------------------------------------------
def test_literals_match_the_code():
    from dualpath_jax.model.config import MOE_BACKENDS, known_configs
    from dualpath_jax.scheduling import SCHEDULERS
    from dualpath_jax.workload.agents import SOURCES

    assert set(typing.get_args(C.Scheduler)) == set(SCHEDULERS)
    assert set(typing.get_args(C.Source)) == set(SOURCES)
    assert set(typing.get_args(C.TestbedModel)) == set(known_configs())
    assert set(typing.get_args(C.MoeBackend)) == {"", *MOE_BACKENDS}
    assert tuple(BACKENDS) == typing.get_args(C.Backend) == ("sim", "real")


# ---- every shipped config still builds ----------------------------------------------------------
def _names(group):
    return sorted(p.stem for p in (ROOT / "configs" / group).glob("*.yaml"))


def test_each_shipped_file_builds_through_hydra(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"id": "a0", "turns": [{"input": 40, "cached": 0, "output": 5}]}\n')
    base = ["+agents=4", "+len=64k", *QUIET]
    jobs = [base]  # the defaults: ds660b on its paper cluster
    jobs += [[*base, f"model={m}"] for m in _names("model")]
    jobs += [
        [*base, "model=ds27b", f"cluster={c}", *(["backend=real"] if c.startswith("testbed") else [])]
        for c in _names("cluster")
    ]
    jobs += [[*base, f"system={s}"] for s in _names("system")]
    traced = [o for o in base if not o.startswith("+len")]  # a trace brings its own lengths
    jobs += [
        [*traced, "workload=mooncake"],
        [*traced, "workload=jsonl", f"workload.path={trace}"],
        [*base, "backend=real", "cluster=testbed_1p1d"],
    ]
    online = [
        ["+aps=0.5", "+len=64k", *QUIET],
        ["+capacity=true", "+len=64k", *QUIET],
        ["workload=mooncake", "online.arrivals=trace", *QUIET],  # trace arrivals: no +aps, no +len
    ]
    raws = composed_many([("offline", j) for j in jobs] + [("online", j) for j in online])
    for k, raw in enumerate(raws):
        build_config(raw, online=k >= len(jobs))


def test_every_model_cluster_system_combination_builds_or_does_not_fit():
    """Group choices as Hydra makes them (a group's file replaces its section); a combination is
    refused only where the simulator itself would stop when it starts: no HBM left for KV, tensor
    parallelism that does not divide a node, or a calibration that fails on one GPU per node (the
    testbed clusters, which serve backend=real)."""
    bases = dict(
        zip(
            (False, True),
            composed_many(
                [("offline", ["+agents=4", "+len=64k", *QUIET]), ("online", ["+aps=0.5", "+len=64k", *QUIET])]
            ),
        )
    )
    built = refused = 0
    refusals = set()
    for online, base in bases.items():
        for m in _names("model"):
            for c in _names("cluster"):
                for s in _names("system"):
                    raw = copy.deepcopy(base)
                    raw["model"], raw["cluster"] = load_named("model", m), load_named("cluster", c)
                    systems = load_named("system", s)
                    raw["system"], raw["system_set"] = systems["system"], systems["system_set"]
                    try:
                        build_config(raw, online=online)
                        built += 1
                    except ConfigError as e:
                        msg = str(e)
                        assert (
                            (msg.startswith("config.cluster: ") and "leave no HBM for KV" in msg)
                            or msg.startswith("config.system.sglang_mc.tp_dense: 8 does not divide")
                            or (
                                msg.startswith("config.hardware.calibration: ")
                                and msg.endswith("config.cluster.gpus_per_node=1)")
                            )
                        ), (m, c, s, msg)
                        refusals.add(msg.split(":")[0])
                        refused += 1
    assert built > refused > 0
    assert len(refusals) == 3, refusals


# ---- the entry points: exit status 2, the message, no traceback -----------------------------------
@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
    return project_workdir(tmp_path_factory.mktemp("cli"))


CLI = [
    (
        "experiments.offline",
        ["+agents=4", "+len=32k", "system.dualpath.batching=greedy"],
        "config.system.dualpath.batching: must be one of tokens | quota, got 'greedy'",
    ),
    ("experiments.offline", ["+agents=4", "+len=32k", "model.layers=-61"], "config.model.layers: must be >= 1"),
    (
        "experiments.offline",
        ["+agents=4", "+len=32k", "model=ds27b", "cluster=1p1d", "sim.alpha_s=nan"],
        "config.sim.alpha_s: must be a finite number, got nan",
    ),
    ("experiments.offline", ["+agents=4", "+len=8k"], "+len=8k: workload=synthetic supports MALs"),
    ("experiments.offline", ["+agents=4", "+len=32k", "seed=3"], "config.seed: the offline experiment"),
    ("experiments.online", ["+aps=0.5", "+len=32k", "online.sample_s=0"], "config.online.sample_s: must be > 0"),
]


@pytest.mark.parametrize("module, args, field", CLI, ids=[f"{m.split('.')[1]} {a[-1]}" for m, a, _ in CLI])
def test_cli_exits_2_with_the_message_and_no_traceback(cli_dir, module, args, field):
    out = run_cli(module, [*args, "tracking.wandb=false"], cli_dir)
    text = " ".join((out.stdout + out.stderr).split())  # the console may wrap long lines
    assert out.returncode == 2, text[-2000:]
    assert field in text, text[-2000:]
    assert "Traceback" not in text, text[-2000:]


# ---- hypothesis: random mutations of composed configs ---------------------------------------------
@functools.cache
def _bases():
    raws = composed_many([_job(), ("offline", ["+agents=4", "+len=64k", *QUIET]), _job(online=True)])
    return tuple(zip((False, False, True), raws))  # the second: ds660b on cluster=paper


def _field_names():
    names = {"len", "agents", "aps", "capacity", "rerun", "system", "name", "main", "indexer"}
    for cls in vars(C).values():
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            names |= {f.name for f in dataclasses.fields(cls)}
    return sorted(names)


KEYS = _field_names()
STRINGS = sorted(
    {
        *(
            a
            for lit in (
                C.Attention,
                C.ComputeDtype,
                C.ExpertShard,
                C.Source,
                C.Scheduler,
                C.Batching,
                C.Arrivals,
                C.ThinkKind,
                C.WandbMode,
                C.Backend,
                C.TestbedModel,
                C.TestbedDtype,
                C.MoeBackend,
                C.ReadSide,
            )
            for a in typing.get_args(lit)
        ),
        "???",
        "paper",
        "1p1d",
        "2p4d",
        "nope",
        "basic",
        "8k",
        "18k",
        "32k",
        "64k",
        "161k",
        "162k",
        "1024k",
        "40000",
        "-3k",
        "0",
        "nan",
        "x/../y",
        "\x00",
    }
)
SCALARS = st.one_of(
    st.integers(-3, 3),
    st.integers(-(2**31), 2**31),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300]),
    st.sampled_from(STRINGS),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
)
NEW_KEYS = st.one_of(st.sampled_from(KEYS), st.text(max_size=4), st.integers(0, 3))  # YAML allows int keys
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(NEW_KEYS, SCALARS, max_size=3))


def _paths(node, prefix=()):
    """Every key path of a nested dict/list structure, containers included."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(root, path):
    node = root
    for k in path[:-1]:
        node = node[k]
    return node


def _mutate(data, raw):
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        paths = _paths(raw)
        op = data.draw(st.sampled_from(["set", "set", "tweak", "tweak", "delete", "add", "number"]), label="op")
        if op == "add" or not paths:
            dicts = [()] + [p for p in paths if isinstance(_parent(raw, (*p, None)), dict)]
            where = data.draw(st.sampled_from(dicts), label="under")
            node = _parent(raw, (*where, None))
            node[data.draw(NEW_KEYS, label="key")] = data.draw(VALUES, label="value")
            continue
        path = data.draw(st.sampled_from(paths), label="path")
        parent = _parent(raw, path)
        if op == "delete":
            del parent[path[-1]]
        elif op == "tweak":  # another value of the same kind, often a valid one
            parent[path[-1]] = data.draw(_like(parent[path[-1]]), label="tweak")
        elif op == "number":
            parent[path[-1]] = data.draw(
                st.sampled_from([0, -1, 1, 2**53 + 1, 0.5, -0.0, math.nan, math.inf, -math.inf, 1e308]), label="number"
            )
        else:
            parent[path[-1]] = data.draw(VALUES, label="value")


def _like(value):
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(0, max(64, 2 * value))
    if isinstance(value, float):
        return st.floats(0.0, max(2.0, 2 * value))
    if isinstance(value, str):
        return st.sampled_from(STRINGS)
    return VALUES


def _finite_everywhere(node):
    if isinstance(node, dict):
        return all(_finite_everywhere(v) for v in node.values())
    if isinstance(node, list):
        return all(_finite_everywhere(v) for v in node)
    return not isinstance(node, float) or math.isfinite(node)


def _check(raw, online):
    before = repr(raw)
    try:
        cfg = build_config(raw, online=online)
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith(PREFIXES), msg
        event(f"ConfigError {msg.split(':')[0].split('=')[0][:40]}")
    else:
        assert isinstance(cfg, ExperimentConfig)
        assert _finite_everywhere(to_dict(cfg))
        event("built")
    assert repr(raw) == before  # build_config leaves its input alone


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_build_config_raises_only_config_error(data):
    online, base = data.draw(st.sampled_from(_bases()), label="base")
    raw = copy.deepcopy(base)
    _mutate(data, raw)
    _check(raw, online)


@settings(max_examples=300, deadline=None)
@given(st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(NEW_KEYS, SCALARS, max_size=2)), st.booleans())
def test_fuzz_any_shape_at_the_top(raw, online):
    _check(raw, online)


OVERRIDE_VALUES = [
    "0",
    "-1",
    "1",
    "2.5",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "null",
    "[]",
    "{}",
    "[1,2]",
    "{a: 1}",
    "x",
    "''",
    "true",
    "greedy",
    "quota",
    "8k",
    "64k",
    "99999999999999999999",
    "'3'",
]


@functools.cache
def _override_keys():
    keys = [".".join(map(str, p)) for p in _paths(online_raw()) if all(isinstance(k, str) for k in p)]
    return sorted(k for k in keys if not k.startswith("hydra"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_hydra_overrides(data):
    """Random command-line overrides through Hydra itself (fewer: each composes the config)."""
    online = data.draw(st.booleans(), label="online")
    keys = _override_keys()
    overrides = [
        f"{data.draw(st.sampled_from(['', '', '', '++']))}{data.draw(st.sampled_from(keys))}="
        f"{data.draw(st.sampled_from(OVERRIDE_VALUES))}"
        for _ in range(data.draw(st.integers(1, 3)))
    ]
    try:
        refuse_group_lists(overrides)  # as the CLI does before Hydra composes
        raw = online_raw(overrides) if online else offline_raw(overrides)
    except (HydraException, OmegaConfBaseException, ValueError):  # Hydra's own refusal (exit 2: sweep.run)
        event("Hydra refused")
        return
    _check(raw, online)

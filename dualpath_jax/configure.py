"""From the composed config (Hydra's YAML as plain containers) to a checked `ExperimentConfig`.

The entry points call `build_config` once; it raises only `ConfigError`, whose message names the
field as written on the command line (`+len`, `+agents`, `config.<section>.<field>`). Each
section's own checks live with its schema (`dualpath_jax.config`); here are the checks across
sections, the settings that would change nothing, and a pre-flight of what the simulation would
fail on when it starts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Mapping

from .cluster import check_pd_ratio
from .config import (
    ConfigError,
    CostModelSpec,
    ExperimentConfig,
    ModelSpec,
    OnlineSpec,
    SystemSpec,
    TestbedSpec,
    TraceStats,
    _show,
    check_kv_format,
    from_dict,
)
from .costmodel import calibrate
from .costmodel.deploy import deployed
from .costmodel.profile_table import TableError, load_table
from .online.think import trace_gaps
from .paths import load_named, repo_path
from .workload.synthetic import mal_problem, supported_mal_range
from .workload.trace import TraceError

LEN_HELP = (
    "len takes 32k, 48k or 64k (the paper's trace sets), any <N>k, or a token count "
    "such as 40000, from 1k to 1024k; workload=synthetic takes the MALs its statistics "
    "table supports (an error names that range)"
)
MIN_LEN, MAX_LEN = 1024, 1 << 20
DRAWN_THINK = ("exponential", "lognormal", "trace")  # think kinds drawn from the top-level seed


def parse_len(value: Any) -> tuple[int, str]:
    """`+len=64k` -> (65536, "64k"); `+len=40000` -> (40000, "40000")."""
    if isinstance(value, bool):
        raise ConfigError(f"+len={value!r}: {LEN_HELP}")
    if isinstance(value, int):
        mal, label = value, str(value)
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", str(value))
        if not m:
            raise ConfigError(f"+len={_show(value)}: {LEN_HELP}")
        mal = int(m.group(1)) * (1024 if m.group(2) else 1)
        label = f"{m.group(1)}k" if m.group(2) else m.group(1)
    if not MIN_LEN <= mal <= MAX_LEN:
        raise ConfigError(f"+len={_show(value)} is out of range (1k..1024k): {LEN_HELP}")
    return mal, label


def parse_agents(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"+agents={_show(value)}: agents takes a positive integer, e.g. +agents=1024")
    return value


def _supported_lens(table: tuple[TraceStats, ...]) -> str:
    rng = supported_mal_range(table, MIN_LEN, MAX_LEN)
    if rng is None:
        return "no MAL with its statistics table (workload.table)"
    lo, hi = rng
    k_lo, k_hi = -(-lo // 1024), hi // 1024
    ks = f" (+len={k_lo}k to +len={k_hi}k)" if k_lo <= k_hi else ""
    return f"MALs from {lo} to {hi} tokens{ks} with its statistics table (workload.table)"


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
    return dict(value)


def build_config(raw: Any, online: bool = False) -> ExperimentConfig:
    """Composed config (plain dict) -> frozen ExperimentConfig. Fills workload from +agents/+len
    (offline) or online.aps from +aps (online; agents then arrive over time).

    Raises ConfigError, and nothing else, for any input; its message names the field. Besides each
    section's own checks (dualpath_jax.config) it refuses settings that would change nothing (a
    top-level seed offline, an online section offline, testbed settings on the simulator, think
    settings that cancel out), a +len the synthetic generator cannot make, a missing trace file,
    and, on the simulator, what the simulation would fail on when it starts (anchor model,
    calibration, HBM left for KV)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected the composed config as a mapping, got {_show(raw)}")
    raw = dict(raw)
    rerun = raw.pop("rerun", False)  # the entry points' switch (reuse a stored cell or not)
    if not isinstance(rerun, bool):
        raise ConfigError(f"config.rerun: expected true/false, got {_show(rerun)}")
    # +len picks the synthetic generator's trace statistics; a trace file (jsonl, mooncake) brings
    # its own turns, so there it is not needed (and a cell run without it names no length)
    workload_in = raw.get("workload")
    source = workload_in.get("source", "synthetic") if isinstance(workload_in, Mapping) else "synthetic"
    needed = ([] if source in ("jsonl", "mooncake") else [("len", "+len=64k")]) + (
        [] if online else [("agents", "+agents=1024")]
    )
    for key, example in needed:
        if key not in raw:
            raise ConfigError(f"missing '{key}': append it on the command line, e.g. {example}")
    if source in ("jsonl", "mooncake") and "len" in raw:  # as +aps with trace arrivals, below
        raise ConfigError(
            f"+len={raw['len']}: workload={source} replays the trace's own turn lengths, "
            f"so +len would change nothing; drop it"
        )
    capacity = False
    if online:
        if "agents" in raw:
            raise ConfigError(
                f"+agents={_show(raw['agents'])}: the online experiment's agents arrive at "
                f"+aps per second (or +capacity=true searches the rate); drop +agents"
            )
        if raw.get("backend", "sim") == "real":
            # rather than quietly simulating what was asked to run for real
            raise ConfigError(
                "config.backend='real': the online experiment runs on the simulator "
                "only; the real testbed serves the offline one (python -m "
                "experiments.offline backend=real cluster=testbed_1p1d ...)"
            )
        aps = raw.pop("aps", None)
        capacity = raw.pop("capacity", False)
        if not isinstance(capacity, bool):
            raise ConfigError(f"+capacity={_show(capacity)}: capacity takes true or false")
        section = _mapping(raw.get("online", {}), "config.online")
        # trace arrivals replay the trace's first-turn timestamps: no rate to give, none to name a file
        replay = section.get("arrivals") == "trace"
        if replay and aps is not None and source != "synthetic":  # synthetic: the arrivals are the error
            raise ConfigError(
                f"+aps={_show(aps)}: online.arrivals=trace replays the trace's arrival times, "
                f"so +aps would change nothing; drop it"
            )
        if aps is None and not capacity and not replay:
            raise ConfigError("+aps: missing; append +aps=<agents per second> (e.g. +aps=0.5) or +capacity=true")
        if aps is not None and capacity:
            raise ConfigError(
                f"+aps={_show(aps)}: +capacity=true searches the arrival rate itself; "
                f"give +aps or +capacity=true, not both"
            )
        if "aps" in section:
            raise ConfigError("config.online.aps: the arrival rate comes from +aps=<agents per second>")
        if aps is not None:
            if isinstance(aps, bool) or not isinstance(aps, (int, float)) or not math.isfinite(aps) or aps <= 0:
                raise ConfigError(f"+aps={_show(aps)}: aps takes a positive number of agents per second")
            section["aps"] = float(aps)
        raw["online"] = section
        agents = 0
    else:
        for key in ("aps", "capacity"):
            if key in raw:
                raise ConfigError(
                    f"+{key}={_show(raw[key])}: the offline experiment starts its +agents "
                    f"at once; +{key} is for python -m experiments.online"
                )
        agents = parse_agents(raw.pop("agents"))
    mal, label = parse_len(raw.pop("len")) if "len" in raw else (0, "")
    if "workload" not in raw:
        raise ConfigError("config.workload: required field is missing")
    workload = _mapping(raw["workload"], "config.workload")
    for key, flag in (("agents", "+agents"), ("mal", "+len"), ("mal_label", "+len")):
        if key in workload:
            raise ConfigError(f"config.workload.{key}: comes from {flag} on the command line")
    raw["workload"] = dict(workload, agents=agents, mal=mal, mal_label=label)
    if "systems" in raw:
        raise ConfigError(
            "config.systems: the systems come from system=<set> (configs/system/) and "
            "system.<name>.<field>=... overrides"
        )
    raw["systems"] = _systems(raw.pop("system", None))
    _profiled_model(raw)
    _paper_cluster(raw)
    if raw.get("backend") == "real":
        raw["model"] = None  # the testbed serves testbed.model; the simulator's model would change nothing
        # The testbed measures its times: a cost model at its defaults (v1, or v2 with every
        # default) would change nothing either, so it goes too (its cells keep their identities);
        # a changed field is refused below.
        if from_dict(CostModelSpec, raw.get("costmodel", {}), "config.costmodel") == CostModelSpec(version="v2"):
            raw["costmodel"] = {"version": "v1"}
    cfg = from_dict(ExperimentConfig, raw, "config")
    _check_no_effect(cfg, online, capacity)
    _check_workload(cfg)
    _check_think_trace(cfg)
    if cfg.backend == "sim":
        _preflight(cfg)
    return cfg


def _systems(systems: Any) -> tuple[SystemSpec, ...]:
    """`system: {basic: {...}, dualpath: {...}}` -> SystemSpecs, each named `config.system.<key>`."""
    if not isinstance(systems, Mapping) or not systems:
        raise ConfigError(
            f"config.system: expected a mapping of system name -> settings (configs/system/), got {_show(systems)}"
        )
    out = []
    for key, settings in systems.items():
        where = f"config.system.{key}"
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{where}: expected a mapping of the system's settings, got {_show(settings)}")
        if "name" in settings:
            raise ConfigError(f"{where}.name: a system is named by its key under system:; drop name")
        out.append(from_dict(SystemSpec, dict(settings, name=str(key)), where))
    if "basic" not in {s.name for s in out}:
        raise ConfigError("config.system: the comparison needs a 'basic' system (speedups are over it)")
    return tuple(out)


def _profiled_model(raw: dict) -> None:
    """costmodel=profiled on the simulator: the simulated model is the one the table profiled (its
    Flax config as the simulator's ModelSpec, `serving.simcheck.model_spec`, stored in the table),
    replacing config.model; and a GPU's HBM is the profiled device's, where the table has it."""
    section = raw.get("costmodel")
    if raw.get("backend", "sim") != "sim" or not isinstance(section, Mapping):
        return
    if section.get("version") != "profiled":
        return
    name = section.get("table")
    if not isinstance(name, str) or name in ("", "???"):
        return  # CostModelSpec names the missing field
    try:
        table = load_table(repo_path(name))
    except TableError as e:
        raise ConfigError(f"config.costmodel.table: {e}") from None
    raw["model"] = dict(table.sim_model)
    cluster = raw.get("cluster")
    if isinstance(cluster, Mapping) and cluster.get("name") != "paper" and cluster.get("gpus_per_node", 8) != 1:
        raise ConfigError(
            f"config.cluster.gpus_per_node: costmodel=profiled times one GPU that holds the whole model "
            f"(a testbed engine), so a node must have one GPU, got {cluster.get('gpus_per_node', 8)} "
            f"({cluster.get('name')}); use e.g. cluster=testbed_1p1d"
        )
    hardware = raw.get("hardware")
    if table.hbm_gb is not None and isinstance(hardware, Mapping) and isinstance(hardware.get("gpu"), Mapping):
        gpu = dict(hardware["gpu"], name=table.header["device_kind"], hbm_gb=table.hbm_gb)
        raw["hardware"] = dict(hardware, gpu=gpu)


def _paper_cluster(raw: dict) -> None:
    """cluster=paper: the model's `paper_cluster`, loaded by name."""
    cluster, model = raw.get("cluster"), raw.get("model")
    if not (isinstance(cluster, Mapping) and cluster.get("name") == "paper" and isinstance(model, Mapping)):
        return
    extra = sorted((k for k in cluster if k != "name"), key=str)
    if extra:
        raise ConfigError(
            f"config.cluster: cluster=paper stands for the model's paper cluster and takes "
            f"no settings ({', '.join(map(str, extra))}); name the cluster to change it, "
            f"e.g. cluster=2p4d cluster.snic_gbps=200"
        )
    default = model.get("paper_cluster")
    if not isinstance(default, str) or not default:
        raise ConfigError(
            f"config.model.paper_cluster: cluster=paper needs the model's paper cluster, "
            f"and model {_show(model.get('name'))} names none; pick a cluster by name"
        )
    try:
        raw["cluster"] = load_named("cluster", default)
    except ConfigError as e:
        raise ConfigError(f"config.model.paper_cluster: {e}") from None


def _check_no_effect(cfg: ExperimentConfig, online: bool, capacity: bool) -> None:
    """Settings that would change nothing in this run are refused, naming what does."""
    s = cfg.seed
    if not online:
        if s != 0:
            raise ConfigError(
                f"config.seed: the offline experiment draws nothing from the top-level seed "
                f"(only the online experiment's drawn think times do), got seed={s}; "
                f"set workload.seed={s} (the trajectories) or testbed.seed={s} "
                f"(backend=real: weights and token streams)"
            )
        if cfg.online != OnlineSpec():
            raise ConfigError(
                "config.online: the offline experiment has no arrivals, think times or SLOs; "
                "online settings belong to python -m experiments.online"
            )
    else:
        if s != 0 and cfg.online.think.kind not in DRAWN_THINK:
            raise ConfigError(
                f"config.seed: the online experiment draws only exponential, lognormal and "
                f"trace think times from the top-level seed, and online.think.kind="
                f"{cfg.online.think.kind}, got seed={s}; arrivals and trajectories follow workload.seed={s}"
            )
        if capacity and cfg.online.arrivals == "trace":
            raise ConfigError(
                "+capacity=true: the capacity search varies the arrival rate, which "
                "online.arrivals=trace does not use (it replays the trace's timestamps)"
            )
    if cfg.backend == "sim" and cfg.testbed != TestbedSpec():
        raise ConfigError(
            "config.testbed: the testbed settings apply to backend=real only; drop them or add backend=real"
        )
    v1 = CostModelSpec()
    if cfg.costmodel.version == "v1" and cfg.costmodel != v1:
        changed = [f.name for f in dataclasses.fields(v1) if getattr(cfg.costmodel, f.name) != getattr(v1, f.name)]
        raise ConfigError(
            f"config.costmodel.{changed[0]}: cost model v1 has none of the v2 terms; select them with costmodel=v2"
        )
    if cfg.backend == "real" and cfg.costmodel.version != "v1":
        raise ConfigError("config.costmodel: the real testbed measures its times; costmodel applies to backend=sim")


def _check_workload(cfg: ExperimentConfig) -> None:
    w = cfg.workload
    if w.source == "synthetic":
        problem = mal_problem(w.table, w.mal)
        if problem is not None:
            raise ConfigError(
                f"+len={w.mal_label}: workload=synthetic supports {_supported_lens(w.table)}; "
                f"at {w.mal} tokens, {problem}. For other lengths use a trace: "
                f"workload=jsonl workload.path=<file> or workload=mooncake"
            )
        return
    where = "config.workload.path"
    if w.path in ("", "???"):
        raise ConfigError(f"{where}: workload={w.source} reads a trace file; set workload.path=<file>")
    path = _existing_file(w.path)
    if path is None:
        raise ConfigError(f"{where}: no such file: {repo_path(w.path)}")


def _existing_file(name: str) -> Path | None:
    """The file a config names (relative to the repository), or None if there is none."""
    try:
        path = repo_path(name)
        return path if path.is_file() else None
    except (OSError, ValueError):  # e.g. a NUL byte in the name
        return None


def _check_think_trace(cfg: ExperimentConfig) -> None:
    """online.think.kind=trace: the trace must be there, with at least one gap between two turns
    of an agent (its lines are checked as it is read: file:line errors)."""
    think = cfg.online.think
    if think.kind != "trace":
        return
    where = "config.online.think.trace"
    path = _existing_file(think.trace)
    if path is None:
        raise ConfigError(f"{where}: no such file: {repo_path(think.trace) if think.trace else '(empty)'}")
    try:
        gaps = trace_gaps(path)
    except TraceError as e:  # a bad line: its file and line are in the message
        raise ConfigError(f"{where}: {e}") from None
    if gaps.size == 0:
        raise ConfigError(
            f"{where}: {path} has no agent with two timed turns, so no gap between turns to draw "
            f"(online.think.kind=trace needs a multi-turn trace)"
        )


def anchor_model(cfg: ExperimentConfig) -> ModelSpec:
    """The calibration's anchor model (configs/model/<hardware.calibration.anchor_model>.yaml)."""
    where = "config.hardware.calibration.anchor_model"
    name = cfg.hardware.calibration.anchor_model
    try:
        anchor_raw = load_named("model", name)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    anchor = from_dict(ModelSpec, anchor_raw, f"{where}[{name}]")
    check_kv_format(anchor, f"{where}[{name}]")
    return anchor


def _preflight(cfg: ExperimentConfig) -> None:
    """What the simulator checks when it starts, checked now with the fields named: the anchor
    model, the calibration, the HBM left for KV under every system and the P/D bound's terms."""
    where = "config.hardware.calibration.anchor_model"
    name = cfg.hardware.calibration.anchor_model
    anchor = anchor_model(cfg)
    peaks = cfg.hardware.gpu.peak_tflops
    if anchor.compute_dtype not in peaks:
        raise ConfigError(
            f"{where}: anchor model {name}'s compute_dtype {anchor.compute_dtype!r} has no "
            f"peak rate in config.hardware.gpu.peak_tflops (known: {', '.join(sorted(peaks))})"
        )
    try:
        eff = calibrate(anchor, cfg.hardware, cfg.cluster.gpus_per_node, cfg.costmodel)
    except (ValueError, ArithmeticError) as e:
        raise ConfigError(
            f"config.hardware.calibration: {str(e).removeprefix('calibration: ')} (calibrated "
            f"for config.cluster.gpus_per_node={cfg.cluster.gpus_per_node})"
        ) from None
    gpu, cl = cfg.hardware.gpu, cfg.cluster
    for system in cfg.systems:
        try:
            _, cost = deployed(cfg, system, eff)
            for role in ("prefill", "decode"):
                cost.kv_room_bytes(role)
        except (ValueError, ArithmeticError) as e:
            paper = cfg.model.paper_cluster
            hint = f", e.g. cluster={paper}" if paper and paper != cl.name else ""
            raise ConfigError(
                f"config.cluster: {e} ({gpu.hbm_gb:g} GB of HBM per GPU, "
                f"{cl.activation_reserve_gb:g} GB of it kept for activations); use a "
                f"cluster with more GPUs per role{hint}"
            ) from None
    try:
        check_pd_ratio(cl, warn=False)
    except ArithmeticError:
        raise ConfigError(
            f"config.cluster.snic_gbps: a node's storage NICs ({cl.snics_per_node} x "
            f"{cl.snic_gbps:g} Gbit/s) match its {cl.gpus_per_node} compute NICs "
            f"({cl.cnic_gbps:g} Gbit/s each) exactly, where the P/D bound "
            f"(dualpath_jax.cluster.pd_bound_terms) divides by zero"
        ) from None

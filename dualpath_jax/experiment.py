"""The offline experiment without Hydra: build the config, run every system, compare.

`experiments/offline.py` is the Hydra entry point; it calls `build_config` once on the composed
config (as plain containers) and hands the frozen result to `run_offline`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .cluster import check_pd_ratio
from .config import ConfigError, ExperimentConfig, ModelSpec, SystemSpec, from_dict
from .costmodel import CostModel, Efficiency, calibrate
from .metrics import SystemMetrics
from .sim import Simulation
from .workload import assign_agents, load_trajectories

ROOT = Path(__file__).resolve().parents[1]
LEN_HELP = ("len takes 32k, 48k or 64k (the paper's trace sets), any <N>k, or a token count "
            "such as 40000")
BACKENDS = ("sim", "real")


def parse_len(value: Any) -> tuple[int, str]:
    """`+len=64k` -> (65536, "64k"); `+len=40000` -> (40000, "40000")."""
    if isinstance(value, bool):
        raise ConfigError(f"+len={value!r}: {LEN_HELP}")
    if isinstance(value, int):
        mal, label = value, str(value)
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([kK]?)\s*", str(value))
        if not m:
            raise ConfigError(f"+len={value!r}: {LEN_HELP}")
        mal = int(m.group(1)) * (1024 if m.group(2) else 1)
        label = f"{m.group(1)}k" if m.group(2) else m.group(1)
    if not 1024 <= mal <= 1 << 20:
        raise ConfigError(f"+len={value!r} is out of range (1k..1024k): {LEN_HELP}")
    return mal, label


def parse_agents(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"+agents={value!r}: agents takes a positive integer, e.g. +agents=1024")
    return value


def build_config(raw: dict, online: bool = False) -> ExperimentConfig:
    """Composed config (plain dict) -> frozen ExperimentConfig. Fills workload from +agents/+len
    (offline) or online.aps from +aps (online; agents then arrive over time)."""
    raw = dict(raw)
    needed = [("len", "+len=64k")] + ([] if online else [("agents", "+agents=1024")])
    for key, example in needed:
        if key not in raw:
            raise ConfigError(f"missing '{key}': append it on the command line, e.g. {example}")
    if online:
        if raw.get("backend", "sim") != "sim":
            # rather than quietly simulating what was asked to run for real
            raise ConfigError(f"backend={raw['backend']!r}: the online experiment runs on the simulator "
                              f"only; the real testbed serves the offline one (python -m "
                              f"experiments.offline backend=real cluster=testbed_1p1d ...)")
        aps = raw.pop("aps", None)
        capacity = raw.pop("capacity", False)
        if aps is None and not capacity:
            raise ConfigError("online: append +aps=<agents per second> (e.g. +aps=0.5) or +capacity=true")
        if aps is not None:
            if isinstance(aps, bool) or not isinstance(aps, (int, float)) or aps <= 0:
                raise ConfigError(f"+aps={aps!r}: aps takes a positive number of agents per second")
            raw["online"] = dict(raw.get("online", {}), aps=float(aps))
        agents = 0
    else:
        agents = parse_agents(raw.pop("agents"))
    mal, label = parse_len(raw.pop("len"))
    workload = dict(raw["workload"], agents=agents, mal=mal, mal_label=label)
    systems = raw.pop("system", None)
    if not isinstance(systems, dict) or not systems:
        raise ConfigError("system: expected a mapping of system name -> settings (configs/system/)")
    raw["systems"] = [dict(v, name=k) for k, v in systems.items()]
    raw["workload"] = workload
    if raw.get("cluster", {}).get("name") == "paper":
        default = raw["model"].get("paper_cluster")
        if not default:
            raise ConfigError(f"cluster=paper: model {raw['model'].get('name')!r} names no "
                              f"paper_cluster; pick a cluster by name")
        raw["cluster"] = load_named("cluster", default)
    if raw.get("backend", "sim") not in BACKENDS:
        raise ConfigError(f"backend={raw['backend']!r} is not available; known: {', '.join(BACKENDS)}")
    cfg = from_dict(ExperimentConfig, raw, "config")
    if "basic" not in {s.name for s in cfg.systems}:
        raise ConfigError("system: the comparison needs a 'basic' system (speedups are over it)")
    return cfg


def load_named(group: str, name: str) -> dict:
    """configs/<group>/<name>.yaml as a plain dict; an unknown name lists the known ones."""
    import yaml  # PyYAML comes with hydra-core

    path = ROOT / "configs" / group / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{group}={name!r} is unknown; known: {', '.join(known)}")
    return yaml.safe_load(path.read_text())


@dataclass
class OfflineResult:
    cfg: ExperimentConfig
    efficiency: Efficiency
    systems: dict[str, SystemMetrics] = field(default_factory=dict)
    wall_s: float = 0.0

    def comparison(self) -> dict[str, dict[str, float]]:
        base = self.systems["basic"].jct_s
        oracle = self.systems.get("oracle")
        out = {}
        for name, m in self.systems.items():
            row = {"speedup_vs_basic": base / m.jct_s}
            if oracle is not None:
                row["gap_to_oracle"] = m.jct_s / oracle.jct_s - 1.0
            out[name] = row
        return out


def engine_view(cfg: ExperimentConfig, system: SystemSpec) -> ExperimentConfig:
    """The config as `system` deploys it: with tensor parallelism (dense models only) an engine is
    `tp` GPUs that act as one larger GPU (rates, HBM and CNICs add up; weights are split)."""
    tp = system.tp_dense if cfg.model.routed_experts == 0 else 1
    if tp == 1:
        return cfg
    cl, gpu = cfg.cluster, cfg.hardware.gpu
    if cl.gpus_per_node % tp:
        raise ConfigError(f"system {system.name}: tp_dense={tp} does not divide "
                          f"cluster.gpus_per_node={cl.gpus_per_node}")
    cluster = replace(cl, gpus_per_node=cl.gpus_per_node // tp, cnic_gbps=cl.cnic_gbps * tp,
                      activation_reserve_gb=cl.activation_reserve_gb * tp)
    big = replace(gpu, hbm_gb=gpu.hbm_gb * tp, hbm_tbps=gpu.hbm_tbps * tp,
                  peak_tflops={k: v * tp for k, v in gpu.peak_tflops.items()})
    return replace(cfg, cluster=cluster, hardware=replace(cfg.hardware, gpu=big),
                   model=replace(cfg.model, dense_ffn_tp=1))


def deployed(cfg: ExperimentConfig, system: SystemSpec, eff: Efficiency) -> tuple[ExperimentConfig, CostModel]:
    """The config as `system` deploys it, and its cost model."""
    view = engine_view(cfg, system)
    return view, CostModel(view.model, view.cluster, view.hardware, eff)


def run_offline(cfg: ExperimentConfig, anchor: ModelSpec,
                progress: Callable[[str, int], Callable[[], None]] | None = None) -> OfflineResult:
    """Run every configured system on the same agents (simulated, or on the real testbed with
    backend=real); `progress(system, turns)` -> tick."""
    if cfg.backend == "real":
        from .serving import run_testbed  # JAX and the model load only for the testbed

        return run_testbed(cfg, progress=progress)
    check_pd_ratio(cfg.cluster)
    eff = calibrate(anchor, cfg.hardware, cfg.cluster.gpus_per_node)
    agents = assign_agents(load_trajectories(cfg.workload, ROOT), cfg.workload.agents)
    turns = sum(len(a.turns) for a in agents)
    result = OfflineResult(cfg, eff)
    t0 = time.perf_counter()
    for system in cfg.systems:
        tick = progress(system.name, turns) if progress else None
        view, cost = deployed(cfg, system, eff)
        result.systems[system.name] = Simulation(view, system, agents, cost, on_turn=tick).run()
    result.wall_s = time.perf_counter() - t0
    return result


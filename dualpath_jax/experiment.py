"""The offline experiment without Hydra: run every configured system on the same agents, compare.

`experiments/offline.py` is the Hydra entry point: it builds the config once
(`dualpath_jax.configure.build_config`) and hands it to `run_offline`, which runs it on the
backend the config names (`BACKENDS`: the simulator, or the real testbed).
"""

from __future__ import annotations

import time
from typing import Callable

from .attribution import attribute, chain_floor_s
from .cluster import check_pd_ratio
from .config import ConfigError, ExperimentConfig, ModelSpec
from .costmodel import calibrate
from .costmodel.deploy import deployed
from .costmodel.profile_table import OutsideTable, TableError, load_table
from .metrics import v2_metrics
from .paths import ROOT, repo_path
from .results.result import OfflineResult
from .results.turns import turn_records
from .sim import Simulation
from .workload import assign_agents, load_trajectories

Progress = Callable[[str, int], Callable[[], None]]


def simulate(cfg: ExperimentConfig, anchor: ModelSpec, progress: Progress | None = None) -> OfflineResult:
    """Every system of `cfg` in the simulator; `progress(system, turns)` -> tick."""
    check_pd_ratio(cfg.cluster)
    eff = calibrate(anchor, cfg.hardware, cfg.cluster.gpus_per_node, cfg.costmodel)
    agents = assign_agents(load_trajectories(cfg.workload, ROOT), cfg.workload.agents)
    check_profiled_range(cfg, agents)
    turns = sum(len(a.turns) for a in agents)
    result = OfflineResult(cfg, eff)
    t0 = time.perf_counter()
    chains: dict[str, float] = {}  # chain floor per deployment: the systems that keep cfg share one
    for system in cfg.systems:
        tick = progress(system.name, turns) if progress else None
        view, cost = deployed(cfg, system, eff)
        sim = Simulation(view, system, agents, cost, on_turn=tick)
        m = result.systems[system.name] = sim.run()
        if cfg.costmodel.version != "v1":
            key = "" if view is cfg else system.name
            if key not in chains:
                chains[key] = chain_floor_s(agents, cost)
            result.attribution[system.name] = attribute(m, chains[key])
            result.fidelity[system.name] = v2_metrics(sim)
        if cfg.sim.record_turns:
            result.turns[system.name] = turn_records(sim)
    result.wall_s = time.perf_counter() - t0
    return result


def check_profiled_range(cfg: ExperimentConfig, agents) -> None:
    """costmodel=profiled: every turn's cached, new and context tokens within the table's grid."""
    if cfg.costmodel.version != "profiled":
        return
    turns = [t for a in agents for t in a.turns]
    try:
        load_table(repo_path(cfg.costmodel.table)).check_range(
            max(t.cached for t in turns), max(t.input - t.cached for t in turns), max(t.input + t.output for t in turns)
        )
    except (OutsideTable, TableError) as e:
        raise ConfigError(f"config.costmodel.table: {e}") from None


def testbed(cfg: ExperimentConfig, anchor: ModelSpec, progress: Progress | None = None) -> OfflineResult:
    """Every system of `cfg` on the real testbed (JAX and the model load only here)."""
    from .serving import run_testbed

    return run_testbed(cfg, progress=progress)


BACKENDS = {"sim": simulate, "real": testbed}


def run_offline(cfg: ExperimentConfig, anchor: ModelSpec, progress: Progress | None = None) -> OfflineResult:
    """Run every configured system on the same agents, on the backend `cfg.backend` names."""
    return BACKENDS[cfg.backend](cfg, anchor, progress)

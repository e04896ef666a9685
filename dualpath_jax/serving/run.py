"""`run_testbed(cfg)`: the offline experiment on the real testbed (backend=real).

Same inputs as the simulator's `run_offline` (the ExperimentConfig: cluster, workload, systems)
plus `TestbedSpec` (which Flax model, which store, block and batch sizes). Returns an
`OfflineResult` whose `.systems` holds one `TestbedMetrics` (a SystemMetrics with extra measured
fields) per system; `results.write_result` writes it like a simulator result. Writes nothing itself.
"""

from __future__ import annotations

import time
from typing import Callable

from ..config import ExperimentConfig, TestbedSpec
from ..paths import ROOT
from ..results.result import OfflineResult
from ..workload import assign_agents, load_trajectories
from ..workload.trace import Trajectory
from .rates import MeasuredRates
from .server import Testbed

__all__ = ["MeasuredRates", "run_testbed"]


def run_testbed(
    cfg: ExperimentConfig,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
    spec: TestbedSpec | None = None,
    agents: list[Trajectory] | None = None,
) -> OfflineResult:
    """Serve cfg's workload once per system in cfg.systems on the testbed.

    spec: defaults to cfg.testbed (or TestbedSpec() if the config has none). agents: explicit
    trajectories instead of cfg.workload's. progress(system, turns) -> tick, as run_offline."""
    spec = spec or getattr(cfg, "testbed", None) or TestbedSpec()
    if agents is None:
        agents = assign_agents(load_trajectories(cfg.workload, ROOT), cfg.workload.agents)
    if spec.processes:  # every emulated node its own process (serving/mp)
        from .mp.launch import run_testbed_mp

        return run_testbed_mp(cfg, spec, agents, progress)
    tb = Testbed(cfg, spec, agents)
    result = OfflineResult(cfg, None)
    t0 = time.perf_counter()
    for system in cfg.systems:
        tick = progress(system.name, sum(len(a.turns) for a in tb.agents)) if progress else None
        result.systems[system.name] = m = tb.run_system(system)
        if tick:
            for _ in range(m.turns):
                tick()
    result.wall_s = time.perf_counter() - t0
    result.efficiency = MeasuredRates(
        tb.init_s,
        tb.warm_s,
        {k: m.prefill_tokens_per_s for k, m in result.systems.items()},
        {k: m.decode_step_ms for k, m in result.systems.items()},
        tb.mcfg.attn_impl,
    )
    result.testbed = tb
    return result

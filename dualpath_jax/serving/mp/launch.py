"""`run_testbed_mp(cfg, spec, agents)`: the offline experiment on the testbed with every emulated
node in its own process (`testbed.processes=N`); same inputs and the same `OfflineResult` (one
`TestbedMetrics` per system, the same schema) as the single-process `run_testbed`."""

from __future__ import annotations

import time

from ...results.result import OfflineResult
from ..rates import MeasuredRates
from .host import MPHost
from .scheduler import MPSystemRun


def run_testbed_mp(cfg, spec, agents, progress=None, on_host=None) -> OfflineResult:
    """on_host(host): called once the node processes are up and set up (tests: a node's pid)."""
    result = OfflineResult(cfg, None)
    served: dict = {}  # system -> its finished turns (timestamps, placements, first-token logits)
    result.served = served
    with MPHost(cfg, spec, agents) as host:
        if on_host is not None:
            on_host(host)
        t0 = time.perf_counter()
        for k, system in enumerate(cfg.systems):
            tick = progress(system.name, sum(len(a.turns) for a in host.agents)) if progress else None
            with MPSystemRun(host, system, k) as run:
                result.systems[system.name] = m = run.serve()
                served[system.name] = run.finished
            if tick:
                for _ in range(m.turns):
                    tick()
        result.wall_s = time.perf_counter() - t0
        result.efficiency = MeasuredRates(
            host.init_s,
            host.warm_s,
            {k: m.prefill_tokens_per_s for k, m in result.systems.items()},
            {k: m.decode_step_ms for k, m in result.systems.items()},
            host.attn_impl,
        )
    return result

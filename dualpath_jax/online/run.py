"""Run the online experiment (one arrival rate) and the capacity search, for every system."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

from ..cluster import check_pd_ratio
from ..config import ConfigError, ExperimentConfig, ModelSpec, SystemSpec
from ..costmodel import calibrate
from ..costmodel.deploy import deployed
from ..experiment import check_profiled_range
from ..paths import ROOT
from ..results.turns import turn_records
from ..workload import load_trajectories
from .arrivals import poisson_arrivals
from .capacity import find_capacity
from .simulation import OnlineSimulation
from .think import think_sampler


def _arrivals(cfg: ExperimentConfig, trajs, aps: float):
    """(agents, start times, replay trace timestamps?)."""
    o = cfg.online
    if o.arrivals == "poisson":
        starts = poisson_arrivals(aps, o.duration_s, cfg.workload.seed)
        return [trajs[k % len(trajs)] for k in range(len(starts))], list(starts), False
    if o.arrivals == "trace":
        timed = [t for t in trajs if t.turns[0].t is not None]
        if not timed:
            raise ConfigError("online.arrivals=trace: the workload's trajectories carry no timestamps")
        t0 = min(t.turns[0].t for t in timed)
        timed = [t for t in timed if t.turns[0].t - t0 < o.duration_s]
        return timed, [t.turns[0].t - t0 for t in timed], True
    raise ConfigError(f"online.arrivals={o.arrivals!r} is unknown; known: poisson, trace")


def run_online(
    cfg: ExperimentConfig,
    anchor: ModelSpec,
    aps: float | None = None,
    systems=None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
    turns: dict | None = None,
) -> dict:
    """{system name: online summary} at `aps` (default cfg.online.aps; with trace arrivals the
    summary's `aps` is the trace's own mean rate over the window). With `sim.record_turns`,
    `turns` (if given) gets each system's per-turn records (`results.turns`)."""
    aps = cfg.online.aps if aps is None else aps
    check_pd_ratio(cfg.cluster)
    eff = calibrate(anchor, cfg.hardware, cfg.cluster.gpus_per_node, cfg.costmodel)
    trajs = load_trajectories(cfg.workload, ROOT)
    agents, starts, replay = _arrivals(cfg, trajs, aps)
    if replay:
        aps = len(agents) / cfg.online.duration_s
    check_profiled_range(cfg, agents)
    out = {}
    for system in systems or cfg.systems:
        view, cost = deployed(cfg, system, eff)
        tick = progress(system.name, sum(len(a.turns) for a in agents)) if progress else None
        sim = OnlineSimulation(
            view,
            system,
            agents,
            cost,
            starts,
            think_sampler(cfg.online.think, cfg.seed),
            replay_timestamps=replay,
            on_turn=tick,
        )
        sim.simulate()
        out[system.name] = dict(sim.summary(), aps=aps, system=system.name)
        if turns is not None and cfg.sim.record_turns:
            turns[system.name] = turn_records(sim)
    return out


def _search(cfg: ExperimentConfig, anchor: ModelSpec, system: SystemSpec, log: Callable[[str], None]) -> dict:
    """One system's capacity search (sequential: each probe's rate follows from the last)."""

    def meets(aps: float) -> bool:
        res = run_online(cfg, anchor, aps, systems=[system])[system.name]
        log(
            f"{system.name}: aps={aps:.4g} P{cfg.online.slo.percentile:g} TTFT="
            f"{res['slo_ttft_s']:.2f}s TPOT={1e3 * res['slo_tpot_s']:.1f}ms -> "
            f"{'meets' if res['slo_met'] else 'misses'} the SLO"
        )
        return res["slo_met"]

    cap, probes = find_capacity(
        meets, cfg.online.capacity_lo, cfg.online.capacity_rel_tol, cfg.online.capacity_max_probes
    )
    return {"capacity_aps": cap, "probes": [[a, ok] for a, ok in probes]}


def _search_logged(cfg: ExperimentConfig, anchor: ModelSpec, system: SystemSpec) -> tuple[dict, list[str]]:
    lines: list[str] = []
    return _search(cfg, anchor, system, lines.append), lines


def run_capacity(
    cfg: ExperimentConfig, anchor: ModelSpec, log: Callable[[str], None] = lambda _: None, jobs: int | None = None
) -> dict:
    """{system name: {"capacity_aps", "probes"}}: the highest APS meeting the SLO.

    The systems' searches are independent, so `jobs` processes (default: one per system, at most
    one per CPU core) run them side by side; the numbers do not depend on it. A system's probes are
    logged as they run with one process, and once its search ends with more."""
    jobs = min(len(cfg.systems), os.cpu_count() or 1) if jobs is None else jobs
    if jobs <= 1:
        return {s.name: _search(cfg, anchor, s, log) for s in cfg.systems}
    # spawn, not fork: the caller may hold threads (a progress bar) that fork would copy
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_search_logged, cfg, anchor, s) for s in cfg.systems]
        out = {}
        for system, fut in zip(cfg.systems, futures):
            out[system.name], lines = fut.result()
            for line in lines:
                log(line)
    return out

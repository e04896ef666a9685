"""Benchmark the paper's largest offline setup: 48P96D (1,152 GPUs), 48K agents, 64K trace set.

    python benchmarks/bench_scale.py                      # dualpath, 48K agents
    python benchmarks/bench_scale.py --systems basic dualpath --agents 48000
    python benchmarks/bench_scale.py --costmodel v2   # writes scale_48p96d_a48000_costv2
    python benchmarks/bench_scale.py --costmodel v2 --watch 30   # progress every 30 s

Prints wall time, peak memory (max RSS) and simulated events and turns per second per system, and
writes results/bench/scale_48p96d.{json,txt}.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.report, run as a script

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks.report import machine, write_report  # noqa: E402
from dualpath_jax.configure import anchor_model, build_config  # noqa: E402
from dualpath_jax.costmodel import CostModel, calibrate  # noqa: E402
from dualpath_jax.paths import ROOT  # noqa: E402
from dualpath_jax.results import cell_of, code_info  # noqa: E402
from dualpath_jax.sim import Simulation  # noqa: E402
from dualpath_jax.workload import assign_agents, load_trajectories  # noqa: E402


def max_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def watch(sim: Simulation, every_s: float, t0: float) -> None:
    """Print wall time, virtual time and turns done every `every_s` seconds (a sleeping daemon
    thread: it costs the run nothing between prints), so a run cut short still shows its pace."""

    def loop() -> None:
        while True:
            time.sleep(every_s)
            print(
                f"[watch] wall {time.perf_counter() - t0:.0f} s, sim {sim.loop.now:.0f} s, turns {sim.turns}",
                flush=True,
            )

    threading.Thread(target=loop, daemon=True, name="watch").start()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=48000)
    ap.add_argument("--len", default="64k")
    ap.add_argument("--cluster", default="48p96d")
    ap.add_argument("--systems", nargs="+", default=["dualpath"])
    ap.add_argument("--costmodel", default="v1", choices=["v1", "v2"], help="configs/costmodel/<name>.yaml")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    ap.add_argument("--watch", type=float, default=0.0, help="print progress every this many seconds (0: never)")
    args = ap.parse_args()
    code = code_info()  # the code this run starts from
    overrides = [
        f"+agents={args.agents}",
        f"+len={args.len}",
        f"cluster={args.cluster}",
        "system=all",
        "tracking.wandb=false",
        "sim.progress=false",
        f"costmodel={args.costmodel}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = build_config(OmegaConf.to_container(compose("offline", overrides=overrides), resolve=True))
    anchor = anchor_model(cfg)
    eff = calibrate(anchor, cfg.hardware, cfg.cluster.gpus_per_node, cfg.costmodel)
    cost = CostModel(cfg.model, cfg.cluster, cfg.hardware, eff, cfg.costmodel)
    agents = assign_agents(load_trajectories(cfg.workload, ROOT), cfg.workload.agents)
    rows = []
    for name in args.systems:
        system = next(s for s in cfg.systems if s.name == name)
        t0 = time.perf_counter()
        sim = Simulation(cfg, system, agents, cost)
        if args.watch > 0:
            watch(sim, args.watch, t0)
        m = sim.run()
        wall = time.perf_counter() - t0
        rows.append(
            {
                "system": name,
                "wall_s": wall,
                "turns": m.turns,
                "events": m.events,
                "events_per_s": m.events / wall,
                "turns_per_s": m.turns / wall,
                "peak_rss_gb": max_rss_gb(),
                "simulated_jct_s": m.jct_s,
            }
        )
        print(rows[-1], flush=True)
    report = {
        "setup": f"{cfg.model.name} on {cfg.cluster.name}, {args.agents} agents, MAL {args.len}",
        "cell": cell_of(cfg, "offline").id,  # the results cell whose simulation this times
        "machine": machine(),
        "systems": rows,
        "code": code,
    }
    lines = [
        f"{report['setup']}  ({report['machine']})",
        f"{'system':<10} {'wall s':>8} {'turns':>9} {'events':>10} {'events/s':>9} {'peak GB':>8}",
    ]
    lines += [
        f"{r['system']:<10} {r['wall_s']:>8.1f} {r['turns']:>9} {r['events']:>10} "
        f"{r['events_per_s']:>9.0f} {r['peak_rss_gb']:>8.2f}"
        for r in rows
    ]
    suffix = "" if args.costmodel == "v1" else f"_cost{args.costmodel}"
    write_report(args.out, f"scale_{args.cluster}_a{args.agents}{suffix}", report, lines)


if __name__ == "__main__":
    main()

"""Benchmark the main command: simulated turns per second and wall time.

    python benchmarks/bench_offline.py            # +agents=1024 +len=64k, DS 660B on 2P4D
    python benchmarks/bench_offline.py --agents 4096 --len 64k

Times (1) each system's simulation in-process and (2) the whole CLI as a user runs it (Hydra,
workload generation, three systems, results file, W&B offline), then writes
results/bench/offline_main.{json,txt}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.report, run as a script

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks.report import machine, write_report  # noqa: E402
from dualpath_jax.configure import anchor_model, build_config  # noqa: E402
from dualpath_jax.costmodel import CostModel, calibrate  # noqa: E402
from dualpath_jax.paths import ROOT  # noqa: E402
from dualpath_jax.results import cell_of  # noqa: E402
from dualpath_jax.sim import Simulation  # noqa: E402
from dualpath_jax.workload import assign_agents, load_trajectories  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=1024)
    ap.add_argument("--len", default="64k")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args()
    overrides = [f"+agents={args.agents}", f"+len={args.len}", "tracking.wandb=false", "sim.progress=false"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = build_config(OmegaConf.to_container(compose("offline", overrides=overrides), resolve=True))
    t0 = time.perf_counter()
    anchor = anchor_model(cfg)
    eff = calibrate(anchor, cfg.hardware, cfg.cluster.gpus_per_node, cfg.costmodel)
    cost = CostModel(cfg.model, cfg.cluster, cfg.hardware, eff, cfg.costmodel)
    agents = assign_agents(load_trajectories(cfg.workload, ROOT), cfg.workload.agents)
    setup_s = time.perf_counter() - t0
    rows = []
    for system in cfg.systems:
        t0 = time.perf_counter()
        m = Simulation(cfg, system, agents, cost).run()
        wall = time.perf_counter() - t0
        rows.append(
            {
                "system": system.name,
                "wall_s": wall,
                "turns": m.turns,
                "events": m.events,
                "turns_per_s": m.turns / wall,
                "events_per_s": m.events / wall,
                "simulated_jct_s": m.jct_s,
            }
        )
    cli_s = None
    if not args.skip_cli:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, WANDB_MODE="offline")
            cmd = [
                sys.executable,
                "-m",
                "experiments.offline",
                f"+agents={args.agents}",
                f"+len={args.len}",
                f"results_dir={tmp}",
                "sim.progress=false",
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
            cli_s = time.perf_counter() - t0
    report = {
        "command": f"python -m experiments.offline +agents={args.agents} +len={args.len}",
        "cell": cell_of(cfg, "offline").id,  # the results cell whose simulation this times
        "machine": machine(),
        "setup_s": setup_s,
        "systems": rows,
        "cli_wall_s": cli_s,
    }
    lines = [
        f"{report['command']}  on {report['machine']}",
        f"{'system':<10} {'wall s':>8} {'turns':>9} {'turns/s':>9} {'events/s':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r['system']:<10} {r['wall_s']:>8.2f} {r['turns']:>9} {r['turns_per_s']:>9.0f} {r['events_per_s']:>10.0f}"
        )
    lines.append(f"workload + calibration setup: {setup_s:.2f} s")
    if cli_s is not None:
        lines.append(f"whole CLI (Hydra, 3 systems, results file, W&B offline): {cli_s:.1f} s wall")
    write_report(args.out, f"offline_a{args.agents}_len{args.len}", report, lines)


if __name__ == "__main__":
    main()

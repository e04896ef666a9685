"""Small configs shared by the simulator and experiment tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dualpath_jax.config import (
    ClusterSpec,
    ExperimentConfig,
    HardwareSpec,
    ModelSpec,
    SimSpec,
    SystemSpec,
    TrackingSpec,
    WorkloadSpec,
    from_dict,
)
from dualpath_jax.costmodel import CostModel, calibrate
from dualpath_jax.paths import ROOT, load_named
from dualpath_jax.workload import Trajectory, Turn

load = load_named


def systems() -> tuple[SystemSpec, ...]:
    return tuple(SystemSpec(name=k, **v) for k, v in load("system", "paper")["system"].items())


def small_config(model="ds27b", cluster="1p1d", agents=32, **cluster_overrides) -> ExperimentConfig:
    cl = dict(load("cluster", cluster), **cluster_overrides)
    return ExperimentConfig(
        model=from_dict(ModelSpec, load("model", model)),
        cluster=from_dict(ClusterSpec, cl),
        hardware=from_dict(HardwareSpec, load("hardware", "h800")),
        workload=WorkloadSpec(source="synthetic", agents=agents, mal=32768, mal_label="32k"),
        systems=systems(),
        sim=SimSpec(progress=False, record_turns=True),
        tracking=TrackingSpec(wandb=False),
    )


def cost_for(cfg: ExperimentConfig) -> CostModel:
    anchor = from_dict(ModelSpec, load("model", "dsv3"))
    return CostModel(cfg.model, cfg.cluster, cfg.hardware, calibrate(anchor, cfg.hardware))


def growing_agents(n: int, turns: int = 6, first: int = 4000, append: int = 300, output: int = 40, preloaded: int = 0):
    """Agents whose every turn reloads the whole previous context (the agentic pattern);
    `preloaded` tokens of KV already sit in storage before the first turn."""
    out = []
    for a in range(n):
        ctx, tl = preloaded, []
        for k in range(turns):
            prompt = ctx + (first + 97 * a if k == 0 else append)
            tl.append(Turn(input=prompt, cached=ctx, output=output))
            ctx = prompt + output
        out.append(Trajectory(f"a{a}", tuple(tl)))
    return out


def project_workdir(path: Path) -> Path:
    """A scratch folder to run the CLI from that still imports the project (its own outputs/)."""
    (path / "experiments").symlink_to(ROOT / "experiments")
    (path / "dualpath_jax").symlink_to(ROOT / "dualpath_jax")
    return path


def run_cli(module: str, args, cwd: Path, env: dict | None = None, timeout: float = 300):
    """`python -m <module> <args>` in `cwd`, W&B settings of the caller's environment left out."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )

"""Agents of an experiment: N agents over a set of trajectories.

Rule for N > trajectories (offline RL rollouts start many agents on few tasks): agent k replays
trajectory k mod n with its own KV cache; agents never share KV blocks with each other.
"""
from __future__ import annotations

from pathlib import Path

from ..config import WorkloadSpec
from .mooncake import import_mooncake
from .synthetic import generate
from .trace import Trajectory, read_trace

SOURCES = ("synthetic", "jsonl", "mooncake")


def load_trajectories(spec: WorkloadSpec, base_dir: str | Path = ".") -> list[Trajectory]:
    if spec.source == "synthetic":
        return generate(spec)
    path = Path(spec.path)
    if not path.is_absolute():
        path = Path(base_dir) / path
    if spec.source == "jsonl":
        return read_trace(path)
    if spec.source == "mooncake":
        return import_mooncake(path)
    raise ValueError(f"workload.source={spec.source!r} is unknown; known: {', '.join(SOURCES)}")


def assign_agents(trajs: list[Trajectory], agents: int) -> list[Trajectory]:
    if agents < 1:
        raise ValueError(f"agents must be >= 1, got {agents}")
    return [trajs[k % len(trajs)] for k in range(agents)]

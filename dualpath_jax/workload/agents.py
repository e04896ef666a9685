"""Agents of an experiment: N agents over a set of trajectories.

Rule for N > trajectories (offline RL rollouts start many agents on few tasks): agent k replays
trajectory k mod n with its own KV cache; agents never share KV blocks with each other.
"""

from __future__ import annotations

from pathlib import Path

from ..config import WorkloadSpec
from .mooncake import import_mooncake
from .synthetic import generate
from .trace import Trajectory, Turn, read_trace

SOURCES = ("synthetic", "jsonl", "mooncake")


def scale_turns(trajs: list[Trajectory], append: float, gen: float) -> list[Trajectory]:
    """Scale each turn's appended and generated tokens (>= 1 each); every turn then reloads the
    whole previous context, as in the paper's agent traces."""
    if append <= 0 or gen <= 0:
        raise ValueError(f"workload.append_scale={append} and workload.gen_scale={gen} must be > 0")
    out = []
    for tr in trajs:
        ctx, turns = 0, []
        for t in tr.turns:
            new = max(1, round(t.new * append))
            output = max(1, round(t.output * gen))
            turns.append(Turn(input=ctx + new, cached=ctx, output=output, t=t.t))
            ctx += new + output
        out.append(Trajectory(tr.id, tuple(turns)))
    return out


def load_trajectories(spec: WorkloadSpec, base_dir: str | Path = ".") -> list[Trajectory]:
    trajs = _load(spec, base_dir)
    if spec.append_scale != 1.0 or spec.gen_scale != 1.0:
        trajs = scale_turns(trajs, spec.append_scale, spec.gen_scale)
    return trajs


def _load(spec: WorkloadSpec, base_dir: str | Path) -> list[Trajectory]:
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

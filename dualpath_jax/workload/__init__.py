"""Agent workloads: synthetic trajectories, Mooncake import, the JSONL trace format."""

from .agents import assign_agents, load_trajectories
from .synthetic import generate, stats_for_mal, trajectory_stats
from .trace import TraceError, Trajectory, Turn, read_trace, write_trace

__all__ = [
    "Trajectory",
    "Turn",
    "TraceError",
    "read_trace",
    "write_trace",
    "generate",
    "stats_for_mal",
    "trajectory_stats",
    "load_trajectories",
    "assign_agents",
]

"""Scheduling policy: plain Python, no JAX, no clock. The simulator and the testbed both call it."""

from .dualpath import DualPathScheduler
from .intra import largest_chunk, pack_quota
from .least_loaded import LeastLoadedScheduler, choose_de, choose_pe
from .readside import read_fraction, split_fraction
from .round_robin import RoundRobinScheduler
from .state import EngineLoad, GroupLoad, Placement, RequestView, SchedContext

SCHEDULERS = {s.name: s for s in (LeastLoadedScheduler, RoundRobinScheduler, DualPathScheduler)}


def make_scheduler(name: str, dual_path: bool, split_read: bool = False):
    try:
        cls = SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"system.scheduler={name!r} is unknown; known: {', '.join(SCHEDULERS)}") from None
    return cls(dual_path=dual_path, split_read=split_read)


__all__ = [
    "EngineLoad",
    "GroupLoad",
    "Placement",
    "RequestView",
    "SchedContext",
    "LeastLoadedScheduler",
    "RoundRobinScheduler",
    "DualPathScheduler",
    "make_scheduler",
    "choose_de",
    "choose_pe",
    "read_fraction",
    "split_fraction",
    "largest_chunk",
    "pack_quota",
]

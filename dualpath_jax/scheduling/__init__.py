"""Scheduling policy: plain Python, no JAX, no clock. The simulator and the testbed both call it."""
from .least_loaded import LeastLoadedScheduler, choose_de, choose_pe, choose_read_side
from .state import EngineLoad, Placement, RequestView

SCHEDULERS = {"least_loaded": LeastLoadedScheduler}


def make_scheduler(name: str, dual_path: bool):
    try:
        return SCHEDULERS[name](dual_path=dual_path)
    except KeyError:
        raise ValueError(f"system.scheduler={name!r} is unknown; known: {', '.join(SCHEDULERS)}") from None


__all__ = ["EngineLoad", "Placement", "RequestView", "LeastLoadedScheduler", "make_scheduler",
           "choose_de", "choose_pe", "choose_read_side"]

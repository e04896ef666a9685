"""The online experiment: agents arriving over time, latency SLOs, capacity, working set."""

from .arrivals import poisson_arrivals
from .capacity import find_capacity
from .latency import request_latencies, slo_met
from .simulation import OnlineSimulation
from .think import think_sampler, trace_gaps

__all__ = [
    "poisson_arrivals",
    "think_sampler",
    "find_capacity",
    "request_latencies",
    "slo_met",
    "OnlineSimulation",
    "trace_gaps",
]

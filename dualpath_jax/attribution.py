"""Which floor sets a run's JCT: storage I/O, prefill compute, or the longest agent's turn chain.

Three lower bounds on the JCT of an offline run, each a time no schedule can beat:
- I/O: the bytes read from storage over the usable storage bandwidth of the nodes the system reads
  through (the PE nodes; with the dual path the DE nodes too) (`SystemMetrics.io_bound_s`);
- compute: the prefill GPU-seconds spent over the number of prefill GPUs (`compute_bound_s`);
- chain: an agent's turns run one after another, so its JCT is at least the sum of its turns'
  unloaded latencies (each turn's prefill alone in a step, its attention on one GPU and its MoE
  work shared by the node's GPUs, then each further output token one decode step of a batch of
  one); the chain floor is the largest such sum over the agents.
The largest floor is the one that sets the JCT; `jct_over_floor` says how far above it the run is
(queueing, imbalance, and what no floor counts, such as unoverlapped reads).
"""

from __future__ import annotations

from .costmodel import CostModel
from .metrics import SystemMetrics
from .workload.trace import Trajectory

FLOORS = ("io", "compute", "chain")


def chain_floor_s(agents: list[Trajectory], cost: CostModel) -> float:
    """The largest sum over one agent's turns of the turn's unloaded latency."""
    prefill: dict[tuple[int, int], float] = {}
    share = cost.cluster.gpus_per_node  # a PE node's GPUs share one turn's MoE work (sim/engines.py)
    best = 0.0
    for a in {id(a): a for a in agents}.values():
        total = 0.0
        for t in a.turns:
            key = (t.cached, t.new)
            if key not in prefill:
                attn, lin = cost.prefill_split(t.cached, t.new)
                prefill[key] = cost.prefill_step(attn + lin / share, 0.0)
            total += prefill[key] + cost.handoff_s
            if t.output > 1:
                keys = cost.counts.decode_keys(t.input)
                total += (t.output - 1) * cost.decode_step_time(1, keys, t.input)
        best = max(best, total)
    return best


def attribute(m: SystemMetrics, chain_s: float) -> dict:
    """The three floors (s), which one sets the JCT, and the JCT over that floor."""
    floors = {"io": m.io_bound_s, "compute": m.compute_bound_s, "chain": chain_s}
    bound = max(FLOORS, key=floors.get)
    return {
        "floors_s": floors,
        "set_by": bound,
        "jct_over_floor": m.jct_s / floors[bound] if floors[bound] > 0 else float("inf"),
    }


def describe(name: str, a: dict) -> str:
    f = a["floors_s"]
    return (
        f"{name}: floors I/O {f['io']:,.1f} s, compute {f['compute']:,.1f} s, chain {f['chain']:,.1f} s; "
        f"set by {a['set_by']}, JCT {a['jct_over_floor']:.2f}x that floor"
    )

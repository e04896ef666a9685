"""Which storage NIC reads a request's hit KV.

Paper: the whole read goes to the side (PE node or DE node) whose read queue is shorter.
Our extension (the paper's future work): split the read so both queues drain at the same time.
"""

from __future__ import annotations

from .state import RequestView, SchedContext


def shorter_queue(pe_node: int, de_node: int, ctx: SchedContext) -> float:
    """1.0 (all via the DE node) if its queue is strictly shorter, else 0.0; ties go to the PE."""
    return 1.0 if ctx.read_queue_s[de_node] < ctx.read_queue_s[pe_node] else 0.0


def split_fraction(pe_node: int, de_node: int, req: RequestView, ctx: SchedContext) -> float:
    """Share x of the hit bytes H for the DE node so both queues finish together:
    q_pe + (1 - x) H / b = q_de + x H / b  ->  x = (q_pe - q_de + H / b) / (2 H / b), clipped."""
    if pe_node == de_node or req.hit_bytes <= 0:
        return 0.0
    h = req.hit_bytes / ctx.snic_bytes_per_s
    x = (ctx.read_queue_s[pe_node] - ctx.read_queue_s[de_node] + h) / (2 * h)
    return min(1.0, max(0.0, x))


def read_fraction(
    pe_node: int, de_node: int, req: RequestView, ctx: SchedContext, *, dual_path: bool, split: bool
) -> float:
    if not dual_path:
        return 0.0
    if split:
        return split_fraction(pe_node, de_node, req, ctx)
    return shorter_queue(pe_node, de_node, ctx)

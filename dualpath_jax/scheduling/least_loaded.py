"""A first, simple inter-engine scheduler: least-loaded engines, shorter read queue.

PE: the prefill engine with the fewest unfinished tokens. DE: among decode engines whose HBM can
hold the request, the one with the fewest unfinished tokens; none -> the request waits. Read side:
the PE node, or (dual path) whichever of the PE node and the DE node has the shorter storage read
queue (ties go to the PE node). The paper's full scheduler builds on these same views.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .state import EngineLoad, Placement, RequestView


def choose_pe(pes: Sequence[EngineLoad]) -> EngineLoad:
    return min(pes, key=lambda e: (e.tok, e.seq, e.id))


def choose_de(des: Sequence[EngineLoad], req: RequestView) -> EngineLoad | None:
    fits = [e for e in des if e.free_kv >= req.kv_bytes]
    return min(fits, key=lambda e: (e.tok, e.seq, e.id)) if fits else None


def choose_read_side(pe: EngineLoad, de: EngineLoad, read_queue: Mapping[int, float],
                     dual_path: bool) -> tuple[int, bool]:
    """(node, on_de): the node whose storage NIC reads the hit KV."""
    if dual_path and read_queue[de.node] < read_queue[pe.node]:
        return de.node, True
    return pe.node, False


class LeastLoadedScheduler:
    name = "least_loaded"

    def __init__(self, dual_path: bool):
        self.dual_path = dual_path

    def place(self, req: RequestView, pes: Sequence[EngineLoad], des: Sequence[EngineLoad],
              read_queue: Mapping[int, float]) -> Placement | None:
        de = choose_de(des, req)
        if de is None:
            return None
        pe = choose_pe(pes)
        node, on_de = choose_read_side(pe, de, read_queue, self.dual_path)
        return Placement(pe=pe.id, de=de.id, read_node=node, read_on_de=on_de)

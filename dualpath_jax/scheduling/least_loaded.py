"""A simple inter-engine scheduler: least-loaded engines.

PE: the prefill engine with the fewest unfinished tokens. DE: among decode engines whose HBM can
hold the request, the one with the fewest unfinished tokens; none -> the queue waits (FIFO).
"""
from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from .readside import read_fraction
from .state import EngineLoad, GroupLoad, Placement, RequestView, SchedContext


def choose_pe(pes: Sequence[EngineLoad]) -> EngineLoad:
    return min(pes, key=lambda e: (e.tok, e.seq, e.id))


def choose_de(des: Sequence[EngineLoad], req: RequestView) -> EngineLoad | None:
    fits = [e for e in des if e.free_kv >= req.kv_bytes]
    return min(fits, key=lambda e: (e.tok, e.seq, e.id)) if fits else None


class LeastLoadedScheduler:
    name = "least_loaded"

    def __init__(self, dual_path: bool, split_read: bool = False):
        self.dual_path, self.split_read = dual_path, split_read

    def place(self, waiting: Iterable[RequestView], pe_groups: Sequence[GroupLoad],
              de_groups: Sequence[GroupLoad], ctx: SchedContext) -> Iterator[Placement]:
        pes = [e for g in pe_groups for e in g.engines]
        des = [e for g in de_groups for e in g.engines]
        for req in waiting:
            de = choose_de(des, req)
            if de is None:
                return
            pe = choose_pe(pes)
            yield Placement(pe.id, de.id, read_fraction(pe.node, de.node, req, ctx,
                                                        dual_path=self.dual_path, split=self.split_read))

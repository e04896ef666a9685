"""A simple inter-engine scheduler: least-loaded engines.

PE: the prefill engine with the fewest unfinished tokens. DE: among decode engines whose HBM can
hold the request, the one with the fewest unfinished tokens; none -> the queue waits (FIFO).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from .readside import read_fraction
from .state import EngineLoad, GroupLoad, Placement, RequestView, SchedContext, least_loaded_group, load_key


def choose_pe(groups: Sequence[GroupLoad]) -> EngineLoad:
    return least_loaded_group(groups).least


def choose_de(groups: Sequence[GroupLoad], req: RequestView) -> EngineLoad | None:
    """Least-loaded decode engine with HBM room (a group's least-loaded engine, when it has room,
    is that group's best; otherwise its engines are searched)."""
    top = least_loaded_group(groups).least
    if top.free_kv >= req.kv_bytes:
        return top  # the least-loaded engine overall has room
    best = None
    for g in groups:
        if g.free_kv < req.kv_bytes:
            continue
        e = g.least
        if e.free_kv < req.kv_bytes:
            fits = [x for x in g.engines if x.free_kv >= req.kv_bytes]
            if not fits:
                continue
            e = min(fits, key=load_key)
        if best is None or load_key(e) < load_key(best):
            best = e
    return best


class LeastLoadedScheduler:
    name = "least_loaded"

    def __init__(self, dual_path: bool, split_read: bool = False):
        self.dual_path, self.split_read = dual_path, split_read

    def place(
        self,
        waiting: Iterable[RequestView],
        pe_groups: Sequence[GroupLoad],
        de_groups: Sequence[GroupLoad],
        ctx: SchedContext,
    ) -> Iterator[Placement]:
        for req in waiting:
            de = choose_de(de_groups, req)
            if de is None:
                return
            pe = choose_pe(pe_groups)
            yield Placement(
                pe.id, de.id, read_fraction(pe.node, de.node, req, ctx, dual_path=self.dual_path, split=self.split_read)
            )

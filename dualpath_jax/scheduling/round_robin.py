"""Round-robin baseline: engines in turn, skipping decode engines without HBM room."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from .readside import read_fraction
from .state import GroupLoad, Placement, RequestView, SchedContext


class RoundRobinScheduler:
    name = "round_robin"

    def __init__(self, dual_path: bool, split_read: bool = False):
        self.dual_path, self.split_read = dual_path, split_read
        self._next_pe = 0
        self._next_de = 0

    def place(
        self,
        waiting: Iterable[RequestView],
        pe_groups: Sequence[GroupLoad],
        de_groups: Sequence[GroupLoad],
        ctx: SchedContext,
    ) -> Iterator[Placement]:
        pes = [e for g in pe_groups for e in g.engines]
        des = [e for g in de_groups for e in g.engines]
        for req in waiting:
            for k in range(len(des)):
                de = des[(self._next_de + k) % len(des)]
                if de.free_kv >= req.kv_bytes:
                    self._next_de = (self._next_de + k + 1) % len(des)
                    break
            else:
                return
            pe = pes[self._next_pe]
            self._next_pe = (self._next_pe + 1) % len(pes)
            yield Placement(
                pe.id, de.id, read_fraction(pe.node, de.node, req, ctx, dual_path=self.dual_path, split=self.split_read)
            )

"""DualPath's inter-engine scheduler (PAPER.md section 5).

PE choice, FIFO over the waiting queue: engines with tok_e > beta are overloaded and skipped; among
the rest prefer those whose node's storage read queue drains within alpha (its SNIC is about to go
idle) and take the fewest tok_e; otherwise the fewest tok_e among the long-queue ones; none -> stop.

DE choice. Phase 1: the DE group (node) with the smallest total tok_e. Phase 2, inside it:
R = the FIFO prefix of the queue that fits the group's free HBM; Z = 1.05 * (sum len(R) + sum
tok_e) / |engines|; for each r in R, among engines with room prefer tok_e + len(r) <= Z and take the
fewest seq_e, else the fewest tok_e; none has room -> stop. Then phase 1 again for what is left.

Read side: the shorter read queue of the PE node and the DE node (or a split, our extension).
"""

from __future__ import annotations

from itertools import islice
from operator import attrgetter
from typing import Iterator, Sequence

from .readside import read_fraction
from .state import EngineLoad, GroupLoad, Placement, RequestView, SchedContext, least_loaded_group, load_key

Z_SLACK = 1.05


_group_tok = attrgetter("tok")


def choose_pe(groups: Sequence[GroupLoad], ctx: SchedContext) -> EngineLoad | None:
    # A group's least-loaded engine is its best candidate; if it is overloaded, all of them are.
    queue, alpha, beta = ctx.read_queue_s, ctx.alpha_s, ctx.beta_tokens
    top = least_loaded_group(groups)
    if top.least.tok > beta:
        return None  # every engine is overloaded: stop fetching
    if queue[top.node] <= alpha:
        return top.least  # the least-loaded engine overall sits on a short-queue node
    best = None
    for g in groups:
        if g.least.tok <= beta and queue[g.node] <= alpha and (best is None or g.least_key < best.least_key):
            best = g
    return (best or top).least


def choose_de_group(groups: Sequence[GroupLoad]) -> GroupLoad:
    return min(groups, key=_group_tok)  # ties: the first (lowest) node


def choose_de_in_group(group: GroupLoad, req: RequestView, z: float) -> EngineLoad | None:
    # One pass (it runs on every placement): among engines with room, the fewest seq_e of those
    # under Z, else the fewest tok_e; keys end in the engine id, so there are no ties.
    kv_bytes, tokens = req.kv_bytes, req.tokens
    under = under_key = room = room_key = None
    for e in group.engines:
        if e.free_kv < kv_bytes:
            continue
        if e.tok + tokens <= z:
            key = (e.seq, e.tok, e.id)
            if under is None or key < under_key:
                under, under_key = e, key
        elif under is None:
            key = load_key(e)
            if room is None or key < room_key:
                room, room_key = e, key
    return under if under is not None else room


def fitting_prefix(waiting: Sequence[RequestView], start: int, free: float) -> list[RequestView]:
    """The requests from waiting[start:] that fit, in FIFO order, into `free` bytes."""
    out, used = [], 0.0
    for req in islice(waiting, start, None):
        if used + req.kv_bytes > free:
            break
        used += req.kv_bytes
        out.append(req)
    return out


class DualPathScheduler:
    name = "dualpath"

    def __init__(self, dual_path: bool, split_read: bool = False):
        self.dual_path, self.split_read = dual_path, split_read

    def place(
        self,
        waiting: Sequence[RequestView],
        pe_groups: Sequence[GroupLoad],
        de_groups: Sequence[GroupLoad],
        ctx: SchedContext,
    ) -> Iterator[Placement]:
        """`waiting` is read, never changed; placements are for waiting[0], waiting[1], ..."""
        i = 0
        while i < len(waiting):
            group = choose_de_group(de_groups)
            batch = fitting_prefix(waiting, i, group.free_kv)
            if not batch:
                return
            z = Z_SLACK * (sum(r.tokens for r in batch) + group.tok) / len(group.engines)
            for req in batch:
                de = choose_de_in_group(group, req, z)
                if de is None:
                    return
                pe = choose_pe(pe_groups, ctx)
                if pe is None:
                    return
                yield Placement(
                    pe.id,
                    de.id,
                    read_fraction(pe.node, de.node, req, ctx, dual_path=self.dual_path, split=self.split_read),
                )
                i += 1

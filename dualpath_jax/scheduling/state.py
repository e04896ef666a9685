"""What the policy sees: plain, clock-free views of engines, nodes and requests.

Both worlds fill these in: the simulator from virtual-time state, the testbed from real engines.
The caller owns the state: after each placement a scheduler yields, the caller applies it (engine
loads, read queues) before asking for the next one, so every choice sees the ones before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from operator import attrgetter
from typing import Mapping, NamedTuple


@dataclass(slots=True)  # slots: read and written on every placement and release
class EngineLoad:
    """One engine (one DP rank) as the scheduler sees it."""

    id: int
    node: int
    role: str  # "prefill" | "decode"
    seq: int = 0  # unfinished requests assigned here
    tok: int = 0  # their total tokens
    free_kv: float = 0.0  # decode: HBM bytes free for KV (prefill: unused)


# Order of "least loaded": fewest tokens, then fewest requests, then lowest id.
load_key = attrgetter("tok", "seq", "id")


@dataclass(slots=True)
class GroupLoad:
    """The engines of one node (a scheduling group with one leader), with running totals.

    Change engine loads through `add` so the totals and the cached least-loaded engine stay true.
    """

    node: int
    engines: list[EngineLoad]
    tok: int = 0  # sum of the engines' tok
    free_kv: float = 0.0  # sum of the engines' free_kv
    least: EngineLoad | None = field(default=None, repr=False, compare=False)  # least-loaded engine
    least_key: tuple = field(default=(), repr=False, compare=False)  # its load_key
    # set by `RankedGroups`: its heap, which hears of every new least_key, and this group's index
    rank: list | None = field(default=None, repr=False, compare=False)
    index: int = field(default=0, repr=False, compare=False)

    def __post_init__(self):
        self._refresh()

    def _refresh(self) -> None:
        self.least = min(self.engines, key=load_key)
        self.least_key = load_key(self.least)

    def add(self, e: EngineLoad, tokens: int, kv_bytes: float = 0.0, requests: int = 1) -> None:
        """Assign (positive) or release (negative) a request's load on engine `e` of this group."""
        e.tok += tokens
        e.seq += requests
        e.free_kv -= kv_bytes
        self.tok += tokens
        self.free_kv -= kv_bytes
        key = load_key(e)
        if e is self.least:
            if key > self.least_key:  # the least-loaded engine got busier: look again
                self._refresh()
            else:
                self.least_key = key
        elif key < self.least_key:
            self.least, self.least_key = e, key
        else:
            return  # the least-loaded engine is as it was
        if self.rank is not None:
            heappush(self.rank, (self.least_key, self.index))


class RankedGroups(list):
    """A list of groups that also answers `least()` = min(groups, key=least_key) from a heap of
    (least_key, index) that every `GroupLoad.add` feeds, in O(log n) instead of a scan (the PE
    choice asks on every placement; a 48-node cluster made the scan a hot spot). Keys end in an
    engine id, so they are unique and the answer is the scan's."""

    def __init__(self, groups):
        super().__init__(groups)
        for i, g in enumerate(self):
            g.index = i
        self._rebuild()

    def _rebuild(self) -> None:
        self.heap = [(g.least_key, i) for i, g in enumerate(self)]
        heapify(self.heap)
        for g in self:
            g.rank = self.heap

    def least(self) -> GroupLoad:
        heap = self.heap
        if len(heap) > 4 * len(self) + 64:  # mostly stale entries: start over
            self._rebuild()
            heap = self.heap
        while True:
            key, i = heap[0]
            if self[i].least_key == key:
                return self[i]
            heappop(heap)  # stale: that group's least-loaded engine has changed since


_least_key = attrgetter("least_key")


def least_loaded_group(groups) -> GroupLoad:
    """The group whose least-loaded engine is the least loaded of all (from the heap of
    `RankedGroups`, what the dispatcher passes, or a scan of a plain sequence)."""
    return groups.least() if isinstance(groups, RankedGroups) else min(groups, key=_least_key)


@dataclass(frozen=True)
class RequestView:
    """One turn waiting to be placed."""

    tokens: int  # prompt + generated tokens: what it will hold on the DE
    hit_tokens: int  # cached prefix to load from storage
    kv_bytes: float  # KV bytes it will hold on the DE (tokens * bytes per token)
    hit_bytes: float = 0.0  # bytes of the cached prefix


@dataclass(frozen=True)
class SchedContext:
    """Cluster-wide facts the policy reads. Read queues are in seconds of reading left."""

    read_queue_s: Mapping[int, float]  # node -> seconds until its SNIC drains its read queue
    snic_bytes_per_s: float
    alpha_s: float = 3.0  # a node whose queue drains within alpha_s is "about to go idle"
    beta_tokens: float = float("inf")  # a PE with more unfinished tokens is overloaded


class Placement(NamedTuple):  # a tuple: one per placement, on the simulator's hot path
    pe: int  # engine id
    de: int  # engine id
    de_read_fraction: float  # share of the hit KV read through the DE node (0: all via PE node)

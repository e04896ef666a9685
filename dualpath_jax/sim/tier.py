"""SGL(MC)'s DRAM store tier (Mooncake Store) in front of storage: an LRU over agents' KV.

Our model of the baseline (assumptions, PAPER.md section 6): every node lends `dram_tier_tb` of DRAM
to one pooled store; an agent's whole KV is either resident or not; a resident prefix is read over
the compute network instead of the storage NIC; a turn's KV is written through to the tier.
"""

from __future__ import annotations

from collections import OrderedDict


class DramTier:
    def __init__(self, capacity_bytes: float):
        self.capacity = capacity_bytes
        self.used = 0.0
        self._lru: OrderedDict[int, float] = OrderedDict()  # agent -> bytes resident
        self.hit_bytes = 0.0

    def lookup(self, agent: int, hit_bytes: float) -> float:
        """Bytes of this agent's `hit_bytes` prefix served from DRAM (all or nothing)."""
        if agent in self._lru and self._lru[agent] >= hit_bytes:
            self._lru.move_to_end(agent)
            self.hit_bytes += hit_bytes
            return hit_bytes
        return 0.0

    def store(self, agent: int, nbytes: float) -> None:
        self.used -= self._lru.pop(agent, 0.0)
        if nbytes > self.capacity:
            return
        while self.used + nbytes > self.capacity:
            _, evicted = self._lru.popitem(last=False)
            self.used -= evicted
        self._lru[agent] = nbytes
        self.used += nbytes

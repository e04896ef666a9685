"""Each node's DRAM staging buffer (cost model v2): the PE buffer and the DE buffer of the design.

A turn's storage read lands in the buffer of the node it reads through, so it takes that many bytes
of the buffer when it is issued and gives them back when the turn's prefill ends (by then every layer
block has gone to the PE GPU). A read that does not fit waits: in FIFO order per node, so a large
read is not starved by smaller ones behind it. What the DE buffer stages for the DE GPU after the
prefill (the PE's KV on its way to decode) is not counted: it leaves within the handoff.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from .turn import SimTurn


class DramBuffers:
    def __init__(self, capacity_bytes: float, nodes: int, node_of: list[int], start: Callable[[SimTurn], None]):
        self.capacity = capacity_bytes
        self.free = [capacity_bytes] * nodes
        self.queued = [0] * nodes  # waiting reads per node: a new read there queues behind them
        self.nodes_waiting = 0  # nodes with a waiting read
        self.node_of, self.start = node_of, start
        self.waiting: deque[SimTurn] = deque()
        self.stalled = 0  # reads that had to wait for room
        self.stall_s = 0.0  # their total wait
        self.peak = 0.0  # the most any node's buffer held

    def _needs(self, turn: SimTurn) -> list[tuple[int, float]]:
        """(node, bytes) of the buffers the turn's read lands in."""
        plan, node = turn.plan, self.node_of
        pe, de = node[turn.pe], node[turn.de]
        if pe == de:
            return [(pe, plan.read_pe_bytes + plan.read_de_bytes)]
        return [(n, b) for n, b in ((pe, plan.read_pe_bytes), (de, plan.read_de_bytes)) if b > 0]

    def _fits(self, needs) -> bool:
        return all(b <= self.free[n] for n, b in needs)

    def _take(self, needs) -> None:
        for node, nbytes in needs:
            self.free[node] -= nbytes
            self.peak = max(self.peak, self.capacity - self.free[node])

    def admit(self, turn: SimTurn) -> bool:
        """Take room for `turn`'s read now, or queue it (False: `start` is called once it fits)."""
        needs = self._needs(turn)
        if all(self.queued[n] == 0 for n, _ in needs) and self._fits(needs):
            self._take(needs)
            return True
        self.waiting.append(turn)
        self._queue(needs, 1)
        self.stalled += 1
        return False

    def _queue(self, needs, sign: int) -> None:
        for n, _ in needs:
            self.queued[n] += sign
            if self.queued[n] == (1 if sign > 0 else 0):
                self.nodes_waiting += sign

    def release(self, turn: SimTurn, now: float) -> None:
        """`turn`'s prefill is done: free its room and start the waiting reads that now fit, in
        FIFO order; the scan stops once every node with a waiting read has one that does not fit."""
        for node, nbytes in self._needs(turn):
            self.free[node] += nbytes
        blocked: set[int] = set()  # a node whose oldest waiting read still waits keeps its order
        started = []
        for i, t in enumerate(self.waiting):
            if len(blocked) == self.nodes_waiting:
                break  # no later read can start: each needs a blocked node
            needs = self._needs(t)
            if any(n in blocked for n, _ in needs) or not self._fits(needs):
                blocked.update(n for n, _ in needs)
                continue
            self._take(needs)
            self._queue(needs, -1)
            self.stall_s += now - t.placed
            started.append(i)
            self.start(t)
        for i in reversed(started):
            del self.waiting[i]

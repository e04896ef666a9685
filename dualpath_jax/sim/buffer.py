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
        # each node's waiting reads, oldest first; a read needing two nodes waits in both queues and
        # starts only at the head of each, so a node keeps its FIFO order and a release looks only
        # at the heads of the nodes it touches (a scan of every waiting read was quadratic at 48K
        # agents)
        self.queues: list[deque[tuple[int, SimTurn]]] = [deque() for _ in range(nodes)]
        self.node_of, self.start = node_of, start
        self.seq = 0  # arrival order of waiting reads: those a release starts start in this order
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
        free = self.free
        for node, nbytes in needs:
            left = free[node] = free[node] - nbytes
            if self.capacity - left > self.peak:
                self.peak = self.capacity - left

    def admit(self, turn: SimTurn) -> bool:
        """Take room for `turn`'s read now, or queue it (False: `start` is called once it fits)."""
        needs = turn.staged = self._needs(turn)  # kept: the plan does not change until the release
        queues, free = self.queues, self.free
        for n, b in needs:
            if queues[n] or b > free[n]:  # others wait first, or no room
                break
        else:
            self._take(needs)
            return True
        for n, _ in needs:
            self.queues[n].append((self.seq, turn))
        self.seq += 1
        self.stalled += 1
        return False

    def release(self, turn: SimTurn, now: float) -> None:
        """`turn`'s prefill is done: free its room and start the waiting reads that now fit. A read
        starts once it heads the queue of every node it needs and fits there; starting it uncovers
        the next heads of those nodes, which are tried in turn."""
        touched = []
        for node, nbytes in turn.staged:
            self.free[node] += nbytes
            touched.append(node)
        started = []
        while touched:
            q = self.queues[touched.pop()]
            if not q:
                continue
            seq, t = q[0]
            needs = t.staged
            if any(self.queues[n][0][1] is not t for n, _ in needs) or not self._fits(needs):
                continue
            self._take(needs)
            for n, _ in needs:
                self.queues[n].popleft()
                touched.append(n)
            started.append((seq, t))
        for _, t in sorted(started, key=lambda st: st[0]):  # in arrival order, as one FIFO scan would
            self.stall_s += now - t.placed
            self.start(t)

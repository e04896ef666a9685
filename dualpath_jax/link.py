"""One link primitive for both worlds: a fluid FIFO server with an injected clock.

Transfers are served one after another at the link's full rate: a transfer of n bytes booked at
time t ends at max(t, when the link is next free) + n / rate. The simulator drives it in virtual
seconds (its event loop's clock), the testbed in wall-clock seconds (`time.perf_counter`, through
`kvstore.Throttle`, which adds a lock and the waiting). What the scheduler sees as a node's read
queue is `drain_s`: how long the link needs to move what is booked on it.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping, Sequence

import numpy as np


class FluidLink:
    __slots__ = ("name", "bw", "clock", "burst_s", "free_at", "bytes", "busy")

    def __init__(self, name: str, bytes_per_s: float, clock: Callable[[], float], burst_s: float = 0.0):
        if not bytes_per_s > 0:
            raise ValueError(f"{name}: bytes_per_s must be > 0, got {bytes_per_s!r}")
        self.name, self.bw, self.clock, self.burst_s = name, float(bytes_per_s), clock, burst_s
        self.free_at = clock()  # when the link is next idle
        self.bytes = 0.0  # moved in total
        self.busy = 0.0  # seconds spent moving

    def transfer(self, nbytes: float, at: float | None = None) -> float:
        """Book `nbytes`, not starting before `at` (default: now); returns when the transfer ends.
        An idle link lends up to `burst_s` of the time it sat idle (a token bucket's burst)."""
        now = self.clock() if at is None else at
        if nbytes <= 0:
            return now
        dt = nbytes / self.bw
        start, free = now - self.burst_s, self.free_at
        end = self.free_at = (free if free > start else start) + dt  # max(), inlined: a hot path
        self.bytes += nbytes
        self.busy += dt
        return end

    def drain_s(self, now: float | None = None) -> float:
        """Seconds until the link has moved what is booked on it."""
        return max(0.0, self.free_at - (self.clock() if now is None else now))


class LoggedLink(FluidLink):
    """A `FluidLink` that keeps when each transfer moved (its busy spans, in order): what the
    simulator's metrics need for a link's traffic over time windows."""

    __slots__ = ("starts", "ends")

    def __init__(self, name: str, bytes_per_s: float, clock: Callable[[], float], burst_s: float = 0.0):
        super().__init__(name, bytes_per_s, clock, burst_s)
        self.starts, self.ends = array("d"), array("d")

    def transfer(self, nbytes: float, at: float | None = None) -> float:
        end = FluidLink.transfer(self, nbytes, at)
        if nbytes > 0:
            self.starts.append(end - nbytes / self.bw)
            self.ends.append(end)
        return end

    def bytes_by_window(self, edges) -> np.ndarray:
        """Bytes moved in each window [edges[i], edges[i+1])."""
        edges = np.asarray(edges, dtype=float)
        if not self.starts:
            return np.zeros(max(len(edges) - 1, 0))
        s, e = np.frombuffer(self.starts), np.frombuffer(self.ends)
        done = np.concatenate(([0.0], np.cumsum(e - s)))  # busy seconds of the first k transfers
        k = np.searchsorted(e, edges, side="right")  # transfers over by each edge
        partial = np.where(k < len(s), np.clip(edges - s[np.minimum(k, len(s) - 1)], 0.0, None), 0.0)
        moved = (done[k] + partial) * self.bw
        return np.diff(moved)


class DrainSeconds(Mapping):
    """node -> seconds until its link drains, evaluated when asked (a scheduler's read queues)."""

    def __init__(self, links: Sequence[FluidLink]):
        self._links = links

    def __getitem__(self, node: int) -> float:
        link = self._links[node]  # drain_s, inlined: the schedulers ask this on every placement
        left = link.free_at - link.clock()
        return left if left > 0.0 else 0.0  # max(0.0, left) without the call

    def __iter__(self):
        return iter(range(len(self._links)))

    def __len__(self) -> int:
        return len(self._links)

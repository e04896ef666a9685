"""Links in virtual time: a fluid FIFO server per link direction."""

from __future__ import annotations


class FifoLink:
    """Transfers are served one after another at the full bandwidth.

    The backlog (bytes not yet moved) is what the scheduler sees as a storage read queue.
    """

    __slots__ = ("name", "bw", "free_at", "bytes", "busy")

    def __init__(self, name: str, bytes_per_s: float):
        self.name, self.bw = name, bytes_per_s
        self.free_at = 0.0
        self.bytes = 0.0  # moved in total
        self.busy = 0.0  # seconds spent moving

    def transfer(self, now: float, nbytes: float) -> float:
        """Enqueue `nbytes`, not starting before `now`; returns the time the transfer completes."""
        if nbytes <= 0:
            return now
        dt = nbytes / self.bw
        self.free_at = max(now, self.free_at) + dt
        self.bytes += nbytes
        self.busy += dt
        return self.free_at

    def backlog(self, now: float) -> float:
        return max(0.0, self.free_at - now) * self.bw

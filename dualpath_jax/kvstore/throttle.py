"""Bandwidth limiter for one emulated NIC: a thread-safe token bucket shared by every transfer.

Used to emulate, on one host, a node's storage NIC (e.g. 400 Gbps = 50 GB/s). A transfer of n bytes
reserves n / rate seconds of the link, starting when the link is next free (or now, if idle, plus
whatever burst credit idle time has built up, at most `burst_bytes`). `acquire(n)` blocks until the
reservation ends, i.e. until the last byte would have crossed the emulated link. For overlap with
real I/O, call `reserve(n)` before the I/O and `wait(deadline)` after it: the transfer then takes
max(real time, link time), as a pipelined NIC would. The link itself is the simulator's
`dualpath_jax.link.FluidLink`, on the wall clock.
"""

from __future__ import annotations

import threading
import time

from ..link import FluidLink


class Throttle:
    def __init__(self, bytes_per_s: float, burst_bytes: float = 0.0, name: str = "nic") -> None:
        if not bytes_per_s > 0:
            raise ValueError(f"bytes_per_s: must be > 0, got {bytes_per_s!r}")
        if burst_bytes < 0:
            raise ValueError(f"burst_bytes: must be >= 0, got {burst_bytes!r}")
        self.rate = float(bytes_per_s)
        self.name = name
        self._lock = threading.Lock()
        self._link = FluidLink(name, self.rate, time.perf_counter, burst_s=float(burst_bytes) / self.rate)
        # Transfers that ended after their link time (the real I/O, not this link, set the pace)
        # and by how much in total: see `settle`.
        self.transfers = 0
        self.late = 0
        self.late_s = 0.0

    @classmethod
    def gbps(cls, gbit_per_s: float, **kw) -> "Throttle":
        """Throttle from a link speed in Gbit/s, e.g. Throttle.gbps(400) for a 400 Gbps NIC."""
        return cls(gbit_per_s * 1e9 / 8, **kw)

    def reserve(self, nbytes: int) -> float:
        """Book nbytes on the link; return the perf_counter() time at which they have crossed it."""
        if nbytes < 0:
            raise ValueError(f"nbytes: must be >= 0, got {nbytes}")
        with self._lock:
            return self._link.transfer(nbytes)

    @property
    def total_bytes(self) -> int:
        return int(self._link.bytes)

    @staticmethod
    def wait(deadline: float) -> None:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            time.sleep(left)

    def settle(self, deadline: float) -> None:
        """`wait(deadline)` for a transfer whose real I/O has just ended; counts it as late when
        that I/O outlasted the link time (the emulated link was not what limited it)."""
        over = time.perf_counter() - deadline
        with self._lock:
            self.transfers += 1
            if over > 0:
                self.late += 1
                self.late_s += over
        self.wait(deadline)

    def acquire(self, nbytes: int) -> None:
        """Block until nbytes have crossed the emulated link."""
        self.wait(self.reserve(nbytes))

    def __repr__(self) -> str:
        return f"Throttle({self.name!r}, {self.rate / 1e9:.3f} GB/s)"

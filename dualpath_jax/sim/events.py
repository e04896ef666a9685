"""A minimal discrete-event loop in virtual seconds, which refuses to spin.

Liveness: virtual time must advance. An event may not be scheduled before now (or at NaN), at
most `max_same_time` events may run at one timestamp, and at most `max_events` in all (the
simulation sizes both from its workload: a turn costs about 4 events; `allow` adds budget for a
component whose events advance time by construction, like a periodic sampler). A violation raises
`LivelockError` naming the event's function, instead of running forever.
"""

from __future__ import annotations

import heapq
from typing import Callable


class LivelockError(RuntimeError):
    """The event loop stopped advancing virtual time; the message names the component."""


def _name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", repr(fn))


class EventLoop:
    def __init__(self, max_events: int | None = None, max_same_time: int | None = None):
        self.now = 0.0
        self.events = 0
        self.max_events = max_events
        self.max_same_time = max_same_time
        self._queue: list = []
        self._seq = 0  # ties run in scheduling order: deterministic

    def at(self, time: float, fn: Callable, *args) -> None:
        if not time >= self.now:  # also NaN
            raise LivelockError(f"{_name(fn)} was scheduled at t={time!r} s, before now ({self.now!r} s)")
        heapq.heappush(self._queue, (time, self._seq, fn, args))
        self._seq += 1

    def allow(self, events: int) -> None:
        """Raise the total-events budget (for events that advance time by construction)."""
        if self.max_events is not None:
            self.max_events += events

    def run(self) -> None:
        q, pop, n = self._queue, heapq.heappop, 0
        same_cap = self.max_same_time if self.max_same_time is not None else float("inf")
        total_cap = self.max_events if self.max_events is not None else float("inf")
        same, last = 0, self.now
        left = total_cap - self.events  # events this run may take before the budget is checked again
        try:
            while q:
                t, _, fn, args = pop(q)
                n += 1
                if t == last:
                    same += 1
                    if same > same_cap:
                        raise LivelockError(
                            f"{same:,} events ran at t={t:.6g} s without virtual time "
                            f"advancing (the last: {_name(fn)}): a component reschedules "
                            f"itself without delay"
                        )
                else:
                    same, last = 0, t
                if n > left:
                    total_cap = self.max_events if self.max_events is not None else total_cap
                    left = total_cap - self.events  # `allow` may have raised it
                    if n > left:
                        raise LivelockError(
                            f"{self.events + n:,} events exceed the workload's budget of "
                            f"{total_cap:,} (the last: {_name(fn)} at t={t:.6g} s)"
                        )
                self.now = t
                fn(*args)
        finally:
            self.events += n

"""A minimal discrete-event loop in virtual seconds."""
from __future__ import annotations

import heapq
from typing import Callable


class EventLoop:
    def __init__(self):
        self.now = 0.0
        self.events = 0
        self._queue: list = []
        self._seq = 0  # ties run in scheduling order: deterministic

    def at(self, time: float, fn: Callable, *args) -> None:
        heapq.heappush(self._queue, (time, self._seq, fn, args))
        self._seq += 1

    def run(self) -> None:
        q, pop, n = self._queue, heapq.heappop, 0
        try:
            while q:
                self.now, _, fn, args = pop(q)
                n += 1
                fn(*args)
        finally:
            self.events += n

"""Bounded in-flight window for block I/O, and batches of block tasks resolved as one future.

Issuing every read of a request at once was measured 30-60% slower on warm reads than a bounded
window on this project's CPU machine, and cold reads saturated the disk with 4-16 in flight; so all
block I/O of a store goes through one pool of `window` workers, each doing one block at a time.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import Any, Callable, Sequence

DEFAULT_IO_WINDOW = 16


class IOWindow:
    def __init__(self, window: int = DEFAULT_IO_WINDOW, name: str = "kvstore-io") -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise ValueError(f"io_window: must be a positive integer, got {window!r}")
        self.window = window
        self._pool = cf.ThreadPoolExecutor(max_workers=window, thread_name_prefix=name)

    def batch(self, tasks: Sequence[Callable[[], Any]], finalize: Callable[[list[cf.Future]], Any]) -> cf.Future:
        """Run tasks at most `window` at a time; the returned future resolves to finalize(futures)
        once every task has finished (successfully or not). finalize runs exactly once."""
        out: cf.Future = cf.Future()
        futs: list[cf.Future | None] = [None] * len(tasks)
        remaining = [len(tasks)]
        lock = threading.Lock()

        def finish() -> None:
            try:
                out.set_result(finalize(futs))  # type: ignore[arg-type]
            except BaseException as e:  # noqa: BLE001 - hand every failure to the caller
                out.set_exception(e)

        if not tasks:
            finish()
            return out

        def done(i: int, f: cf.Future) -> None:
            futs[i] = f
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                finish()

        for i, t in enumerate(tasks):
            self._pool.submit(t).add_done_callback(lambda f, i=i: done(i, f))
        return out

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)

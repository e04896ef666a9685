"""Device-to-host copies that do not hold up the engines' threads.

On an H200 host (jax 0.11), a copy of one 37.7 MB KV layer to pageable host memory
(`jax.device_get`, `np.asarray`) ran at 1.2 GB/s; `copy_to_host_async` held its caller for 23 ms;
and either held up GPU work dispatched from other threads: a 20.1 ms engine step took 38.6 ms
while a send thread ran `device_get` (results/bench/host_copies_h200.txt). A `device_put` into the
device's `pinned_host` memory is a DMA (1.4 ms, 26 GB/s) that returns at once and left the step at
20.5 ms; `np.asarray` of its result is then a plain host memcpy on whichever thread asks.
"""

from __future__ import annotations

from functools import lru_cache

import jax
import numpy as np


@lru_cache(maxsize=None)
def _pinned(device) -> jax.sharding.Sharding | None:
    kinds = {m.kind for m in device.addressable_memories()}
    if "pinned_host" not in kinds:
        return None
    return jax.sharding.SingleDeviceSharding(device, memory_kind="pinned_host")


def start_to_host(x: jax.Array) -> jax.Array:
    """Start x's copy into pinned host memory (x itself where the device has none)."""
    pinned = _pinned(next(iter(x.devices())))
    return x if pinned is None else jax.device_put(x, pinned)


def to_numpy(x: jax.Array) -> np.ndarray:
    """x (from `start_to_host`) as a numpy array, once its copy has landed."""
    return np.asarray(x)

"""Device-to-host copies that do not hold up the engines' threads.

On the GPU (jax 0.11), a copy to pageable host memory (`jax.device_get`, `np.asarray`, even
`copy_to_host_async`) ran at about 1 GB/s for one KV layer and held the calling thread, and with
it another thread's GPU steps (an engine's 30 ms step took 27 ms longer while a send thread ran
device_get; benchmarks/bench_host_copies.py). A `device_put` into the device's `pinned_host`
memory is a DMA (about 27 GB/s) that returns at once; `np.asarray` of its result is then a plain
host memcpy on whichever thread asks.
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

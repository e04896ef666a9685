"""Agent arrival times and tool/think time between turns, both seeded."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..config import ThinkSpec


def poisson_arrivals(rate: float, duration_s: float, seed: int) -> np.ndarray:
    """Arrival times of a Poisson process of `rate` per second on [0, duration_s)."""
    if rate <= 0:
        raise ValueError(f"online.aps must be > 0, got {rate}")
    rng = np.random.default_rng(seed)
    n = int(rate * duration_s * 1.5 + 10 * np.sqrt(rate * duration_s) + 10)
    times = np.cumsum(rng.exponential(1.0 / rate, size=n))
    while times[-1] < duration_s:  # practically never: draw more
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate, size=n))])
    return times[times < duration_s]


def think_sampler(spec: ThinkSpec, seed: int) -> Callable[[], float]:
    if spec.kind == "none":
        return lambda: 0.0
    if spec.mean_s < 0:
        raise ValueError(f"online.think.mean_s must be >= 0, got {spec.mean_s}")
    if spec.kind == "fixed":
        return lambda: spec.mean_s
    if spec.kind == "exponential":
        rng = np.random.default_rng(seed + 7919)
        return lambda: float(rng.exponential(spec.mean_s)) if spec.mean_s > 0 else 0.0
    raise ValueError(f"online.think.kind={spec.kind!r} is unknown; known: none, fixed, exponential")

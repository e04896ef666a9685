"""Agent arrival times, seeded (think times between turns: think.py)."""

from __future__ import annotations

import numpy as np


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

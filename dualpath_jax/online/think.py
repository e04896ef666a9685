"""Tool/think time between an agent's turns (`online.think`), drawn from the top-level seed.

`fixed` waits `mean_s` every time; `exponential` and `lognormal` draw with mean `mean_s`
(lognormal: `sigma` is that of ln(think time)); `trace` draws the gaps between consecutive turns of
one agent in a Mooncake-format trace (`trace_gaps`), uniformly with replacement, each multiplied by
`mean_s / mean(gaps)` so that their mean is `mean_s` and their shape is the trace's.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import ThinkSpec
from ..paths import repo_path
from ..workload.mooncake import import_mooncake

SEED_OFFSET = 7919  # think draws keep apart from other streams seeded by the same number


def trace_gaps(path: str | Path) -> np.ndarray:
    """Seconds between consecutive turns of each agent of a Mooncake-format trace, agents as the
    importer groups them (workload/mooncake.py: by shared prefix blocks), in trace order. The trace's
    timestamps are arrival times, so a gap holds the earlier turn's service time as well."""
    p = repo_path(path)
    st = p.stat()
    return _gaps(str(p), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _gaps(path: str, mtime_ns: int, size: int) -> np.ndarray:
    gaps = [
        b.t - a.t
        for agent in import_mooncake(path)
        for a, b in zip(agent.turns, agent.turns[1:])
        if a.t is not None and b.t is not None
    ]
    out = np.asarray(gaps, dtype=float)
    out.flags.writeable = False  # shared by every sampler of this process
    return out


def think_sampler(spec: ThinkSpec, seed: int) -> Callable[[], float]:
    """A function that returns the next think time (s); the draws follow `seed`."""
    if spec.kind == "none":
        return lambda: 0.0
    if spec.mean_s < 0:
        raise ValueError(f"online.think.mean_s must be >= 0, got {spec.mean_s}")
    if spec.kind == "fixed":
        return lambda: spec.mean_s
    rng = np.random.default_rng(seed + SEED_OFFSET)
    if spec.kind == "exponential":
        return lambda: float(rng.exponential(spec.mean_s)) if spec.mean_s > 0 else 0.0
    if spec.kind == "lognormal":
        mu = np.log(spec.mean_s) - spec.sigma**2 / 2  # E[X] = exp(mu + sigma^2 / 2) = mean_s
        return lambda: float(rng.lognormal(mu, spec.sigma))
    if spec.kind == "trace":
        gaps = trace_gaps(spec.trace)
        if gaps.size == 0 or gaps.mean() <= 0:
            raise ValueError(f"online.think.trace={spec.trace!r}: no gap between two turns of an agent to draw")
        scaled = gaps * (spec.mean_s / gaps.mean())
        return lambda: float(scaled[rng.integers(scaled.size)])
    raise ValueError(f"online.think.kind={spec.kind!r} is unknown; known: none, fixed, exponential, lognormal, trace")

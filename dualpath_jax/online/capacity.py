"""Capacity search: the highest arrival rate whose run still meets the SLO."""

from __future__ import annotations

from typing import Callable


def find_capacity(
    meets_slo: Callable[[float], bool], lo: float, rel_tol: float = 0.05, max_probes: int = 14
) -> tuple[float, list[tuple[float, bool]]]:
    """Grow the rate x2 from `lo` until a probe fails, then bisect (geometrically) until the
    bracket [pass, fail] is within `rel_tol`. Returns (highest passing rate, probes); 0.0 if even
    `lo` fails. Assumes meeting the SLO is monotone in the rate."""
    probes: list[tuple[float, bool]] = []

    def probe(x: float) -> bool:
        ok = meets_slo(x)
        probes.append((x, ok))
        return ok

    if not probe(lo):
        return 0.0, probes
    good, bad = lo, None
    while bad is None and len(probes) < max_probes:
        x = good * 2
        if probe(x):
            good = x
        else:
            bad = x
    while bad is not None and bad / good - 1 > rel_tol and len(probes) < max_probes:
        mid = (good * bad) ** 0.5
        if probe(mid):
            good = mid
        else:
            bad = mid
    return good, probes

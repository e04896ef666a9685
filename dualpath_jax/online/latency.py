"""Per-request latencies from a timeline, and the SLO judgement.

TTFT = first token - arrival; TTST = second token - arrival (shows the P->D handoff: H2D into the
DE and the first decode step); TPOT = (last token - first decode join) / (output - 1).
"""

from __future__ import annotations

import numpy as np

from ..config import SLOSpec
from ..metrics import percentiles


def request_latencies(arrive, first_token, second_token, finished, joined, output) -> dict:
    arrive, first, second, fin, joined, out = (
        np.asarray(x, dtype=float) for x in (arrive, first_token, second_token, finished, joined, output)
    )
    multi = out > 1
    return {
        "ttft_s": first - arrive,
        "ttst_s": second[multi] - arrive[multi],
        "tpot_s": (fin[multi] - joined[multi]) / (out[multi] - 1),
    }


def slo_met(lat: dict, slo: SLOSpec) -> tuple[bool, float, float]:
    """(met, TTFT at the SLO percentile, TPOT at the SLO percentile)."""
    if lat["ttft_s"].size == 0:
        return False, float("inf"), float("inf")
    q = slo.percentile
    ttft = float(np.percentile(lat["ttft_s"], q))
    tpot = float(np.percentile(lat["tpot_s"], q)) if lat["tpot_s"].size else 0.0
    return ttft <= slo.ttft_s and tpot <= slo.tpot_s, ttft, tpot


def summarize_latencies(lat: dict) -> dict:
    return {k: percentiles(v) for k, v in lat.items()}

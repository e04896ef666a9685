"""Intra-engine batching on prefill engines (PAPER.md section 5, "intra-engine").

With DP attention and EP MoE all GPUs of a node meet at every attention->MoE boundary, so uneven
attention time leaves bubbles. Each engine packs its queue FIFO up to a compute quota (300 ms) of
predicted time, and binary-searches the largest chunk of the next request that still fits
(chunked prefill). `predict(cached, new)` is the profiled attention-time curve (seconds).
"""

from __future__ import annotations

from typing import Callable, Iterable

Predictor = Callable[[int, int], float]


def largest_chunk(cached: int, new: int, budget_s: float, predict: Predictor, step: int = 1) -> int:
    """Largest k in [0, new], a multiple of `step` or `new` itself, with predict(cached, k) <=
    budget_s (predict grows with k)."""
    if new <= 0:
        return 0
    whole = predict(cached, new)
    if whole <= budget_s:
        return new
    lo, hi = 0, (new - 1) // step  # chunks of m * step tokens; m = lo fits (0 tokens always does)
    # The answer is the one boundary of a monotone test, so any search finds it. Start at the
    # proportional guess (exact for a predict linear in k) and widen 1, 2, 4, ... steps from it
    # until the boundary is bracketed: packing chunks a request on nearly every step, and a plain
    # bisection from [0, hi] took ~log2(hi) predicts, each a new (cached, k) to price.
    guess = min(hi, int(new * budget_s / whole) // step) if budget_s > 0 else 0
    if guess > lo:
        if predict(cached, guess * step) <= budget_s:
            lo, width = guess, 1
            while lo + width <= hi:  # gallop up
                if predict(cached, (lo + width) * step) > budget_s:
                    hi = lo + width - 1
                    break
                lo, width = lo + width, 2 * width
        else:
            hi, width = guess - 1, 1
            while hi - width + 1 > lo:  # gallop down: hi, hi - 1, hi - 3, ...
                probe = hi - width + 1
                if predict(cached, probe * step) <= budget_s:
                    lo = probe
                    break
                hi, width = probe - 1, 2 * width
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if predict(cached, mid * step) <= budget_s:
            lo = mid
        else:
            hi = mid - 1
    return lo * step


def pack_quota(queue: Iterable[tuple[int, int]], quota_s: float, predict: Predictor, min_chunk: int = 1) -> list[int]:
    """Tokens to compute for each queued (cached, remaining_new) request, FIFO, within the quota.

    Whole requests are taken while they fit; the first one that does not fit is chunked to the
    largest piece of whole `min_chunk`s that does, and packing stops there. A batch is never empty:
    if even the head's smallest chunk exceeds the quota, it runs alone with min_chunk tokens."""
    out: list[int] = []
    used = 0.0
    for cached, new in queue:
        t = predict(cached, new)
        if used + t <= quota_s:
            out.append(new)
            used += t
            continue
        k = largest_chunk(cached, new, quota_s - used, predict, step=min_chunk)
        if k > 0:
            out.append(k)
        elif not out:  # the head alone, at its smallest chunk
            out.append(min(min_chunk, new))
        break
    return out

"""Seeded synthetic agent trajectories matching published per-trajectory trace statistics.

Generative story (each piece is an assumption the paper does not spell out; see docs/workload.md):
- a trajectory has T turns, a first prompt of I tokens (system prompt + task), a final length F <= MAL;
- T ~ lognormal, F = MAL - X with X ~ exponential (agents mostly run until near the cap), I ~ lognormal,
  all three independent;
- every later turn appends user/tool tokens and every turn generates tokens; a trajectory's totals
  split F - I into generated (rho share) and appended (rest), spread over turns with gamma weights.
With turn k's prompt = I + everything appended and generated before it + its own append, the
five published means (turns, append/turn, generated/turn, final length, mean prompt context) fix
the distribution parameters in closed form (see `_derive`). Random draws are stratified (one draw
per quantile stratum, shuffled) so 500 trajectories land close to the means for any seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ..config import TraceStats, WorkloadSpec
from .trace import Trajectory, Turn


@dataclass(frozen=True)
class _Params:
    turns_mean: float
    turns_sigma: float
    gap_mean: float  # mean of MAL - F
    initial_mean: float
    gen_share: float  # rho: generated share of F - I


def stats_for_mal(table: tuple[TraceStats, ...], mal: int) -> TraceStats:
    """Published row for `mal`, or a linear interpolation between the two nearest rows."""
    rows = sorted(table, key=lambda r: r.mal)
    if not rows:
        raise ValueError("workload.table is empty: the synthetic generator needs trace statistics")
    for r in rows:
        if r.mal == mal:
            return r
    lo = max([r for r in rows if r.mal < mal] or rows[:1], key=lambda r: r.mal)
    hi = min([r for r in rows if r.mal > mal] or rows[-1:], key=lambda r: r.mal)
    if lo.mal == hi.mal:  # outside the table: extend the nearest segment
        lo, hi = (rows[0], rows[1]) if mal < rows[0].mal else (rows[-2], rows[-1])
    w = (mal - lo.mal) / (hi.mal - lo.mal)
    mix = lambda a, b: a + w * (b - a)  # noqa: E731
    return TraceStats(
        mal=mal,
        turns=mix(lo.turns, hi.turns),
        append=mix(lo.append, hi.append),
        generated=mix(lo.generated, hi.generated),
        final_length=mix(lo.final_length, hi.final_length),
        prompt_context=mix(lo.prompt_context, hi.prompt_context),
    )


def _derive(s: TraceStats) -> _Params:
    # Per trajectory: F = I + appended_after_first + generated; mean prompt c = (F + I - g)/2,
    # so E[I] = 2c - F + g. append/turn + gen/turn = F/T, and with F, T independent and T
    # lognormal: E[F/T] = E[F] * exp(sigma^2) / E[T]  =>  sigma^2 = ln((a + g) * T / F).
    initial = 2 * s.prompt_context - s.final_length + s.generated
    ratio = (s.append + s.generated) * s.turns / s.final_length
    if initial <= 0 or ratio <= 1 or s.final_length >= s.mal:
        raise ValueError(
            f"trace statistics for MAL {s.mal} are inconsistent with the generator: "
            f"initial prompt {initial:.0f}, (a+g)*T/F = {ratio:.3f}"
        )
    inv_t = (s.append + s.generated) / s.final_length  # E[1/T]
    gen_share = s.generated / ((s.final_length - initial) * inv_t)
    return _Params(
        turns_mean=s.turns,
        turns_sigma=math.sqrt(math.log(ratio)),
        gap_mean=s.mal - s.final_length,
        initial_mean=initial,
        gen_share=gen_share,
    )


def _stratified_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.permutation(n) + rng.uniform(size=n)) / n


def _lognormal(rng, n, mean, sigma):
    z = np.array([NormalDist().inv_cdf(u) for u in _stratified_uniform(rng, n)])
    return mean * np.exp(sigma * z - sigma**2 / 2)


def _split(rng: np.random.Generator, total: int, parts: int, shape: float) -> np.ndarray:
    """`total` tokens over `parts` turns, gamma-weighted, each >= 1, summing exactly to total."""
    w = rng.gamma(shape, size=parts)
    cum = np.rint(np.cumsum(w) / w.sum() * (total - parts)).astype(np.int64)
    return np.diff(cum, prepend=0) + 1


def generate(spec: WorkloadSpec) -> list[Trajectory]:
    """`spec.trajectories` trajectories for `spec.mal`, deterministic in `spec.seed`."""
    p = _derive(stats_for_mal(spec.table, spec.mal))
    rng = np.random.default_rng(spec.seed)
    n = spec.trajectories
    sigma = p.turns_sigma * spec.turns_sigma_scale  # the tail knob (1: as the means imply)
    turns = np.maximum(2, np.rint(_lognormal(rng, n, p.turns_mean, sigma))).astype(int)
    gap = -p.gap_mean * np.log1p(-_stratified_uniform(rng, n))
    final = np.rint(spec.mal - np.minimum(gap, 0.9 * spec.mal)).astype(int)
    initial = np.rint(_lognormal(rng, n, p.initial_mean, spec.initial_prompt_sigma)).astype(int)
    out = []
    for i in range(n):
        t, f = int(turns[i]), int(final[i])
        t = min(t, (f - 1) // 3)  # room for >= 1 appended and >= 1 generated token per turn
        first = int(min(initial[i], f - 3 * t))
        body = f - first
        gen_total = max(t, int(round(p.gen_share * body)))
        gens = _split(rng, gen_total, t, spec.turn_size_shape)
        appends = np.concatenate([[first], _split(rng, body - gen_total, t - 1, spec.turn_size_shape)])
        ctx, tlist = 0, []
        for k in range(t):
            prompt = ctx + int(appends[k])
            tlist.append(Turn(input=prompt, cached=ctx, output=int(gens[k])))
            ctx = prompt + int(gens[k])
        out.append(Trajectory(f"mal{spec.mal}-{i}", tuple(tlist)))
    return out


def trajectory_stats(trajs: list[Trajectory]) -> dict[str, float]:
    """The published per-trajectory means, computed from trajectories (context = prompt length)."""
    turns = np.array([len(t.turns) for t in trajs], dtype=float)
    appended = np.array([sum(u.new for u in t.turns) for t in trajs], dtype=float)
    generated = np.array([sum(u.output for u in t.turns) for t in trajs], dtype=float)
    return {
        "turns": float(turns.mean()),
        "append": float((appended / turns).mean()),
        "generated": float((generated / turns).mean()),
        "final_length": float(np.mean([t.final_length for t in trajs])),
        "prompt_context": float(np.mean([np.mean([u.input for u in t.turns]) for t in trajs])),
    }


# `generate` gives each of a trajectory's t turns >= 1 generated token and needs >= t - 1 appended
# ones out of a body of >= 3t tokens: with more than 2/3 of the body generated, some trajectories
# get turns with no new tokens (cached > input), as seen from MAL ~170k with the shipped table.
GEN_SHARE_MAX = 2 / 3


def mal_problem(table: tuple[TraceStats, ...], mal: int) -> str | None:
    """Why the synthetic generator cannot make trajectories of MAL `mal` from `table`, or None.

    `stats_for_mal` interpolates (or extends) the table's rows to `mal` and `_derive` fits the
    generator's parameters to them. On top of `_derive`'s own checks every interpolated mean must be
    positive, and at most GEN_SHARE_MAX of the tokens after the first prompt may be generated."""
    if not table:
        return "the table is empty"
    if len(table) == 1 and table[0].mal != mal:
        return f"a one-row table supports only its own MAL, {table[0].mal}"
    try:
        s = stats_for_mal(table, mal)
        bad = [n for n in ("turns", "append", "generated", "final_length", "prompt_context") if not getattr(s, n) > 0]
        if bad:
            return f"the statistics extended to MAL {mal} have {', '.join(bad)} <= 0"
        p = _derive(s)
    except (ValueError, ArithmeticError) as e:
        return str(e)
    if not 0 < p.gen_share <= GEN_SHARE_MAX:
        return (
            f"the generated share of a trajectory's tokens after its first prompt would be "
            f"{p.gen_share:.2f}, above 2/3, which leaves some turns no appended tokens"
        )
    return None


def supported_mal_range(table: tuple[TraceStats, ...], lo_mal: int, hi_mal: int) -> tuple[int, int] | None:
    """(lowest, highest) MAL that `mal_problem` accepts around the table's accepted rows,
    by bisection within [lo_mal, hi_mal]; None if it accepts no row's MAL. (Every MAL is checked
    exactly when it is asked for; the range is for messages.)"""

    def ok(m: int) -> bool:
        return mal_problem(table, m) is None

    rows = sorted(r.mal for r in table if lo_mal <= r.mal <= hi_mal and ok(r.mal))
    if not rows:
        return None
    lo, hi = rows[0], rows[-1]
    if ok(lo_mal):
        lo = lo_mal
    else:
        bad = lo_mal  # invariant: ok(lo), not ok(bad)
        while lo - bad > 1:
            mid = (lo + bad) // 2
            lo, bad = (mid, bad) if ok(mid) else (lo, mid)
    if ok(hi_mal):
        hi = hi_mal
    else:
        bad = hi_mal
        while bad - hi > 1:
            mid = (hi + bad) // 2
            hi, bad = (mid, bad) if ok(mid) else (hi, mid)
    return lo, hi

"""Interaction intervals: online capacity, working set and agent JCT vs the mean think time r.

python -m experiments.intervals +len=32k model=ds27b cluster=1p1d                  # r = 0, 5, 10, 20, 40 s
python -m experiments.intervals +len=32k model=ds27b cluster=1p1d '+r=[0,2,4,8]' online.think.kind=lognormal
python -m experiments.intervals +len=32k model=ds27b cluster=1p1d online.think.kind=trace   # Mooncake gaps

The arguments are Hydra overrides of configs/online.yaml (the online experiment's groups), plus
`+r=[...]` (the mean think times in seconds, default [0, 5, 10, 20, 40]; r = 0 is no think time;
at least two r > 0 for the fits) and `+jobs=N` (processes that run missing cells, default one per
core). `online.think.kind` picks the distribution (exponential unless given; `sigma` and `trace`
shape it as in the online experiment) and r sets `online.think.mean_s`. The online window is the
figures' (900 s of arrivals, the first 200 s not judged) unless `online.duration_s` /
`online.warmup_s` are given.

For each r: the SLO capacity search (one capacity cell), then for each system one online cell at
that system's capacity, whose working set (mean and peak bytes of KV held in storage by live
agents) and mean agent JCT are that system's at r. Every cell goes through the results store: a
stored cell is read, so a second run recomputes nothing (`rerun=true` recomputes). The exponents are
least-squares slopes of ln(y) on ln(r) over r > 0, per system, drawn beside the argument of issue 16
(capacity ~ r, working set ~ r^2). Writes results/figures/<figure_name>.{csv,png}: a row per system
and r, naming the cells it was drawn from, and a row per fit.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console
from rich.table import Table

from dualpath_jax.paths import repo_path
from dualpath_jax.tracking import log_figure
from experiments.figures import cells
from experiments.figures.plot import bytes_unit, color, online_note, rel, save, style, system_name, title_of
from experiments.sensitivity import key_of
from experiments.sweep import refuse_group_lists

R_DEFAULT = (0.0, 5.0, 10.0, 20.0, 40.0)
KIND_DEFAULT = "exponential"
THINK_KEYS = ("online.think.kind", "online.think.sigma", "online.think.trace")
# The argument of issue 16: capacity ~ r, working set ~ r^2 (PAPER.md: the paper left interaction
# intervals untested).
ARGUMENT = {"capacity_aps": 1.0, "ws_mean_bytes": 2.0, "ws_window_mean_bytes": 2.0, "ws_max_bytes": 2.0}
FITTED = ("capacity_aps", "ws_mean_bytes", "ws_window_mean_bytes", "ws_max_bytes", "agent_jct_mean_s")
WS = (("ws_mean_bytes", "WS mean"), ("ws_window_mean_bytes", "WS window mean"), ("ws_max_bytes", "WS peak"))
R_HELP = "r takes a list of mean think times in seconds >= 0, e.g. '+r=[0,5,10,20,40]'"


def parse_r(value: str) -> tuple[float, ...]:
    """'[0,5,10]' or '0,5,10' -> (0.0, 5.0, 10.0), sorted; at least two values > 0."""
    items = [v.strip() for v in value.strip().removeprefix("[").removesuffix("]").split(",")]
    try:
        rs = [float(v) for v in items]
    except ValueError:
        raise ValueError(f"+r={value}: {R_HELP}") from None
    if not rs or any(not math.isfinite(r) or r < 0 for r in rs):
        raise ValueError(f"+r={value}: {R_HELP}")
    if len(set(rs)) != len(rs):
        raise ValueError(f"+r={value}: a think time is given twice")
    if sum(r > 0 for r in rs) < 2:
        raise ValueError(f"+r={value}: the fits need at least two think times > 0")
    return tuple(sorted(rs))


def split_args(task: list[str]) -> tuple[list[str], list[str], tuple[float, ...], int]:
    """(cell overrides, think overrides, r values, jobs) from the command line."""
    base, think, rs, jobs = [], [], R_DEFAULT, cells.JOBS
    for o in task:
        key, _, value = o.lstrip("+").partition("=")
        if key == "r":
            rs = parse_r(value)
        elif key == "jobs":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{o}: jobs takes a positive integer")
            jobs = int(value)
        elif key in ("aps", "capacity"):
            raise ValueError(f"{o}: experiments.intervals searches each system's capacity itself; drop +{key}")
        elif key == "online.think.mean_s":
            raise ValueError(f"{o}: the mean think time comes from +r=[...]; drop online.think.mean_s")
        elif key == "online.think.kind" and value == "none":
            raise ValueError(f"{o}: the sweep needs a think-time distribution (r = 0 in +r is no think time)")
        elif key_of(o) in THINK_KEYS:
            think.append(o)
        elif key_of(o) != "rerun":
            base.append(o)
    if not any(key_of(o) == "online.think.kind" for o in think):
        think.insert(0, f"online.think.kind={KIND_DEFAULT}")
    return base, think, rs, jobs


def think_overrides(r: float, think: list[str]) -> list[str]:
    """r = 0: no think time (the kind's own settings would change nothing, and are refused)."""
    return [] if r == 0 else [*think, f"online.think.mean_s={r!r}"]


def loglog_fit(r, y) -> tuple[float, float] | None:
    """(exponent b, prefactor a) of y = a r^b by least squares on ln-ln, over the points with
    r > 0 and y > 0; None with fewer than two."""
    pts = [(math.log(x), math.log(v)) for x, v in zip(r, y) if x > 0 and v is not None and v > 0]
    if len(pts) < 2:
        return None
    b, ln_a = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
    return float(b), float(math.exp(ln_a))


def at_capacity_specs(base, think, r, cap: dict) -> list[tuple]:
    """One online cell per distinct capacity > 0 (systems that share a rate share a cell)."""
    rates = dict.fromkeys(c["capacity_aps"] for c in cap["systems"].values() if c["capacity_aps"] > 0)
    return [("online", [*base, *think_overrides(r, think)], aps) for aps in rates]


def point_rows(rs, caps: list[dict], loads: list[dict], kind: str) -> list[dict]:
    """A row per r and system: its capacity, and the working set and agent JCT of the online
    cell at that capacity (none where the capacity is 0: not even the lowest rate met the SLO)."""
    rows = []
    for r, cap, at in zip(rs, caps, loads):
        for s, c in cap["systems"].items():
            aps = c["capacity_aps"]
            d = at.get(aps) if aps > 0 else None
            m = d["systems"][s] if d else {}
            ws = m.get("working_set_bytes", {})
            rows.append(
                {
                    "row": "point",
                    "think_kind": "none" if r == 0 else kind,
                    "r_s": r,
                    "system": s,
                    "capacity_aps": aps,
                    "ws_aps": aps if m else None,
                    "ws_slo_met": m.get("slo_met"),
                    "ws_mean_bytes": ws.get("mean"),
                    "ws_max_bytes": ws.get("max"),
                    "ws_window_mean_bytes": window_mean(ws.get("series"), d["config"]["online"]) if d else None,
                    "agent_jct_mean_s": m.get("agent_jct_s", {}).get("mean"),
                    "agent_jct_p90_s": m.get("agent_jct_s", {}).get("p90"),
                    "agents": m.get("agents"),
                    "capacity_file": rel(cap["_path"]),
                    "online_file": rel(d["_path"]) if d else "",
                }
            )
    return rows


def window_mean(series, online: dict) -> float | None:
    """The mean of the sampled working set over the judged window [warmup_s, duration_s): the
    run's own mean also spans the drain after the last arrival, which lengthens with r."""
    inside = [b for t, b in series or () if online["warmup_s"] <= t < online["duration_s"]]
    return float(np.mean(inside)) if inside else None


def fit_rows(points: list[dict]) -> list[dict]:
    out = []
    for s in dict.fromkeys(p["system"] for p in points):
        mine = [p for p in points if p["system"] == s and p["r_s"] > 0]
        for q in FITTED:
            used = [p for p in mine if p[q] is not None and p[q] > 0]
            fit = loglog_fit([p["r_s"] for p in used], [p[q] for p in used])
            out.append(
                {
                    "row": "fit",
                    "system": s,
                    "quantity": q,
                    "exponent": fit[0] if fit else None,
                    "prefactor": fit[1] if fit else None,
                    "fit_r_s": ";".join(f"{p['r_s']:g}" for p in used) if fit else "",
                    "argument_exponent": ARGUMENT.get(q),
                }
            )
    return out


def exponent(fits: list[dict], s: str, q: str) -> float | None:
    return next((f["exponent"] for f in fits if f["system"] == s and f["quantity"] == q), None)


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x + 0.0, spec).replace("-0.00", "0.00")


def _panel(ax, points, fits, q: str, label: str, ls="-", mfc=None, scale=1.0) -> None:
    """One quantity vs r > 0 on log-log axes: each system's points, its fit, r = 0 as a line."""
    for k, s in enumerate(dict.fromkeys(p["system"] for p in points)):
        mine = [p for p in points if p["system"] == s and p[q] is not None and p[q] > 0]
        pos = [p for p in mine if p["r_s"] > 0]
        c = color(s, k)
        b = exponent(fits, s, q)
        ax.plot(
            [p["r_s"] for p in pos],
            [p[q] / scale for p in pos],
            ls="none",
            marker="o",
            mfc=mfc or c,
            color=c,
            label=f"{system_name(s)} {label}: fit r^{_fmt(b)}",
        )
        fit = next(f for f in fits if f["system"] == s and f["quantity"] == q)
        if fit["exponent"] is not None:
            x = np.geomspace(min(p["r_s"] for p in pos), max(p["r_s"] for p in pos), 20)
            ax.plot(x, fit["prefactor"] * x ** fit["exponent"] / scale, ls=ls, color=c, lw=1.2)
        for p in mine:
            if p["r_s"] == 0:
                ax.axhline(p[q] / scale, color=c, ls=":", lw=1)


def _reference(ax, points, q: str, slope: float, scale: float, text: str) -> None:
    """A guide line of the argument's slope, through the geometric mean of the plotted points."""
    pos = [p for p in points if p["r_s"] > 0 and p[q] is not None and p[q] > 0]
    if not pos:
        return
    x0 = math.exp(np.mean([math.log(p["r_s"]) for p in pos]))
    y0 = math.exp(np.mean([math.log(p[q] / scale) for p in pos]))
    x = np.geomspace(min(p["r_s"] for p in pos), max(p["r_s"] for p in pos), 20)
    ax.plot(x, y0 * (x / x0) ** slope, color="black", ls="--", lw=0.8, alpha=0.6, label=text)


def plot(points: list[dict], fits: list[dict], title: str):
    style()
    fig, (a1, a2, a3, note) = plt.subplots(1, 4, figsize=(18, 5.2), width_ratios=(1, 1, 1, 0.9))
    _panel(a1, points, fits, "capacity_aps", "capacity")
    _reference(a1, points, "capacity_aps", 1.0, 1.0, "argument: capacity ~ r")
    a1.set_ylabel("SLO capacity (agents/s)")
    ws = [p["ws_max_bytes"] for p in points if p["ws_max_bytes"]]
    div, unit = bytes_unit(max(ws)) if ws else (1.0, "B")
    _panel(a2, points, fits, "ws_mean_bytes", "WS mean", scale=div)
    _panel(a2, points, fits, "ws_window_mean_bytes", "WS window mean", ls="-.", mfc="white", scale=div)
    _panel(a2, points, fits, "ws_max_bytes", "WS peak", ls="--", mfc="none", scale=div)
    _reference(a2, points, "ws_mean_bytes", 2.0, div, "argument: working set ~ r^2")
    a2.set_ylabel(f"working set at capacity ({unit})")
    _panel(a3, points, fits, "agent_jct_mean_s", "mean agent JCT")
    a3.set_ylabel("mean agent JCT at capacity (s)")
    for ax in (a1, a2, a3):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("mean think time r (s)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    used = sorted({float(x) for f in fits if f["fit_r_s"] for x in f["fit_r_s"].split(";")})
    lines = ["fitted exponents, y ~ r^b", f"(ln-ln least squares, r = {', '.join(f'{r:g}' for r in used)} s)", ""]
    lines.append(f"{'':<20}{'capacity':>9}" + "".join(f"{h:>12}" for h in ("WS run mean", "WS window", "WS peak")))
    for s in dict.fromkeys(p["system"] for p in points):
        e = [_fmt(exponent(fits, s, q)) for q in ("capacity_aps", *(q for q, _ in WS))]
        lines.append(f"{system_name(s):<20}{e[0]:>9}" + "".join(f"{x:>12}" for x in e[1:]))
    lines.append(f"{'argument (issue 16)':<20}{'1':>9}" + "".join(f"{'2':>12}" for _ in WS))
    lines += ["", "WS: working set at capacity; mean over the", "run, over the judged window, and peak", ""]
    lines += ["capacity: within online.capacity_rel_tol", "of the search's first failing rate"]
    note.axis("off")
    note.text(0.0, 0.95, "\n".join(lines), va="top", family="monospace", fontsize=8.5, transform=note.transAxes)
    fig.suptitle(title + "\n(dotted: r = 0, no think time; markers: each system at its own capacity)")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> tuple:
    task, console = cells.study_task(argv)
    with cells.user_overrides(console):
        base, think, rs, jobs = split_args(task)
        refuse_group_lists(base)
        # every cell's config is built (and so checked) before any cell runs
        cfgs = [cells.online_config([*base, *think_overrides(r, think)]) for r in rs]
        results_dir = repo_path(cfgs[0].results_dir)
    cfg = next(c for c, r in zip(cfgs, rs) if r > 0)
    kind = cfg.online.think.kind
    name = figure_name(cfg)
    cells.JOBS, saved_jobs = jobs, cells.JOBS
    try:
        caps = cells.fetch([("capacity", [*base, *think_overrides(r, think)]) for r in rs], name, results_dir)
        plan = [
            (i, spec) for i, (r, cap) in enumerate(zip(rs, caps)) for spec in at_capacity_specs(base, think, r, cap)
        ]
        data = cells.fetch([spec for _, spec in plan], f"{name} (at capacity)", results_dir)
    finally:
        cells.JOBS = saved_jobs
    loads: list[dict] = [{} for _ in rs]  # per r: the online cell at each capacity rate
    for (i, spec), d in zip(plan, data):
        loads[i][spec[2]] = d
    points = point_rows(rs, caps, loads, kind)
    fits = fit_rows(points)
    t = think_title(cfg)
    title = f"Interaction intervals: {title_of(caps[0]['config'])}, {t}\n({online_note(caps[0]['config'])})"
    csv_path, png = save(plot(points, fits, title), points + fits, name, results_dir)
    log_figure(cfg.tracking, name, png, csv_path, {"overrides": task})
    report(console, points, fits, title)
    console.print(f"figure: {rel(png)}\ntable: {rel(csv_path)}", soft_wrap=True)
    return csv_path, png, points, fits


def figure_name(cfg) -> str:
    """intervals_<model>_<cluster>_len<L>_<kind>[_sigma<s>][_<system set>][_d<duration>]: the
    duration only when not the figures' window, so sweeps of other windows keep their own files."""
    t = cfg.online.think
    name = f"intervals_{cfg.model.name}_{cfg.cluster.name}_len{cfg.workload.mal_label}_{t.kind}"
    if t.kind == "lognormal":
        name += f"_sigma{t.sigma:g}"
    if cfg.system_set != "paper":
        name += f"_{cfg.system_set}"
    if cfg.online.duration_s != float(cells.ONLINE[0].split("=")[1]):
        name += f"_d{cfg.online.duration_s:g}"
    return name


def think_title(cfg) -> str:
    t = cfg.online.think
    if t.kind == "lognormal":
        return f"lognormal think time (sigma {t.sigma:g})"
    if t.kind == "trace":
        return f"think time from the gaps of {t.trace.rsplit('/', 1)[-1]}, rescaled to mean r"
    return f"{t.kind} think time"


def report(console: Console, points: list[dict], fits: list[dict], title: str) -> None:
    table = Table(
        "r s", "system", "capacity APS", "WS mean GB", "WS window GB", "WS peak GB", "agent JCT s", title=title
    )
    for p in points:
        table.add_row(
            f"{p['r_s']:g}",
            system_name(p["system"]),
            f"{p['capacity_aps']:.3g}",
            *(_fmt(p[q] and p[q] / 1e9, ",.1f") for q, _ in WS),
            _fmt(p["agent_jct_mean_s"], ",.0f"),
        )
    console.print(table)
    ex = Table("system", "capacity", *(lab for _, lab in WS), "agent JCT", title="fitted exponents over r > 0")
    for s in dict.fromkeys(p["system"] for p in points):
        ex.add_row(system_name(s), *(_fmt(exponent(fits, s, q)) for q in FITTED))
    ex.add_row("argument (issue 16)", "1", "2", "2", "2", "")
    console.print(ex)


if __name__ == "__main__":
    main()

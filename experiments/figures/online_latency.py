"""Online serving vs arrival rate: P90 TTFT, P90 TTST, P90 TPOT and mean agent JCT vs agents per
second (APS) with the SLO lines, plus the SLO capacity of each system; DS 660B 2P4D, MAL 64k,
Basic / DualPath / Oracle. Online cells use 900 s of arrivals with the first 200 s not judged
(cells.ONLINE), which the title states.

Cells: results/online/ds660b_2p4d/aps<r>_len64k.json for r in APS, and capacity_len64k.json.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from . import cells
from .plot import MARKERS, bar_labels, color, figure_main, online_note, rel, save, style, system_name, title_of

NAME = "online_latency"
MODEL = "ds660b"
LENGTH = "64k"
# From light load to past Basic's and DualPath's saturation. Chosen from probe cells (900 s): Basic's
# P90 TTFT crossed the SLO between 0.6 and 0.8 agents/s, DualPath's was still under it at 1.2.
# The capacity search brackets each system's limit independently of this list.
APS = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.6)
PANELS = {
    "ttft_p90_s": "P90 TTFT (s)",
    "ttst_p90_s": "P90 TTST (s)",
    "tpot_p90_ms": "P90 TPOT (ms)",
    "agent_jct_mean_s": "mean agent JCT (s)",
}


def base(model=MODEL, length=LENGTH, extra=()) -> list[str]:
    return [f"model={model}", f"+len={length}", "system=paper", *extra]


def specs(model=MODEL, length=LENGTH, aps=APS, extra=(), with_capacity=True) -> list[tuple]:
    out = [("online", base(model, length, extra), a) for a in aps]
    return out + ([("capacity", base(model, length, extra))] if with_capacity else [])


def latency_rows(d: dict) -> list[dict]:
    rows = []
    for s, r in d["systems"].items():
        lat = r["latency"]
        rows.append(
            {
                "kind": "latency",
                "aps": d["config"]["online"]["aps"],
                "system": s,
                "ttft_p90_s": lat["ttft_s"]["p90"],
                "ttst_p90_s": lat["ttst_s"]["p90"],
                "tpot_p90_ms": 1e3 * lat["tpot_s"]["p90"],
                "agent_jct_mean_s": r["agent_jct_s"].get("mean", math.nan),
                "slo_met": r["slo_met"],
                "agents": r["agents"],
                "window_requests": r["window_requests"],
                "file": rel(d["_path"]),
            }
        )
    return rows


def make(results_dir=None, model=MODEL, length=LENGTH, aps=APS, extra=(), with_capacity=True):
    data = cells.fetch(specs(model, length, aps, extra, with_capacity), NAME, results_dir)
    rows = [row for d in data[: len(aps)] for row in latency_rows(d)]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    cap = data[len(aps)] if with_capacity else None
    if cap is not None:
        basic = cap["systems"].get("basic", {}).get("capacity_aps") or math.nan
        rows += [
            {
                "kind": "capacity",
                "system": s,
                "capacity_aps": r["capacity_aps"],
                "capacity_vs_basic": r["capacity_aps"] / basic if basic else math.nan,
                "probes": len(r["probes"]),
                "file": rel(cap["_path"]),
            }
            for s, r in cap["systems"].items()
        ]
    cfg = data[0]["config"]
    slo = cfg["online"]["slo"]
    style()
    fig = plt.figure(figsize=(13 if cap is not None else 9, 7))
    grid = fig.add_gridspec(2, 3 if cap is not None else 2)
    axes = [fig.add_subplot(grid[i, j]) for i in range(2) for j in range(2)]
    for ax, (key, label) in zip(axes, PANELS.items()):
        for k, s in enumerate(systems):
            pts = [r for r in rows if r["kind"] == "latency" and r["system"] == s]
            ax.plot(
                [r["aps"] for r in pts],
                [r[key] for r in pts],
                marker=MARKERS.get(s, "o"),
                color=color(s, k),
                label=system_name(s),
            )
        if key == "ttft_p90_s":
            ax.axhline(slo["ttft_s"], color="k", ls="--", lw=1, label=f"SLO {slo['ttft_s']:g} s")
        if key == "tpot_p90_ms":
            ax.axhline(1e3 * slo["tpot_s"], color="k", ls="--", lw=1, label=f"SLO {1e3 * slo['tpot_s']:g} ms")
        if key in ("ttft_p90_s", "ttst_p90_s"):
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("arrival rate (agents/s)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    if cap is not None:
        ax = fig.add_subplot(grid[:, 2])
        crow = [r for r in rows if r["kind"] == "capacity"]
        bars = ax.bar(
            [system_name(r["system"]) for r in crow],
            [r["capacity_aps"] for r in crow],
            color=[color(r["system"], k) for k, r in enumerate(crow)],
        )
        bar_labels(ax, bars, [f"{r['capacity_aps']:.3g}\n({r['capacity_vs_basic']:.2f}x)" for r in crow])
        ax.set_ylabel("capacity (agents/s)")
        ax.set_title(
            f"highest APS with P{slo['percentile']:g} TTFT <= {slo['ttft_s']:g} s\n"
            f"and TPOT <= {1e3 * slo['tpot_s']:g} ms"
        )
    fig.suptitle(f"Online latency vs load: {title_of(cfg)} ({online_note(cfg)})")
    fig.tight_layout()
    return save(fig, rows, NAME, results_dir)


main = figure_main(__doc__, make)


if __name__ == "__main__":
    main()

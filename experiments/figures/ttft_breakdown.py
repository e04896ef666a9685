"""TTFT breakdown: mean scheduling wait, allocation, KV read and prefill time of a request, stacked,
per system at a few arrival rates of the online_latency figure (same cells); DS 660B 2P4D, MAL 64k.

Cells: results/online/ds660b_2p4d/aps<r>_len64k.json for r in APS (a subset of online_latency.APS).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import cells, online_latency
from .plot import figure_main, finish, online_note, rel, save, style, system_name, title_of

NAME = "ttft_breakdown"
APS = (0.4, 0.8, 1.2)  # below Basic's saturation, past it, near DualPath's
# v2 cells split the PE queue out of "prefill" (docs/online.md); v1 cells have no `pe_queue`
PARTS = {
    "sched": "scheduling wait",
    "alloc": "allocation",
    "read": "KV read",
    "pe_queue": "PE queue",
    "prefill": "prefill",
}
PART_COLORS = {"sched": "#bdbdbd", "alloc": "#fdae6b", "read": "#6baed6", "pe_queue": "#9e9ac8", "prefill": "#74c476"}
assert set(APS) <= set(online_latency.APS), "reuse the online_latency cells"


def specs(model=online_latency.MODEL, length=online_latency.LENGTH, aps=APS, extra=()) -> list[tuple]:
    return online_latency.specs(model, length, aps, extra, with_capacity=False)


def make(results_dir=None, model=online_latency.MODEL, length=online_latency.LENGTH, aps=APS, extra=()):
    data = cells.fetch(specs(model, length, aps, extra), NAME, results_dir)
    rows = []
    parts = [k for k in PARTS if all(k in r["ttft_breakdown_s"] for d in data for r in d["systems"].values())]
    for d in data:
        for s, r in d["systems"].items():
            br = r["ttft_breakdown_s"]
            rows.append(
                {
                    "aps": d["config"]["online"]["aps"],
                    "system": s,
                    **{f"{k}_s": br[k] for k in parts},
                    "total_s": sum(br[k] for k in parts),
                    "ttft_mean_s": r["latency"]["ttft_s"]["mean"],
                    "file": rel(d["_path"]),
                }
            )
    systems = list(dict.fromkeys(r["system"] for r in rows))
    style()
    fig, axes = plt.subplots(1, len(aps), figsize=(4.2 * len(aps), 3.9), squeeze=False, sharey=False)
    for ax, a in zip(axes[0], aps):
        sel = {r["system"]: r for r in rows if r["aps"] == a}
        x = np.arange(len(systems))
        bottom = np.zeros(len(systems))
        for k in parts:
            vals = np.array([sel[s][f"{k}_s"] for s in systems])
            ax.bar(x, vals, 0.6, bottom=bottom, color=PART_COLORS[k], label=PARTS[k])
            bottom += vals
        ax.set_xticks(x, [system_name(s) for s in systems])
        ax.set_ylabel("mean TTFT part (s)")
        ax.set_title(f"{a:g} agents/s")
    cfg = data[0]["config"]
    fig.suptitle(f"TTFT breakdown: {title_of(cfg)} ({online_note(cfg)})")
    finish(fig, axes[0][0])
    return save(fig, rows, NAME, results_dir)


main = figure_main(__doc__, make)


if __name__ == "__main__":
    main()

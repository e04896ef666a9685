"""P/D ratio sensitivity: DS 27B on 1P1D, 2P1D and 1P2D, MAL 64k, Basic / DualPath / Oracle.

Cells: results/offline/ds27b_<cluster>/agents<N>_len64k.json for cluster in CLUSTERS, N in AGENTS.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import cells
from .plot import bar_labels, cluster_name, color, figure_main, finish, model_name, rel, save, style, system_name

NAME = "pd_ratio"
MODEL = "ds27b"
CLUSTERS = ("1p1d", "2p1d", "1p2d")
LENGTH = "64k"
AGENTS = (1024, 2048)


def specs(model=MODEL, clusters=CLUSTERS, length=LENGTH, agents=AGENTS, extra=()) -> list[tuple]:
    return [cells.offline_cell(model, n, length, "paper", f"cluster={c}", *extra) for n in agents for c in clusters]


def make(results_dir=None, model=MODEL, clusters=CLUSTERS, length=LENGTH, agents=AGENTS, extra=()):
    data = cells.fetch(specs(model, clusters, length, agents, extra), NAME, results_dir)
    rows = []
    for d in data:
        c = d["config"]
        for s, m in d["systems"].items():
            rows.append(
                {
                    "model": c["model"]["name"],
                    "cluster": c["cluster"]["name"],
                    "mal": c["workload"]["mal_label"],
                    "agents": c["workload"]["agents"],
                    "system": s,
                    "jct_s": m["jct_s"],
                    "speedup_vs_basic": d["comparison"][s]["speedup_vs_basic"],
                    "file": rel(d["_path"]),
                }
            )
    systems = list(dict.fromkeys(r["system"] for r in rows))
    style()
    fig, axes = plt.subplots(1, len(agents), figsize=(5.2 * len(agents), 3.8), squeeze=False)
    width = 0.8 / len(systems)
    x = np.arange(len(clusters))
    for ax, n in zip(axes[0], agents):
        for k, s in enumerate(systems):
            sel = {r["cluster"]: r for r in rows if r["agents"] == n and r["system"] == s}
            vals = [sel[c]["jct_s"] for c in clusters]
            bars = ax.bar(
                x + (k - (len(systems) - 1) / 2) * width, vals, width, color=color(s, k), label=system_name(s)
            )
            if s != "basic":
                bar_labels(ax, bars, [f"{sel[c]['speedup_vs_basic']:.2f}x" for c in clusters])
        ax.set_xticks(x, [cluster_name(c) for c in clusters])
        ax.set_ylabel("JCT (s)")
        ax.set_title(f"{model_name(model)}, MAL {length}, {n} agents")
    fig.suptitle("P/D ratio: offline JCT (labels: speedup over Basic)")
    finish(fig, axes[0][0])
    return save(fig, rows, NAME, results_dir)


main = figure_main(__doc__, make)


if __name__ == "__main__":
    main()

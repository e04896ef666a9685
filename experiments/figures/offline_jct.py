"""Offline JCT vs number of agents: each model on its paper cluster x MAL, four systems (system=all).

Cells: results/offline/<model>_<cluster>/agents<N>_len<L>_all.json for N in AGENTS, L in LENS.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from . import cells
from .plot import MARKERS, color, figure_main, finish, rel, save, style, system_name, title_of

NAME = "offline_jct"
MODELS = ("ds660b", "ds27b", "qwen32b")
LENS = ("32k", "48k", "64k")
AGENTS = (512, 1024, 2048, 4096)


def specs(models=MODELS, lens=LENS, agents=AGENTS, extra=()) -> list[tuple]:
    return [cells.offline_cell(m, n, L, "all", *extra) for m in models for L in lens for n in agents]


def make(results_dir=None, models=MODELS, lens=LENS, agents=AGENTS, extra=()):
    data = cells.fetch(specs(models, lens, agents, extra), NAME, results_dir)
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
                    "gap_to_oracle": d["comparison"][s].get("gap_to_oracle"),
                    "prefill_gpu_util": m["prefill_gpu_util"],
                    "file": rel(d["_path"]),
                }
            )
    style()
    fig, axes = plt.subplots(len(models), len(lens), figsize=(4.2 * len(lens), 3.3 * len(models)), squeeze=False)
    for i, mdl in enumerate(models):
        for j, L in enumerate(lens):
            ax = axes[i][j]
            panel = [r for r in rows if r["model"] == mdl and r["mal"] == L]
            for k, s in enumerate(dict.fromkeys(r["system"] for r in panel)):
                pts = sorted((r["agents"], r["jct_s"]) for r in panel if r["system"] == s)
                ax.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    marker=MARKERS.get(s, "o"),
                    color=color(s, k),
                    label=system_name(s),
                )
            d0 = next(
                d for d in data if d["config"]["model"]["name"] == mdl and d["config"]["workload"]["mal_label"] == L
            )
            ax.set_title(title_of(d0["config"]))
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(agents), [str(a) for a in agents])
            ax.set_xlabel("agents")
            ax.set_ylabel("JCT (s)")
            ax.set_ylim(bottom=0)
    fig.suptitle("Offline job completion time vs agents (each model on its paper cluster)")
    finish(fig, axes[0][0])
    return save(fig, rows, NAME, results_dir)


main = figure_main(__doc__, make)


if __name__ == "__main__":
    main()

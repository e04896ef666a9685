"""The ablation ladder (system=ablation: Basic, +layerwise, +dualpath, +scheduling): DS 660B 2P4D,
MAL 64k, 1024 and 2048 agents; JCT bars labelled with the speedup over Basic.

Cells: results/offline/ds660b_2p4d/agents<N>_len64k_ablation.json.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import cells
from .plot import bar_labels, color, figure_main, rel, save, style, system_name, title_of

NAME = "ablation"
MODEL = "ds660b"
LENGTH = "64k"
AGENTS = (1024, 2048)


def specs(model=MODEL, length=LENGTH, agents=AGENTS, extra=()) -> list[tuple]:
    return [cells.offline_cell(model, n, length, "ablation", *extra) for n in agents]


def make(results_dir=None, model=MODEL, length=LENGTH, agents=AGENTS, extra=()):
    data = cells.fetch(specs(model, length, agents, extra), NAME, results_dir)
    rows = []
    for d in data:
        for s, m in d["systems"].items():
            rows.append(
                {
                    "agents": d["config"]["workload"]["agents"],
                    "rung": s,
                    "jct_s": m["jct_s"],
                    "speedup_vs_basic": d["comparison"][s]["speedup_vs_basic"],
                    "prefill_gpu_util": m["prefill_gpu_util"],
                    "snic_util_de": m["snic_util_de"],
                    "file": rel(d["_path"]),
                }
            )
    style()
    fig, axes = plt.subplots(1, len(agents), figsize=(5 * len(agents), 3.8), squeeze=False)
    for ax, n, d in zip(axes[0], agents, data):
        sel = [r for r in rows if r["agents"] == n]
        x = np.arange(len(sel))
        bars = ax.bar(x, [r["jct_s"] for r in sel], color=[color(r["rung"], k) for k, r in enumerate(sel)])
        bar_labels(ax, bars, [f"{r['speedup_vs_basic']:.2f}x" for r in sel], fontsize=9)
        ax.set_xticks(x, [system_name(r["rung"]) for r in sel])
        ax.set_ylabel("JCT (s)")
        ax.set_title(f"{title_of(d['config'])}, {n} agents")
    fig.suptitle("Ablation: each rung adds one mechanism (labels: speedup over Basic)")
    fig.tight_layout()
    return save(fig, rows, NAME, results_dir)


main = figure_main(__doc__, make)


if __name__ == "__main__":
    main()

"""Load balance of the inter-engine policies (system=schedulers): Max/Avg of the storage bytes read
across nodes (snic_read_max_avg) and of the attention time across prefill GPUs (attn_max_avg);
DS 660B 2P4D, MAL 64k, 1024 and 2048 agents. 1.0 is perfect balance.

Cells: results/offline/ds660b_2p4d/agents<N>_len64k_schedulers.json.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import cells
from .plot import color, figure_main, finish, rel, save, style, system_name, title_of

NAME = "load_balance"
MODEL = "ds660b"
LENGTH = "64k"
AGENTS = (1024, 2048)
METRICS = {
    "snic_read_max_avg": "storage bytes read: Max/Avg across nodes",
    "attn_max_avg": "attention time: Max/Avg across prefill GPUs",
}


def specs(model=MODEL, length=LENGTH, agents=AGENTS, extra=()) -> list[tuple]:
    return [cells.offline_cell(model, n, length, "schedulers", *extra) for n in agents]


def make(results_dir=None, model=MODEL, length=LENGTH, agents=AGENTS, extra=()):
    data = cells.fetch(specs(model, length, agents, extra), NAME, results_dir)
    rows = []
    for d in data:
        for s, m in d["systems"].items():
            rows.append(
                {
                    "agents": d["config"]["workload"]["agents"],
                    "system": s,
                    **{k: m[k] for k in METRICS},
                    "jct_s": m["jct_s"],
                    "file": rel(d["_path"]),
                }
            )
    systems = list(dict.fromkeys(r["system"] for r in rows))
    style()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5.5 * len(METRICS), 3.8), squeeze=False)
    width = 0.8 / len(systems)
    x = np.arange(len(agents))
    for ax, (key, label) in zip(axes[0], METRICS.items()):
        for k, s in enumerate(systems):
            sel = {r["agents"]: r[key] for r in rows if r["system"] == s}
            ax.bar(
                x + (k - (len(systems) - 1) / 2) * width,
                [sel[n] for n in agents],
                width,
                color=color(s, k),
                label=system_name(s),
            )
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_xticks(x, [f"{n} agents" for n in agents])
        ax.set_ylabel("Max / Avg")
        ax.set_title(label)
    fig.suptitle(f"Load balance of the schedulers: {title_of(data[0]['config'])}")
    finish(fig, axes[0][0])
    return save(fig, rows, NAME, results_dir)


main = figure_main(__doc__, make)


if __name__ == "__main__":
    main()

"""Working set: the bytes of KV that live agents hold in storage. Left: mean and max working set vs
arrival rate (the online_latency cells: DS 660B 2P4D, MAL 64k). Right: DS 27B 1P1D, MAL 32k, with a
fixed think (tool) time between an agent's turns: the working set at THINK_APS and the SLO
capacity of Basic and DualPath vs the think time.

Cells: the online_latency aps cells; results/online/ds27b_1p1d/aps<THINK_APS>_len32k[_thinkfixed<t>].json
and capacity_len32k_paper_no_oracle[_thinkfixed<t>].json for t in THINK_S (t = 0: no think time).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import cells, online_latency
from .plot import (
    MARKERS,
    bytes_unit,
    color,
    figure_main,
    model_name,
    online_note,
    rel,
    save,
    style,
    system_name,
    title_of,
)

NAME = "working_set"
THINK_MODEL = "ds27b"
THINK_CLUSTER = "1p1d"
THINK_LENGTH = "32k"
THINK_S = (0, 30)  # fixed think time between turns (s); 0 = none
THINK_APS = 1.0  # arrival rate of the working-set cells (below DS 27B 1P1D 32k capacity without think time)
# The capacity searches skip the Oracle (they are the costly cells): a system set of its own name.
CAPACITY_SYSTEMS = ("~system.oracle", "system_set=paper_no_oracle")


def think_overrides(t: float) -> list[str]:
    return [] if t == 0 else ["online.think.kind=fixed", f"online.think.mean_s={t:g}"]


def think_base(model=THINK_MODEL, cluster=THINK_CLUSTER, length=THINK_LENGTH, extra=()) -> list[str]:
    return [f"model={model}", f"cluster={cluster}", f"+len={length}", "system=paper", *extra]


def think_specs(think=THINK_S, aps=THINK_APS, extra=(), with_capacity=True) -> list[tuple]:
    out = []
    for t in think:
        out.append(("online", think_base(extra=(*think_overrides(t), *extra)), aps))
        if with_capacity:
            out.append(("capacity", think_base(extra=(*think_overrides(t), *CAPACITY_SYSTEMS, *extra))))
    return out


def specs(aps=online_latency.APS, think=THINK_S, think_aps=THINK_APS, extra=(), think_extra=(), with_capacity=True):
    """The arrival-rate panel's cells (online_latency's), then the think-time ones."""
    return online_latency.specs(extra=extra, aps=aps, with_capacity=False) + think_specs(
        think, think_aps, think_extra, with_capacity
    )


def make(
    results_dir=None,
    aps=online_latency.APS,
    think=THINK_S,
    think_aps=THINK_APS,
    extra=(),
    think_extra=(),
    with_capacity=True,
):
    load = cells.fetch(online_latency.specs(extra=extra, aps=aps, with_capacity=False), NAME, results_dir)
    tcells = cells.fetch(think_specs(think, think_aps, think_extra, with_capacity), NAME + " (think)", results_dir)
    rows = []
    for d in load:
        for s, r in d["systems"].items():
            ws = r["working_set_bytes"]
            rows.append(
                {
                    "panel": "aps",
                    "aps": d["config"]["online"]["aps"],
                    "think_s": 0,
                    "system": s,
                    "ws_mean_bytes": ws["mean"],
                    "ws_max_bytes": ws["max"],
                    "file": rel(d["_path"]),
                }
            )
    step = 2 if with_capacity else 1
    for t, i in zip(think, range(0, len(tcells), step)):
        d = tcells[i]
        cap = tcells[i + 1]["systems"] if with_capacity else {}
        for s, r in d["systems"].items():
            ws = r["working_set_bytes"]
            rows.append(
                {
                    "panel": "think",
                    "aps": d["config"]["online"]["aps"],
                    "think_s": t,
                    "system": s,
                    "ws_mean_bytes": ws["mean"],
                    "ws_max_bytes": ws["max"],
                    "capacity_aps": cap.get(s, {}).get("capacity_aps"),
                    "file": rel(d["_path"]),
                }
            )
    style()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    arows = [r for r in rows if r["panel"] == "aps"]
    div, unit = bytes_unit(max(r["ws_max_bytes"] for r in arows))
    for k, s in enumerate(dict.fromkeys(r["system"] for r in arows)):
        pts = [r for r in arows if r["system"] == s]
        x = [r["aps"] for r in pts]
        a1.plot(
            x,
            [r["ws_mean_bytes"] / div for r in pts],
            marker=MARKERS.get(s, "o"),
            color=color(s, k),
            label=f"{system_name(s)} mean",
        )
        a1.plot(
            x,
            [r["ws_max_bytes"] / div for r in pts],
            ls="--",
            marker=MARKERS.get(s, "o"),
            mfc="none",
            color=color(s, k),
            label=f"{system_name(s)} max",
        )
    a1.set_xlabel("arrival rate (agents/s)")
    a1.set_ylabel(f"working set ({unit})")
    a1.set_ylim(bottom=0)
    a1.set_title(f"{title_of(load[0]['config'])}\n({online_note(load[0]['config'])})")
    a1.legend(fontsize=7.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    trows = [r for r in rows if r["panel"] == "think" and r["system"] == "dualpath"]
    x = np.arange(len(trows))
    div, unit = bytes_unit(max(r["ws_max_bytes"] for r in trows))
    a2.bar(x - 0.2, [r["ws_mean_bytes"] / div for r in trows], 0.4, color="#9ecae1", label="DualPath WS mean")
    a2.bar(x + 0.2, [r["ws_max_bytes"] / div for r in trows], 0.4, color="#3182bd", label="DualPath WS max")
    a2.set_xticks(x, [f"{r['think_s']:g} s" for r in trows])
    a2.set_xlabel("think time between turns")
    a2.set_ylabel(f"working set at {think_aps:g} agents/s ({unit})")
    cfg = tcells[0]["config"]
    a2.set_title(
        f"{model_name(cfg['model']['name'])}, {cfg['cluster']['name'].upper()}, "
        f"MAL {cfg['workload']['mal_label']}\n({online_note(cfg)})"
    )
    handles, labels = a2.get_legend_handles_labels()
    if with_capacity:
        tw = a2.twinx()
        for k, s in enumerate(["basic", "dualpath"]):
            caps = [r["capacity_aps"] for r in rows if r["panel"] == "think" and r["system"] == s]
            tw.plot(
                x,
                caps,
                marker="o",
                ls="-" if s == "dualpath" else "--",
                color=color(s, k),
                label=f"{system_name(s)} capacity",
            )
        tw.set_ylabel("SLO capacity (agents/s)")
        tw.set_ylim(bottom=0)
        tw.grid(False)
        h2, l2 = tw.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    a2.legend(handles, labels, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.suptitle("Working set: KV bytes held in storage by live agents")
    fig.tight_layout()
    return save(fig, rows, NAME, results_dir)


main = figure_main(__doc__, make)


if __name__ == "__main__":
    main()

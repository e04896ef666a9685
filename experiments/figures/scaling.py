"""Append and generation lengths scaled together (1x / 1.5x / 2x / 3x): DS 660B 2P4D, MAL 64k,
1024 agents, Basic / DualPath / Oracle: JCT and speedup over Basic vs the scale.

Cells: results/offline/ds660b_2p4d/agents1024_len64k[_append<x>_gen<x>].json for x in SCALES.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from . import cells
from .plot import MARKERS, color, figure_main, rel, save, style, system_name, title_of

NAME = "scaling"
MODEL = "ds660b"
LENGTH = "64k"
AGENTS = 1024
SCALES = (1.0, 1.5, 2.0, 3.0)


def specs(model=MODEL, length=LENGTH, agents=AGENTS, scales=SCALES, extra=()) -> list[tuple]:
    return [
        cells.offline_cell(
            model, agents, length, "paper", f"++workload.append_scale={x:g}", f"++workload.gen_scale={x:g}", *extra
        )
        for x in scales
    ]


def make(results_dir=None, model=MODEL, length=LENGTH, agents=AGENTS, scales=SCALES, extra=()):
    data = cells.fetch(specs(model, length, agents, scales, extra), NAME, results_dir)
    rows = []
    for x, d in zip(scales, data):
        for s, m in d["systems"].items():
            rows.append(
                {
                    "scale": x,
                    "system": s,
                    "jct_s": m["jct_s"],
                    "speedup_vs_basic": d["comparison"][s]["speedup_vs_basic"],
                    "gap_to_oracle": d["comparison"][s].get("gap_to_oracle"),
                    "tokens_generated": m.get("tokens_generated"),
                    "file": rel(d["_path"]),
                }
            )
    systems = list(dict.fromkeys(r["system"] for r in rows))
    style()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, s in enumerate(systems):
        pts = [r for r in rows if r["system"] == s]
        kw = dict(marker=MARKERS.get(s, "o"), color=color(s, k), label=system_name(s))
        a1.plot([r["scale"] for r in pts], [r["jct_s"] for r in pts], **kw)
        if s != "basic":
            a2.plot([r["scale"] for r in pts], [r["speedup_vs_basic"] for r in pts], **kw)
    a1.set_ylabel("JCT (s)")
    a1.set_ylim(bottom=0)
    a2.set_ylabel("speedup over Basic")
    a2.axhline(1.0, color="k", lw=0.8, ls=":")
    for ax in (a1, a2):
        ax.set_xlabel("append and generation length scale")
        ax.set_xticks(list(scales), [f"{x:g}x" for x in scales])
        ax.legend()
    cfg = data[0]["config"]
    fig.suptitle(f"Length scaling: {title_of(cfg)}, {cfg['workload']['agents']} agents")
    fig.tight_layout()
    return save(fig, rows, NAME, results_dir)


main = figure_main(__doc__, make)


if __name__ == "__main__":
    main()

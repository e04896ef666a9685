"""Large scale: DS 660B, MAL 64k, Basic / DualPath / Oracle. Offline on 48P96D with LARGE_AGENTS
agents (the paper ran 48K; `--full` runs FULL_AGENTS and draws large_scale_a48000.png, so the
default figure stays), and online on 44P88D at LARGE_APS.

Cells: results/offline/ds660b_48p96d/agents<N>_len64k.json; results/online/ds660b_44p88d/aps<r>_len64k.json.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from . import cells, online_latency
from .plot import MARKERS, bar_labels, color, online_note, parser, rel, save, style, system_name, title_of

NAME = "large_scale"
MODEL = "ds660b"
LENGTH = "64k"
OFFLINE_CLUSTER = "48p96d"
ONLINE_CLUSTER = "44p88d"
LARGE_AGENTS = 12000  # a 48K-agent run takes 7-8.5 min per system on 2 cores (docs/simulator.md, Speed)
FULL_AGENTS = 48000
# 44P88D has 22x the nodes of 2P4D: an online_latency rate past Basic's saturation there, scaled
# by 22 (one rate: each 44P88D online cell simulates ~12K agents per system).
ONLINE_SCALE = 44 / 2
LARGE_APS = tuple(round(a * ONLINE_SCALE, 3) for a in (0.8,))


def specs(agents=LARGE_AGENTS, aps=LARGE_APS, extra=(), online_extra=()) -> list[tuple]:
    off = cells.offline_cell(MODEL, agents, LENGTH, "paper", f"cluster={OFFLINE_CLUSTER}", *extra)
    on = [f"model={MODEL}", f"cluster={ONLINE_CLUSTER}", f"+len={LENGTH}", "system=paper", *extra, *online_extra]
    return [off] + [("online", on, a) for a in aps]


def make(results_dir=None, agents=LARGE_AGENTS, aps=LARGE_APS, extra=(), online_extra=()):
    data = cells.fetch(specs(agents, aps, extra, online_extra), NAME, results_dir)
    off, online = data[0], data[1:]
    rows = [
        {
            "kind": "offline",
            "cluster": off["config"]["cluster"]["name"],
            "agents": off["config"]["workload"]["agents"],
            "system": s,
            "jct_s": m["jct_s"],
            "speedup_vs_basic": off["comparison"][s]["speedup_vs_basic"],
            "prefill_gpu_util": m["prefill_gpu_util"],
            "file": rel(off["_path"]),
        }
        for s, m in off["systems"].items()
    ]
    for d in online:
        for r in online_latency.latency_rows(d):
            rows.append({"cluster": d["config"]["cluster"]["name"], **r})
    style()
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.0))
    orow = [r for r in rows if r["kind"] == "offline"]
    bars = axes[0].bar(
        [system_name(r["system"]) for r in orow],
        [r["jct_s"] for r in orow],
        color=[color(r["system"], k) for k, r in enumerate(orow)],
    )
    bar_labels(axes[0], bars, [f"{r['speedup_vs_basic']:.2f}x" for r in orow], fontsize=9)
    axes[0].set_ylabel("JCT (s)")
    axes[0].set_title(f"offline: {title_of(off['config'])},\n{orow[0]['agents']:,} agents (labels: speedup over Basic)")
    cfg = online[0]["config"] if online else None
    lrows = [r for r in rows if r["kind"] == "latency"]
    panels = {"ttft_p90_s": "P90 TTFT (s)", "tpot_p90_ms": "P90 TPOT (ms)", "agent_jct_mean_s": "mean agent JCT (s)"}
    for ax, (key, label) in zip(axes[1:], panels.items()):
        for k, s in enumerate(dict.fromkeys(r["system"] for r in lrows)):
            pts = [r for r in lrows if r["system"] == s]
            ax.plot(
                [r["aps"] for r in pts],
                [r[key] for r in pts],
                marker=MARKERS.get(s, "o"),
                color=color(s, k),
                label=system_name(s),
            )
        if cfg and key == "ttft_p90_s":
            ax.axhline(cfg["online"]["slo"]["ttft_s"], color="k", ls="--", lw=1, label="SLO")
            ax.set_yscale("log")
        elif cfg and key == "tpot_p90_ms":
            ax.axhline(1e3 * cfg["online"]["slo"]["tpot_s"], color="k", ls="--", lw=1, label="SLO")
            ax.set_ylim(bottom=0)
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("arrival rate (agents/s)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
        if cfg:
            ax.set_title(f"online: {title_of(cfg)}")
    note = f"; {online_note(cfg)}" if cfg else ""
    online_cl = cfg["cluster"]["name"].upper() if cfg else "-"
    fig.suptitle(
        f"Large scale: offline {orow[0]['agents']:,} agents on {orow[0]['cluster'].upper()}, "
        f"online on {online_cl}{note}"
    )
    fig.tight_layout()
    return save(fig, rows, NAME if agents == LARGE_AGENTS else f"{NAME}_a{agents}", results_dir)


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--full", action="store_true", help=f"offline with {FULL_AGENTS} agents (the paper's count)")
    args = p.parse_args(argv)
    return make(args.results_dir, agents=FULL_AGENTS if args.full else LARGE_AGENTS)


if __name__ == "__main__":
    main()

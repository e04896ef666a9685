"""DRAM tier study: does a DRAM KV tier in front of storage still help once DualPath reads through
both sides? (The paper says combining the two gains little; this measures it in the simulator.)

python -m experiments.dramtier +agents=1024 +len=64k                    # DS 660B 2P4D, the main cell
python -m experiments.dramtier +agents=512 +len=32k model=ds27b +tiers=0,0.25,1

The arguments are Hydra overrides of configs/offline.yaml plus `+tiers` (TB of DRAM per node lent
to the tier, comma-separated; default configs/study/dram_tier.yaml, an assumption with its
source there). Tier 0 is the given cell as it is (with its oracle, the I/O-free reference); every
other size is one offline cell whose systems, the oracle left out, get `dram_tier_tb` of that
size (dualpath_jax/sim/tier.py: the nodes' shares pooled, an all-or-nothing LRU over agents),
through the results store (a stored cell is read, the missing ones run). Per system and size: JCT,
the tier's gain (JCT without / with), the share of hit KV the tier served, SNIC utilization.
Writes results/figures/dramtier_<model>_<cluster>_len<L>_a<agents>.{csv,png}.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from rich.table import Table

from dualpath_jax.paths import load_named, repo_path
from dualpath_jax.tracking import log_figure
from experiments.figures import cells
from experiments.figures.plot import cluster_name, color, model_name, rel, save, style, system_name
from experiments.sensitivity import key_of
from experiments.sweep import refuse_group_lists


def default_tiers() -> list[float]:
    return [float(t) for t in load_named("study", "dram_tier")["tier_tb_per_node"]]


def split_args(task: list[str]) -> tuple[list[str], list[float]]:
    """(the cell overrides, the tier sizes in TB per node) from the command line."""
    base, tiers = [], None
    for o in task:
        key, _, value = o.lstrip("+").partition("=")
        if key == "tiers":
            try:
                tiers = sorted({float(v) for v in value.split(",")})
            except ValueError:
                raise ValueError(f"{o}: tiers takes comma-separated TB per node, e.g. +tiers=0,0.25,1") from None
            if not tiers or tiers[0] < 0:
                raise ValueError(f"{o}: tier sizes must be >= 0 TB per node")
        elif key_of(o) != "rerun":
            base.append(o)
    return base, tiers if tiers is not None else default_tiers()


def tier_overrides(systems, tier_tb: float) -> list[str]:
    """The overrides of the cell at `tier_tb`: every system with I/O gets the tier, the oracle
    (free I/O: a tier changes nothing) is left out. Tier 0: the cell as given."""
    if tier_tb == 0:
        return []
    out = []
    for s in systems:
        out.append(f"~system.{s.name}" if s.free_io else f"+system.{s.name}.dram_tier_tb={tier_tb:g}")
    return out


def rows_of(tiers: list[float], data: list[dict]) -> list[dict]:
    by_tier = dict(zip(tiers, data))
    none = by_tier.get(0.0)
    rows = []
    for tier, res in by_tier.items():
        for s, m in res["systems"].items():
            base = none["systems"].get(s) if none else None
            rows.append(
                {
                    "tier_tb_per_node": tier,
                    "system": s,
                    "jct_s": m["jct_s"],
                    "gain_vs_no_tier": base["jct_s"] / m["jct_s"] if base else None,
                    "speedup_vs_basic": res["comparison"][s]["speedup_vs_basic"],
                    "tier_hit_share": m["tier_hit_bytes"] / m["hit_bytes"] if m["hit_bytes"] else 0.0,
                    "snic_util_pe": m["snic_util_pe"],
                    "snic_util_de": m["snic_util_de"],
                    "file": rel(res["_path"]),
                }
            )
    return rows


def verdict(rows: list[dict]) -> dict[str, dict]:
    """Per system with a tier: its largest gain over no tier, and at which size."""
    out = {}
    for r in rows:
        if r["gain_vs_no_tier"] is None or r["tier_tb_per_node"] == 0:
            continue
        best = out.get(r["system"])
        if best is None or r["gain_vs_no_tier"] > best["gain"]:
            out[r["system"]] = {"gain": r["gain_vs_no_tier"], "tier_tb_per_node": r["tier_tb_per_node"]}
    return out


def plot(rows: list[dict], title: str):
    style()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.0))
    ax, gx, hx = axes
    systems = list(dict.fromkeys(r["system"] for r in rows if r["tier_tb_per_node"] > 0))
    for k, s in enumerate(systems):
        mine = sorted((r for r in rows if r["system"] == s), key=lambda r: r["tier_tb_per_node"])
        x = [r["tier_tb_per_node"] for r in mine]
        kw = dict(marker="o", color=color(s, k), label=system_name(s))
        ax.plot(x, [r["jct_s"] for r in mine], **kw)
        gx.plot(x, [r["gain_vs_no_tier"] for r in mine], **kw)
        hx.plot(x, [r["tier_hit_share"] for r in mine], **kw)
    for r in rows:
        if r["system"] not in systems:  # the oracle of the tier-0 cell: the I/O-free reference
            ax.axhline(
                r["jct_s"], color=color(r["system"]), ls="--", lw=1, label=f"{system_name(r['system'])} (no I/O)"
            )
    sizes = sorted({r["tier_tb_per_node"] for r in rows})
    small = min((t for t in sizes if t > 0), default=1.0)
    for a in axes:
        a.set_xscale("symlog", linthresh=small)  # 0 (no tier) and sizes an order of magnitude apart
        a.set_xlim(left=0)
        a.set_xticks(sizes, [f"{t:g}" for t in sizes], rotation=45, fontsize=8)
        a.minorticks_off()
        a.set_xlabel("DRAM tier per node (TB), pooled over the nodes")
    ax.set_ylabel("offline JCT (s)")
    ax.set_ylim(bottom=0)
    gx.set_ylabel("JCT without the tier / with it")
    gx.axhline(1.0, color="black", lw=0.6)
    hx.set_ylabel("share of hit KV served by the tier")
    hx.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> tuple:
    task, console = cells.study_task(argv)
    with cells.user_overrides(console):
        base, tiers = split_args(task)
        refuse_group_lists(base)
        cfg = cells.offline_config(base)
        if not any(s.dram_tier_tb == 0 and not s.free_io for s in cfg.systems):
            raise ValueError("the study needs a system without a DRAM tier of its own (e.g. system=paper)")
        specs = [("offline", [*base, *tier_overrides(cfg.systems, t)]) for t in tiers]
        for spec in specs:
            cells.locate(spec)  # every config is built (and checked) before any cell runs
        results_dir = repo_path(cfg.results_dir)
    name = f"dramtier_{cfg.model.name}_{cfg.cluster.name}_len{cfg.workload.mal_label}_a{cfg.workload.agents}"
    data = cells.fetch(specs, name, results_dir)
    rows = rows_of(tiers, data)
    title = (
        f"DRAM tier: {model_name(cfg.model.name)}, {cluster_name(cfg.cluster.name)}, "
        f"MAL {cfg.workload.mal_label}, {cfg.workload.agents} agents"
    )
    csv_path, png = save(plot(rows, title), rows, name, results_dir)
    log_figure(cfg.tracking, name, png, csv_path, {"overrides": task})
    systems = list(dict.fromkeys(r["system"] for r in rows))
    table = Table("tier TB/node", *(f"{system_name(s)} JCT s (gain)" for s in systems), title=title)
    for t in tiers:
        sel = {r["system"]: r for r in rows if r["tier_tb_per_node"] == t}
        out = []
        for s in systems:
            r = sel.get(s)
            gain = "" if r is None or r["gain_vs_no_tier"] is None else f" ({r['gain_vs_no_tier']:.2f}x)"
            out.append("-" if r is None else f"{r['jct_s']:,.1f}{gain}")
        table.add_row(f"{t:g}", *out)
    console.print(table)
    for s, v in verdict(rows).items():
        console.print(
            f"{system_name(s)}: the tier's largest gain {v['gain']:.3f}x (at {v['tier_tb_per_node']:g} TB/node)"
        )
    console.print(f"figure: {rel(png)}\ntable: {rel(csv_path)}", soft_wrap=True)
    return csv_path, png, rows


if __name__ == "__main__":
    main()

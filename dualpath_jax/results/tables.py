"""The printed tables of the offline and online experiments (rich), and their plain-text form."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from ..attribution import describe
from .identity import model_name
from .result import OfflineResult


def offline_payload(res: OfflineResult) -> dict:
    """The numbers of an offline run as stored in its results file."""
    out = {
        "calibration": res.efficiency.as_dict(),
        "systems": {name: m.as_dict() for name, m in res.systems.items()},
        "comparison": res.comparison(),
    }
    if res.attribution:
        out["attribution"] = res.attribution
    if res.fidelity:
        out["fidelity"] = res.fidelity
    return out


def mal_part(cfg) -> str:
    """`, MAL 64k`, or nothing for a trace workload run without +len."""
    return f", MAL {cfg.workload.mal_label}" if cfg.workload.mal_label else ""


def rate_part(cfg) -> str:
    return "trace arrivals" if cfg.online.arrivals == "trace" else f"{cfg.online.aps:g} agents/s"


def comparison_table(res: OfflineResult) -> Table:
    cfg = res.cfg
    where = " (real testbed)" if cfg.backend == "real" else ""
    table = Table(
        title=f"offline{where}: {model_name(cfg)} on {cfg.cluster.name}, {cfg.workload.agents} agents{mal_part(cfg)}"
    )
    table.add_column("system", no_wrap=True, min_width=14)
    for col in (
        "JCT s",
        "vs basic",
        "vs oracle",
        "PE GPU util",
        "DE GPU busy",
        "PE SNIC",
        "DE SNIC",
        "layer ms",
        "TPOT ms",
    ):
        table.add_column(col, justify="right")
    comp = res.comparison()
    for name, m in res.systems.items():
        gap = comp[name].get("gap_to_oracle")
        table.add_row(
            name,
            f"{m.jct_s:,.1f}",
            f"{comp[name]['speedup_vs_basic']:.2f}x",
            "-" if gap is None else f"{gap:+.1%}",
            f"{m.prefill_gpu_util:.1%}",
            f"{m.decode_gpu_busy:.1%}",
            f"{m.snic_util_pe:.1%}",
            f"{m.snic_util_de:.1%}",
            f"{m.prefill_layer_ms:.2f}",
            f"{1e3 * m.tpot_s['mean']:.1f}",
        )
    return table


def online_table(cfg, systems: dict) -> Table:
    table = Table(title=f"online: {cfg.model.name} on {cfg.cluster.name}, {rate_part(cfg)}{mal_part(cfg)}")
    table.add_column("system", no_wrap=True, min_width=14)
    for col in (
        "agents",
        "TTFT p90 s",
        "TTST p90 s",
        "TPOT p90 ms",
        "SLO",
        "agent JCT s",
        "wait s",
        "alloc s",
        "read s",
        "prefill s",
        "WS max GB",
    ):
        table.add_column(col, justify="right")
    for name, r in systems.items():
        lat, br = r["latency"], r["ttft_breakdown_s"]
        jct = r["agent_jct_s"].get("mean")
        table.add_row(
            name,
            str(r["agents"]),
            f"{lat['ttft_s']['p90']:.2f}",
            f"{lat['ttst_s']['p90']:.2f}",
            f"{1e3 * lat['tpot_s']['p90']:.1f}",
            "met" if r["slo_met"] else "missed",
            "-" if jct is None else f"{jct:,.0f}",
            f"{br['sched']:.2f}",
            f"{br['alloc']:.2f}",
            f"{br['read']:.2f}",
            f"{br['prefill']:.2f}",
            f"{r['working_set_bytes']['max'] / 1e9:,.0f}",
        )
    return table


def capacity_table(cfg, systems: dict) -> Table:
    slo = cfg.online.slo
    table = Table(
        title=f"capacity (P{slo.percentile:g} TTFT <= {slo.ttft_s} s, TPOT <= {1e3 * slo.tpot_s:g} ms): "
        f"{model_name(cfg)} on {cfg.cluster.name}{mal_part(cfg)}"
    )
    for col in ("system", "capacity APS", "vs basic", "probes"):
        table.add_column(col)
    base = systems.get("basic", {}).get("capacity_aps")
    for name, r in systems.items():
        ratio = f"{r['capacity_aps'] / base:.2f}x" if base else "-"
        table.add_row(name, f"{r['capacity_aps']:.3g}", ratio, str(len(r["probes"])))
    return table


def attribution_lines(res: OfflineResult) -> list[str]:
    """A line per system saying which floor sets its JCT (cost model v2 runs; none under v1)."""
    return [describe(name, a) for name, a in res.attribution.items()]


def offline_text(res: OfflineResult) -> str:
    """An offline run's table as stored beside its results file, its attribution lines under it."""
    return as_text(comparison_table(res)) + "".join(f"{line}\n" for line in attribution_lines(res))


def as_text(table: Table, width: int = 120) -> str:
    """A table as the plain text stored beside a results file."""
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(table)
    return console.export_text()


def summary_numbers(summary: dict, prefix: str = "") -> dict[str, float]:
    """A system summary's numeric leaves by dotted key (`ttft_s.p99`, `probes[0].aps`); booleans,
    strings and lists of plain values left out. What `compare` and W&B tables show."""
    out: dict[str, float] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(summary_numbers(v, f"{key}."))
        elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            for i, x in enumerate(v):
                out.update(summary_numbers(x, f"{key}[{i}].") if isinstance(x, dict) else {})
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out

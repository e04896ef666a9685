"""Results files and the comparison table.

File: <results_dir>/offline/<model>_<cluster>/agents<N>_len<L>[_<system set>][_append<a>_gen<g>]
[_<workload source>].json holding
{"config": resolved config, "calibration": efficiencies, "systems": {name: metrics},
 "comparison": {name: {speedup_vs_basic, gap_to_oracle}}}. No wall-clock fields: the same seed
gives a byte-identical file. Writes are atomic (temp file + rename): a crash never leaves half a file.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .config import to_dict
from .experiment import OfflineResult


def model_name(cfg) -> str:
    """The model that ran: the simulator's ModelSpec, or the testbed's Flax model (backend=real)."""
    return cfg.testbed.model if cfg.backend == "real" else cfg.model.name


def result_path(res: OfflineResult, results_dir: str | Path | None = None) -> Path:
    cfg = res.cfg
    base = Path(results_dir if results_dir is not None else cfg.results_dir)
    suffix = "" if cfg.system_set == "paper" else f"_{cfg.system_set}"
    if cfg.backend != "sim":
        suffix += f"_{cfg.backend}"
    w = cfg.workload
    if w.append_scale != 1.0 or w.gen_scale != 1.0:
        suffix += f"_append{w.append_scale:g}_gen{w.gen_scale:g}"
    if w.source != "synthetic":
        suffix += f"_{w.source}"
    return (base / "offline" / f"{model_name(cfg)}_{cfg.cluster.name}"
            / f"agents{cfg.workload.agents}_len{cfg.workload.mal_label}{suffix}.json")


def result_dict(res: OfflineResult) -> dict:
    return {
        "config": to_dict(res.cfg),
        "calibration": res.efficiency.as_dict(),
        "systems": {name: m.as_dict() for name, m in res.systems.items()},
        "comparison": res.comparison(),
    }


def write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result(res: OfflineResult, results_dir: str | Path | None = None) -> Path:
    path = result_path(res, results_dir)
    write_json_atomic(path, result_dict(res))
    return path


def comparison_table(res: OfflineResult) -> Table:
    cfg = res.cfg
    where = " (real testbed)" if cfg.backend == "real" else ""
    table = Table(title=f"offline{where}: {model_name(cfg)} on {cfg.cluster.name}, {cfg.workload.agents} agents, "
                        f"MAL {cfg.workload.mal_label}")
    table.add_column("system", no_wrap=True, min_width=14)
    for col in ("JCT s", "vs basic", "vs oracle", "PE GPU util", "DE GPU busy", "PE SNIC", "DE SNIC",
                "layer ms", "TPOT ms"):
        table.add_column(col, justify="right")
    comp = res.comparison()
    for name, m in res.systems.items():
        gap = comp[name].get("gap_to_oracle")
        table.add_row(name, f"{m.jct_s:,.1f}", f"{comp[name]['speedup_vs_basic']:.2f}x",
                      "-" if gap is None else f"{gap:+.1%}", f"{m.prefill_gpu_util:.1%}",
                      f"{m.decode_gpu_busy:.1%}", f"{m.snic_util_pe:.1%}", f"{m.snic_util_de:.1%}",
                      f"{m.prefill_layer_ms:.2f}", f"{1e3 * m.tpot_s['mean']:.1f}")
    return table


def print_table(res: OfflineResult, console: Console | None = None) -> None:
    (console or Console()).print(comparison_table(res))


def write_table(res: OfflineResult, path: Path) -> Path:
    """The comparison table as plain text beside the results file."""
    console = Console(record=True, width=120, file=open(os.devnull, "w"))
    console.print(comparison_table(res))
    out = path.with_suffix(".txt")
    out.write_text(console.export_text())
    return out


def online_path(cfg, kind: str, results_dir: str | Path | None = None) -> Path:
    """results/online/<model>_<cluster>/<kind>_len<L>[_<set>][_think<kind><mean>].json,
    kind = "aps<rate>" or "capacity"."""
    base = Path(results_dir if results_dir is not None else cfg.results_dir)
    suffix = "" if cfg.system_set == "paper" else f"_{cfg.system_set}"
    think = cfg.online.think
    if think.kind != "none":
        suffix += f"_think{think.kind}{think.mean_s:g}"
    return (base / "online" / f"{cfg.model.name}_{cfg.cluster.name}"
            / f"{kind}_len{cfg.workload.mal_label}{suffix}.json")


def online_table(title: str, systems: dict) -> Table:
    table = Table(title=title)
    table.add_column("system", no_wrap=True, min_width=14)
    for col in ("agents", "TTFT p90 s", "TTST p90 s", "TPOT p90 ms", "SLO", "agent JCT s",
                "wait s", "alloc s", "read s", "prefill s", "WS max GB"):
        table.add_column(col, justify="right")
    for name, r in systems.items():
        lat, br = r["latency"], r["ttft_breakdown_s"]
        table.add_row(name, str(r["agents"]), f"{lat['ttft_s']['p90']:.2f}", f"{lat['ttst_s']['p90']:.2f}",
                      f"{1e3 * lat['tpot_s']['p90']:.1f}", "met" if r["slo_met"] else "missed",
                      f"{r['agent_jct_s'].get('mean', float('nan')):,.0f}", f"{br['sched']:.2f}",
                      f"{br['alloc']:.2f}", f"{br['read']:.2f}", f"{br['prefill']:.2f}",
                      f"{r['working_set_bytes']['max'] / 1e9:,.0f}")
    return table

"""Latency distributions of one stored cell: CDFs of TTFT, TTST, TPOT and per-agent JCT per system.

    python -m experiments.cdf 52e88be7                 # a cell id (or a results .json path)
    python -m experiments.cdf results/online/ds27b_1p1d/aps1_len32k_costv2-52e88be7.json

Reads the cell's per-turn records (`<cell>.turns.csv`, written when the cell runs with
`sim.record_turns=true`). TTFT = first token - arrival; TTST = second token - first token; TPOT =
(last token - joining the decode batch) / (output - 1), for turns of more than one output token;
an agent's JCT = its last turn's end - its first turn's arrival. For an online cell only turns
arriving after `online.warmup_s` count, as in its summary. Writes results/figures/cdf_<cell>.png and
.csv (per system and metric, the 1st..99th percentiles and the max).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console

from dualpath_jax.paths import ROOT
from dualpath_jax.results.turns import turns_path
from experiments.figures.plot import color, rel, save, style, system_name
from experiments.results import find_cell, read_cell

METRICS = (("ttft_s", "TTFT (s)"), ("ttst_s", "TTST (s)"), ("tpot_s", "TPOT (ms)"), ("agent_jct_s", "agent JCT (s)"))
LEVELS = (*range(1, 100), 100)


def load_turns(results_file: Path, since: float = 0.0) -> dict[str, dict[str, np.ndarray]]:
    """{system: {metric: values}} from the cell's records; turns arriving before `since` left out."""
    path = turns_path(results_file)
    if not path.is_file():
        raise ValueError(f"{path}: no per-turn records; run the cell again with sim.record_turns=true")
    by_system: dict[str, list[dict]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            by_system.setdefault(row["system"], []).append(row)
    out = {}
    for s, rows in by_system.items():
        f = {
            k: np.array([float(r[k]) for r in rows])
            for k in ("arrive", "first_token", "second_token", "joined", "finished", "output")
        }
        agents = np.array([int(r["agent"]) for r in rows])
        keep = f["arrive"] >= since
        multi = keep & (f["output"] > 1)
        first, last = {}, {}
        for a, t0, t1 in zip(agents[keep], f["arrive"][keep], f["finished"][keep]):
            first[a], last[a] = min(first.get(a, t0), t0), max(last.get(a, t1), t1)
        out[s] = {
            "ttft_s": (f["first_token"] - f["arrive"])[keep],
            "ttst_s": (f["second_token"] - f["first_token"])[multi],
            "tpot_s": ((f["finished"] - f["joined"]) / np.maximum(f["output"] - 1, 1))[multi],
            "agent_jct_s": np.array([last[a] - first[a] for a in first]),
        }
    return out


def quantile_rows(values: dict[str, dict[str, np.ndarray]], source: str) -> list[dict]:
    """Per system and metric the LEVELS percentiles, each row naming the cell's results file."""
    rows = []
    for s, by_metric in values.items():
        for m, v in by_metric.items():
            if len(v):
                q = np.percentile(v, LEVELS)
                rows += [
                    {"system": s, "metric": m, "percentile": p, "value": float(x), "n": len(v), "file": source}
                    for p, x in zip(LEVELS, q)
                ]
    return rows


def plot(values: dict[str, dict[str, np.ndarray]], title: str):
    style()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.0 * len(METRICS), 3.4))
    for ax, (m, label) in zip(axes, METRICS):
        for k, (s, by_metric) in enumerate(values.items()):
            v = np.sort(by_metric[m]) * (1e3 if m == "tpot_s" else 1.0)
            if len(v):
                ax.plot(v, np.arange(1, len(v) + 1) / len(v), color=color(s, k), label=system_name(s))
        ax.set_xlabel(label)
        ax.set_ylim(0, 1.0)
    axes[0].set_ylabel("fraction of turns (agents, last panel)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> tuple[Path, Path]:
    p = argparse.ArgumentParser(prog="python -m experiments.cdf", description=__doc__.splitlines()[0])
    p.add_argument("cell", help="a cell id or a results .json file")
    p.add_argument("--results-dir", default=str(ROOT / "results"))
    args = p.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        path = find_cell(args.cell, Path(args.results_dir))
        data = read_cell(path)
        online = data["cell"]["kind"] == "online"
        since = data["config"]["online"]["warmup_s"] if online else 0.0
        values = load_turns(path, since)
    except ValueError as e:
        console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)
    c = data["config"]
    what = f"online {c['online']['aps']:g} APS, turns after {since:g} s" if online else "offline"
    title = f"{c['model']['name']} on {c['cluster']['name']}, MAL {c['workload']['mal_label']}, {what}"
    csv_path, png = save(
        plot(values, title), quantile_rows(values, rel(path)), f"cdf_{path.stem}", Path(args.results_dir)
    )
    console.print(f"figure: {png}\ntable: {csv_path}", soft_wrap=True)
    return csv_path, png


if __name__ == "__main__":
    main()

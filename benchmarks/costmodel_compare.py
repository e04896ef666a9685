"""Cost model v1 against v2 on the same cells: JCT, speedup over Basic, mean TTFT and TPOT.

    python benchmarks/costmodel_compare.py            # the main cell, the ablation ladder, DS 27B 1P1D,
                                                      # the 44P88D online cell
    python benchmarks/costmodel_compare.py --stored-only

Each pair of cells is read from results/ (or run there first, unless --stored-only); writes
results/bench/costmodel_v1_v2.{json,txt} naming every file it read.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.report, run as a script

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.report import write_report  # noqa: E402
from dualpath_jax.paths import ROOT  # noqa: E402
from dualpath_jax.results import StaleCellError  # noqa: E402
from experiments.figures import cells  # noqa: E402
from experiments.figures.plot import rel  # noqa: E402

CELLS = {
    "main (DS 660B 2P4D, 1024 agents, 64k)": ["+agents=1024", "+len=64k"],
    "ablation ladder (same cell)": ["+agents=1024", "+len=64k", "system=ablation"],
    "DS 27B 1P1D (1024 agents, 64k)": ["model=ds27b", "cluster=1p1d", "+agents=1024", "+len=64k"],
}
# online: (overrides, agents per second); JCT is the mean agent JCT, speedup Basic's over it
ONLINE = {
    "44P88D online (DS 660B, 17.6 APS, 64k)": (["model=ds660b", "cluster=44p88d", "+len=64k", "system=paper"], 17.6),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stored-only", action="store_true", help="run no cell: a missing one is an error")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = ap.parse_args()
    cells.STORED_ONLY = args.stored_only
    table = Table("cell", "system", "v1 JCT s", "v2 JCT s", "v1 speedup", "v2 speedup", "v1 TTFT s",
                  "v2 TTFT s", "v1 TPOT ms", "v2 TPOT ms", "v2 set by", title="cost model v1 vs v2")  # fmt: skip
    pairs = []  # (label, v1 file, v2 file, kind)
    try:
        for label, overrides in CELLS.items():
            pairs.append((label, *(cells.offline([*overrides, f"costmodel={v}"]) for v in ("v1", "v2")), "offline"))
        for label, (overrides, aps) in ONLINE.items():
            pairs.append((label, *(cells.online([*overrides, f"costmodel={v}"], aps) for v in ("v1", "v2")), "online"))
    except StaleCellError as e:  # --stored-only and a cell missing: name its file
        ap.exit(2, f"error: {e}\n")
    rows = []
    for label, v1, v2, kind in pairs:
        for s in v1["systems"]:
            row = {
                "cell": label,
                "system": s,
                **_numbers(v1, v2, s, kind),
                "files": [rel(v1["_path"]), rel(v2["_path"])],
            }
            rows.append(row)
            why = f"{row['v2_set_by']} ({row['v2_jct_over_floor']:.2f}x)" if kind == "offline" else "-"
            table.add_row(
                label if s == next(iter(v1["systems"])) else "",
                s,
                *(f"{x:,.1f}" for x in row["jct_s"]),
                *(f"{x:.2f}x" for x in row["speedup_vs_basic"]),
                *(f"{x:.2f}" for x in row["ttft_mean_s"]),
                *(f"{1e3 * x:.1f}" for x in row["tpot_mean_s"]),
                why,
            )
    console = Console(width=170, record=True, file=io.StringIO())
    console.print(table)
    lines = console.export_text().rstrip("\n").splitlines()
    write_report(Path(args.out), "costmodel_v1_v2", {"rows": rows}, lines)


def _numbers(v1: dict, v2: dict, s: str, kind: str) -> dict:
    """One system's JCT, speedup over Basic, mean TTFT and TPOT under each version (offline: the
    run's JCT and which floor sets it under v2; online: the mean agent JCT)."""
    if kind == "offline":
        why = v2["attribution"][s]
        return {
            "jct_s": [d["systems"][s]["jct_s"] for d in (v1, v2)],
            "speedup_vs_basic": [d["comparison"][s]["speedup_vs_basic"] for d in (v1, v2)],
            "ttft_mean_s": [d["systems"][s]["ttft_s"]["mean"] for d in (v1, v2)],
            "tpot_mean_s": [d["systems"][s]["tpot_s"]["mean"] for d in (v1, v2)],
            "v2_set_by": why["set_by"],
            "v2_jct_over_floor": why["jct_over_floor"],
        }
    jct = [{n: m["agent_jct_s"]["mean"] for n, m in d["systems"].items()} for d in (v1, v2)]
    return {
        "jct_s": [j[s] for j in jct],
        "speedup_vs_basic": [j["basic"] / j[s] for j in jct],
        "ttft_mean_s": [d["systems"][s]["latency"]["ttft_s"]["mean"] for d in (v1, v2)],
        "tpot_mean_s": [d["systems"][s]["latency"]["tpot_s"]["mean"] for d in (v1, v2)],
    }


if __name__ == "__main__":
    main()

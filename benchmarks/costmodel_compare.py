"""Cost model v1 against v2 on the same cells: JCT, speedup over Basic, mean TTFT and TPOT.

    python benchmarks/costmodel_compare.py            # the main cell, the ablation ladder, DS 27B 1P1D
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stored-only", action="store_true", help="run no cell: a missing one is an error")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = ap.parse_args()
    cells.STORED_ONLY = args.stored_only
    table = Table("cell", "system", "v1 JCT s", "v2 JCT s", "v1 speedup", "v2 speedup", "v1 TTFT s",
                  "v2 TTFT s", "v1 TPOT ms", "v2 TPOT ms", "v2 set by", title="cost model v1 vs v2")  # fmt: skip
    rows = []
    for label, overrides in CELLS.items():
        try:
            v1 = cells.offline([*overrides, "costmodel=v1"])
            v2 = cells.offline([*overrides, "costmodel=v2"])
        except StaleCellError as e:  # --stored-only and a cell missing: name its file
            ap.exit(2, f"error: {e}\n")
        for s, m1 in v1["systems"].items():
            m2, why = v2["systems"][s], v2["attribution"][s]
            row = {
                "cell": label,
                "system": s,
                "jct_s": [m1["jct_s"], m2["jct_s"]],
                "speedup_vs_basic": [v1["comparison"][s]["speedup_vs_basic"], v2["comparison"][s]["speedup_vs_basic"]],
                "ttft_mean_s": [m1["ttft_s"]["mean"], m2["ttft_s"]["mean"]],
                "tpot_mean_s": [m1["tpot_s"]["mean"], m2["tpot_s"]["mean"]],
                "v2_set_by": why["set_by"],
                "v2_jct_over_floor": why["jct_over_floor"],
                "files": [rel(v1["_path"]), rel(v2["_path"])],
            }
            rows.append(row)
            table.add_row(
                label if s == next(iter(v1["systems"])) else "",
                s,
                *(f"{x:,.1f}" for x in row["jct_s"]),
                *(f"{x:.2f}x" for x in row["speedup_vs_basic"]),
                *(f"{x:.2f}" for x in row["ttft_mean_s"]),
                *(f"{1e3 * x:.1f}" for x in row["tpot_mean_s"]),
                f"{why['set_by']} ({why['jct_over_floor']:.2f}x)",
            )
    console = Console(width=170, record=True, file=io.StringIO())
    console.print(table)
    lines = console.export_text().rstrip("\n").splitlines()
    write_report(Path(args.out), "costmodel_v1_v2", {"rows": rows}, lines)


if __name__ == "__main__":
    main()

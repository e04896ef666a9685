"""Regenerate the paper's evaluation figures from the cells under results/ (running missing cells).

python -m experiments.figures                       # every figure, in an order that reuses cells
python -m experiments.figures offline_jct pd_ratio  # only these
python -m experiments.figures large_scale --full    # the large-scale offline cell with 48K agents
python -m experiments.figures --jobs 1              # missing cells one at a time (default: one per core)
python -m experiments.figures --stored-only         # draw from stored cells only; a missing or
                                                    # stale cell is an error naming its file
python -m experiments.figures ablation --rerun      # recompute the cells of these figures
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from rich.table import Table

from dualpath_jax.results import StaleCellError

from . import cells

# Offline figures first (their cells come from the offline sweep), then the online ones:
# online_latency makes the cells that ttft_breakdown and working_set reuse; large_scale is the
# costliest, so it comes last.
FIGURES = (
    "offline_jct",
    "pd_ratio",
    "scaling",
    "ablation",
    "load_balance",
    "online_latency",
    "ttft_breakdown",
    "working_set",
    "large_scale",
)


# Costliest first, so one pool keeps every process busy to the end (figure by figure, the last
# figures' few long cells ran alone): a capacity search runs many online cells, an online cell
# simulates more agents than an offline one; within a kind, the last figures' cells first.
KIND_ORDER = {"capacity": 0, "online": 1, "offline": 2}


def all_specs(chosen: list[str], full: bool = False, results_dir=None) -> list[tuple]:
    """Every cell the chosen figures draw, each once (by its results file), costliest first."""
    out, seen = [], set()
    for name in reversed(chosen):
        mod = importlib.import_module(f"{__package__}.{name}")
        wanted = mod.specs(agents=mod.FULL_AGENTS) if full and name == "large_scale" else mod.specs()
        for spec in wanted:
            path = cells.locate(spec, results_dir).path
            if path not in seen:
                seen.add(path)
                out.append(spec)
    return sorted(out, key=lambda spec: KIND_ORDER[spec[0]])


def main(argv=None) -> dict[str, float]:
    p = argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("figures", nargs="*", metavar="figure", help=f"any of: {', '.join(FIGURES)} (default: all)")
    p.add_argument("--results-dir", default=None, help=f"default {cells.RESULTS}")
    p.add_argument("--full", action="store_true", help="large_scale: the paper's 48K agents offline")
    p.add_argument(
        "--jobs",
        type=int,
        default=cells.JOBS,
        help=f"processes that run missing cells side by side (default: CPU cores, {cells.JOBS})",
    )
    p.add_argument(
        "--stored-only",
        action="store_true",
        help="run no cell: a missing or stale cell (other simulator semantics) is an error",
    )
    p.add_argument("--rerun", action="store_true", help="recompute every cell the figures use")
    args = p.parse_args(argv)
    unknown = [f for f in args.figures if f not in FIGURES]
    if unknown:
        p.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.stored_only and args.rerun:
        p.error("--stored-only and --rerun contradict each other")
    cells.JOBS, cells.STORED_ONLY, cells.RERUN = args.jobs, args.stored_only, args.rerun
    chosen = [f for f in FIGURES if f in args.figures] if args.figures else list(FIGURES)
    con = cells.console
    walls: dict[str, float] = {}
    t_all = time.perf_counter()
    if not args.stored_only:  # every missing cell first, in one pool; then the figures draw
        con.rule("[bold]cells")
        t0 = time.perf_counter()
        cells.fetch(all_specs(chosen, args.full, args.results_dir), "all figures", args.results_dir)
        walls["cells"] = time.perf_counter() - t0
        con.print(f"cells: {walls['cells']:.1f} s wall, {sum(cells.RUNS.values())} cell(s) run")
    for name in chosen:
        mod = importlib.import_module(f"{__package__}.{name}")
        fargs = [] if args.results_dir is None else ["--results-dir", args.results_dir]
        if args.full and name == "large_scale":
            fargs.append("--full")
        con.rule(f"[bold]{name}")
        runs0 = sum(cells.RUNS.values())
        t0 = time.perf_counter()
        try:
            csv_path, png = mod.main(fargs)
        except StaleCellError as e:
            con.print(f"[bold red]error:[/] {name}: {e}", soft_wrap=True)
            sys.exit(2)
        walls[name] = time.perf_counter() - t0
        con.print(
            f"{name}: {walls[name]:.1f} s wall, {sum(cells.RUNS.values()) - runs0} cell(s) run; "
            f"{cells._rel(png)}, {cells._rel(csv_path)}"
        )
    total = time.perf_counter() - t_all
    table = Table(title="figure wall times")
    table.add_column("figure")
    table.add_column("wall s", justify="right")
    for name, w in walls.items():
        table.add_row(name, f"{w:.1f}")
    table.add_row("[bold]total", f"[bold]{total:.1f}")
    con.print(table)
    con.print(f"cells run: {dict(cells.RUNS) or 'none (all read from results/)'}")
    return walls


if __name__ == "__main__":
    main()

"""Cost model v2 against DeepSeek's cost per million tokens by token position (V3.1 vs V3.2).

    python benchmarks/dsv32_cost_anchor.py
    python benchmarks/dsv32_cost_anchor.py --results-dir /tmp/results

The anchor is configs/anchors/dsv32_cost_position.yaml (the DeepSeek-V3.2-Exp report's cost.jpg,
H800 at 2 USD per GPU hour, digitized); the model's cost of one token at position p is
dualpath_jax/costmodel/position.py (its docstring has the definitions). Computes the model at every
anchor point and on a 1K..128K grid, prints model/anchor per point and its range per curve against
the band of tests/test_cost_position.py, and writes results/figures/dsv32_cost_position.{png,csv}
and results/bench/dsv32_cost_position.{json,txt} (with the code that made them).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.report, run as a script

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.report import write_report  # noqa: E402
from dualpath_jax.costmodel import position as pos  # noqa: E402
from experiments.figures.cells import results_root  # noqa: E402
from experiments.figures.plot import finish, rel, save, style  # noqa: E402

NAME = "dsv32_cost_position"
BAND = (0.5, 2.0)  # tests/test_cost_position.py
GRID = [k * 1024 for k in range(1, 129)]  # 1K .. 128K
COLORS = {"dsv3": "#1f77b4", "ds660b": "#d62728"}
ARCH = {"dsv3": "dense MLA", "ds660b": "DSA"}


def curve_report(curve: pos.AnchorCurve, price: float) -> dict:
    cost = pos.position_cost_model(curve.model)

    def usd(p: int) -> float:
        return pos.usd_per_million(pos.s_per_token(cost, curve.stage, p), price)

    points = []
    for p, anchor in curve.points:
        model = usd(p)
        row = {"position": p, "anchor_usd": anchor, "model_usd": model, "ratio": model / anchor}
        if curve.stage == "decode":
            row["batch"] = pos.decode_batch(cost, p)
        points.append(row)
    ratios = [r["ratio"] for r in points]
    return {
        "name": curve.name,
        "stage": curve.stage,
        "model": curve.model,
        "cluster": cost.cluster.name,
        "ep": {"prefill": cost.prefill_ep, "decode": cost.decode_ep},
        "efficiency": cost.eff.as_dict(),
        "points": points,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "in_band": BAND[0] <= min(ratios) and max(ratios) <= BAND[1],
        "grid": {"position": GRID, "model_usd": [usd(p) for p in GRID]},
    }


def plot(curves: list[dict], price: float, results_dir) -> tuple[Path, Path]:
    style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, stage in zip(axes, pos.STAGES):
        for c in (c for c in curves if c["stage"] == stage):
            col, arch = COLORS.get(c["model"], "k"), ARCH.get(c["model"], "")
            ax.plot([p / 1024 for p in c["grid"]["position"]], c["grid"]["model_usd"], "-", color=col, lw=1.8,
                    label=f"cost model v2: {c['name']} ({c['model']}, {arch})")  # fmt: skip
            ax.plot([r["position"] / 1024 for r in c["points"]], [r["anchor_usd"] for r in c["points"]], "o",
                    color=col, mfc="white", mew=1.5, ms=6, label=f"DeepSeek report: {c['name']}")  # fmt: skip
        ax.axvspan(0, 8, color="0.9", lw=0)
        ax.text(4, 0.98, "V3.2:\nmasked\ndense\n(unused)", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=6.5, color="0.35")  # fmt: skip
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(mticker.FixedLocator([0.1, 0.2, 0.5, 1, 2, 5]))
        ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(mticker.NullFormatter())
        ax.set_xlim(0, 132)
        ax.set_xlabel("token position (K tokens)")
        ax.set_ylabel("USD per million tokens (log scale)")
        ax.set_title(stage.capitalize())
    fig.suptitle(
        f"Cost per million tokens by token position on H800 at {price:g} USD per GPU hour: "
        f"cost model v2 (lines) vs the DeepSeek-V3.2-Exp report (markers)",
        fontsize=10.5,
    )
    finish(fig, axes[0], ncol=2)
    rows = [
        {k: c[k] for k in ("stage", "model")} | {k: r[k] for k in ("position", "anchor_usd", "model_usd", "ratio")}
        for c in curves
        for r in c["points"]
    ]
    return save(fig, rows, NAME, results_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--results-dir", default=None, help="figures/ and bench/ go under it (default results/)")
    ap.add_argument("--anchor", default=str(pos.ANCHOR_PATH), help="the anchor file")
    args = ap.parse_args()
    anchor = pos.load_anchor(args.anchor)
    price = anchor.price_usd_per_gpu_hour
    curves = [curve_report(c, price) for c in anchor.curves]
    csv_path, png = plot(curves, price, args.results_dir)

    table = Table("stage", "curve", "position K", "anchor USD/M", "model USD/M", "model/anchor", "decode batch",
                  title=f"cost model v2 vs the DeepSeek-V3.2-Exp cost anchor ({price:g} USD per H800 hour)")  # fmt: skip
    summary = Table("stage", "curve", "ratio min", "ratio max", f"in [{BAND[0]:g}, {BAND[1]:g}]",
                    title="model/anchor per curve")  # fmt: skip
    for c in curves:
        label = f"{c['name']} ({c['model']})"
        for i, r in enumerate(c["points"]):
            table.add_row(
                c["stage"] if i == 0 else "",
                label if i == 0 else "",
                f"{r['position'] / 1024:.1f}",
                f"{r['anchor_usd']:.3f}",
                f"{r['model_usd']:.3f}",
                f"{r['ratio']:.2f}",
                f"{r['batch']:.0f}" if "batch" in r else "",
            )
        table.add_section()
        summary.add_row(c["stage"], label, f"{c['ratio_min']:.2f}", f"{c['ratio_max']:.2f}",
                        "yes" if c["in_band"] else "NO")  # fmt: skip
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(table)
    console.print(summary)
    console.print(f"wrote {rel(png)} and {rel(csv_path)}")
    lines = console.export_text().rstrip("\n").splitlines()
    report = {
        "anchor": {
            "file": rel(anchor.path),
            "source": anchor.source,
            "price_usd_per_gpu_hour": price,
            "read_error_usd": anchor.read_error_usd,
        },  # fmt: skip
        "definitions": {"module": "dualpath_jax/costmodel/position.py", "text": " ".join(pos.__doc__.split())},
        "band": list(BAND),
        "curves": curves,
        "figure": [rel(png), rel(csv_path)],
    }
    write_report(results_root(args.results_dir) / "bench", NAME, report, lines)


if __name__ == "__main__":
    main()

"""Shared figure style, names, the common command line, and CSV + PNG output."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dualpath_jax.atomic import atomic_write  # noqa: E402

from .cells import ROOT, results_root  # noqa: E402

MODEL_NAMES = {"ds660b": "DS 660B", "ds27b": "DS 27B", "qwen32b": "Qwen 32B", "dsv3": "DeepSeek-V3"}
SYSTEM_NAMES = {
    "basic": "Basic",
    "dualpath": "DualPath",
    "oracle": "Oracle",
    "sglang_mc": "SGLang(MC)",
    "round_robin": "Round robin",
    "least_loaded": "Least loaded",
    "dualpath_split": "DualPath + split read",
}
SYSTEM_COLORS = {
    "basic": "#7f7f7f",
    "dualpath": "#d62728",
    "oracle": "#2ca02c",
    "sglang_mc": "#1f77b4",
    "round_robin": "#9467bd",
    "least_loaded": "#8c564b",
    "dualpath_split": "#ff7f0e",
    "+layerwise": "#bcbd22",
    "+dualpath": "#17becf",
    "+scheduling": "#d62728",
}
MARKERS = {"basic": "o", "dualpath": "s", "oracle": "^", "sglang_mc": "D"}


def model_name(name: str) -> str:
    return MODEL_NAMES.get(name, name)


def system_name(name: str) -> str:
    return SYSTEM_NAMES.get(name, name)


def color(name: str, i: int = 0) -> str:
    return SYSTEM_COLORS.get(name, f"C{i % 10}")


def cluster_name(name: str) -> str:
    return name.upper()


def title_of(cfg: dict) -> str:
    """'DS 660B, 2P4D, MAL 64k' from a results file's config."""
    return (
        f"{model_name(cfg['model']['name'])}, {cluster_name(cfg['cluster']['name'])}, "
        f"MAL {cfg['workload']['mal_label']}"
    )


def online_note(cfg: dict) -> str:
    o = cfg["online"]
    return f"online: {o['duration_s']:g} s of arrivals, first {o['warmup_s']:g} s not judged"


def style() -> None:
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 130,
            "font.size": 10,
            "axes.titlesize": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 8.5,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument(
        "--results-dir", default=None, help=f"where cells are read and written (default {results_root(None)})"
    )
    return p


def figure_main(doc: str | None, make):
    """The `main(argv)` of a figure module whose only option is --results-dir."""

    def main(argv=None):
        return make(parser(doc).parse_args(argv).results_dir)

    return main


def out_dir(results_dir) -> Path:
    return results_root(results_dir) / "figures"


def write_csv(path: Path, rows: list[dict]) -> Path:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return atomic_write(path, text.getvalue())


def rel(path: str | Path) -> str:
    """A results file as it is named in the CSVs: relative to the repository when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def save(fig, rows: list[dict], name: str, results_dir=None) -> tuple[Path, Path]:
    """Write results/figures/<name>.csv (the plotted numbers) and <name>.png."""
    out = out_dir(results_dir)
    csv_path = write_csv(out / f"{name}.csv", rows)
    png = atomic_write(out / f"{name}.png", lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
    plt.close(fig)
    return csv_path, png


def bar_labels(ax, bars, labels, fontsize=8) -> None:
    for b, text in zip(bars, labels):
        ax.annotate(
            text,
            (b.get_x() + b.get_width() / 2, b.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=fontsize,
        )
    ax.margins(y=0.15)  # room for the labels


def finish(fig, ax=None, ncol: int = 6) -> None:
    """One legend (from `ax`) below the panels, then a tight layout around it."""
    if ax is not None:
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(ncol, len(labels)), frameon=False)
        fig.tight_layout(rect=(0, 0.07, 1, 1))
    else:
        fig.tight_layout()


def bytes_unit(largest: float) -> tuple[float, str]:
    """(divisor, unit) so that `largest` reads as a number between 1 and 1000."""
    for div, unit in ((1e15, "PB"), (1e12, "TB"), (1e9, "GB"), (1e6, "MB")):
        if largest >= div:
            return div, unit
    return 1e3, "kB"

"""Which uncertain inputs the headline depends on: a one-at-a-time sensitivity study.

python -m experiments.sensitivity +agents=1024 +len=64k                 # DS 660B 2P4D, the main cell
python -m experiments.sensitivity +agents=512 +len=32k model=ds27b cluster=1p1d
python -m experiments.sensitivity +agents=1024 +len=64k rerun=true      # recompute every cell

The arguments are Hydra overrides of configs/offline.yaml (the same groups as the offline
experiment). The base cell is the config as given, under cost model v2 unless `costmodel=` is given. Each input
of INPUTS is set to the low and then the high end of its documented range (docs/costmodel.md,
"Sensitivity") with every other input at the base value; every cell goes through the results store
(a stored cell is read, a missing one runs, side by side on all cores). Writes
results/figures/sensitivity.csv (one row per cell and system) and sensitivity.png: a tornado of the
DualPath-vs-Basic speedup and one of each system's JCT, inputs ordered by the speedup's swing.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from rich.table import Table

from dualpath_jax.paths import repo_path
from dualpath_jax.tracking import log_figure
from experiments.figures import cells
from experiments.figures.plot import color, rel, save, style, system_name, title_of
from experiments.sweep import refuse_group_lists

NAME = "sensitivity"


@dataclass(frozen=True)
class Input:
    label: str
    key: str  # the Hydra override's key
    low: object
    high: object
    why: str  # where the range comes from


INPUTS = (
    # KV format: the model config's smallest and largest formats (set per model in `ends`)
    Input("KV format", "model.kv_format", "smallest", "largest", "the model config's formats"),
    Input("storage efficiency", "costmodel.storage_efficiency", 0.6, 0.95, "3FS peak 0.86 of line rate"),
    Input("storage read latency (ms)", "costmodel.storage_read_latency_ms", 0.1, 2.0, "NVMe to networked reads"),
    Input("EP latency scale", "costmodel.ep_latency_scale", 0.5, 1.4, "DeepEP table x; 1.46 breaks the anchor"),
    Input("prefill layer latency scale", "costmodel.prefill_layer_latency_scale", 0.5, 3.0, "overlap to serial"),
    Input("prefill anchor batch (tokens)", "costmodel.prefill_anchor_batch_tokens", 4096, 32768, "profile-data 16K"),
    Input("HBM efficiency", "hardware.calibration.hbm_efficiency", 0.7, 0.9, "streaming reads on H800"),
    Input("decode step overhead (ms)", "hardware.calibration.decode_step_overhead_ms", 0.0, 5.0, "launch, sampling"),
    Input("scheduler period (ms)", "costmodel.scheduler_period_ms", 0.0, 20.0, "at once to a slow pull loop"),
    Input("P->D handoff (ms)", "costmodel.handoff_ms", 0.1, 5.0, "one RDMA notice to an RPC round"),
    Input("DRAM buffer (GB per node)", "costmodel.dram_buffer_gb", 32.0, 1024.0, "DGX H800 2 TB host memory"),
    Input("turn-count tail (sigma x)", "workload.turns_sigma_scale", 0.5, 1.5, "the derived lognormal sigma x"),
)


def key_of(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def base_overrides(task: list[str]) -> list[str]:
    """The user's overrides (less `rerun`), under cost model v2 unless they chose a cost model."""
    out = [o for o in task if key_of(o) != "rerun"]
    if not any(key_of(o) == "costmodel" for o in out):
        out.append("costmodel=v2")
    return out


def ends(inp: Input, raw: dict) -> tuple[object, object]:
    """An input's (low, high) values for the composed config `raw`."""
    if inp.key != "model.kv_format":
        return inp.low, inp.high
    sizes = {name: sum(part.values()) for name, part in raw["model"]["kv_bytes_per_token_layer"].items()}
    return min(sizes, key=sizes.get), max(sizes, key=sizes.get)


def specs(base: list[str], raw: dict) -> list[tuple[str, str, object, tuple]]:
    """(input label, end, value, cell spec): the base cell first, then each input's two ends."""
    out = [("base", "base", None, ("offline", base))]
    for inp in INPUTS:
        for end, value in zip(("low", "high"), ends(inp, raw)):
            out.append((inp.label, end, value, ("offline", [*base, f"{inp.key}={value}"])))
    return out


def rows_of(plan, data) -> list[dict]:
    rows = []
    for (label, end, value, _), d in zip(plan, data):
        for s, m in d["systems"].items():
            why = d.get("attribution", {}).get(s)  # v2 cells: which floor sets the JCT
            rows.append(
                {
                    "input": label,
                    "end": end,
                    "value": "" if value is None else value,
                    "system": s,
                    "jct_s": m["jct_s"],
                    "speedup_vs_basic": d["comparison"][s]["speedup_vs_basic"],
                    "set_by": why["set_by"] if why else "",
                    "jct_over_floor": why["jct_over_floor"] if why else "",
                    "file": rel(d["_path"]),
                }
            )
    return rows


def tornado(rows: list[dict], title: str):
    """Two panels: the dualpath speedup at each input's ends, and each system's JCT change (%)."""
    base = {r["system"]: r for r in rows if r["end"] == "base"}
    systems = list(base)
    ends = {(r["input"], r["end"], r["system"]): r for r in rows if r["end"] != "base"}
    labels = [i.label for i in INPUTS]
    speed = {lab: [ends[(lab, e, "dualpath")]["speedup_vs_basic"] for e in ("low", "high")] for lab in labels}
    labels.sort(key=lambda lab: abs(speed[lab][1] - speed[lab][0]))
    s0 = base["dualpath"]["speedup_vs_basic"]
    style()
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 0.5 * len(labels) + 1.8), sharey=True)
    for y, lab in enumerate(labels):
        lo, hi = speed[lab]
        a.barh(y, lo - s0, left=s0, color="#4c72b0", height=0.6, label="low end" if y == 0 else None)
        a.barh(y, hi - s0, left=s0, color="#dd8452", height=0.6, label="high end" if y == 0 else None)
        for k, s in enumerate(systems):
            j0 = base[s]["jct_s"]
            pct = [100 * (ends[(lab, e, s)]["jct_s"] / j0 - 1) for e in ("low", "high")]
            off = (k - (len(systems) - 1) / 2) * 0.25
            b.plot(
                pct,
                [y + off] * 2,
                color=color(s, k),
                lw=5,
                solid_capstyle="butt",
                label=system_name(s) if y == 0 else None,
            )
            b.plot(pct[1], y + off, marker=">", color="black", ms=4)
    a.axvline(s0, color="black", lw=1)
    a.set_yticks(range(len(labels)), labels)
    a.set_xlabel(f"DualPath speedup over Basic (base {s0:.2f}x)")
    a.legend(loc="lower right", fontsize=8)
    b.axvline(0, color="black", lw=1)
    b.set_xlabel("JCT change from the base cell (%; arrow: high end)")
    b.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Sensitivity, one input at a time: {title}")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> tuple:
    """Hydra overrides of configs/offline.yaml (the base cell), plus `rerun=true`."""
    task, console = cells.study_task(argv, width=110)
    with cells.user_overrides(console):
        base = base_overrides(task)
        refuse_group_lists(base)
        raw = cells.compose("offline", [*cells.QUIET, *base])
        cfg = cells.offline_config(base)
        results_dir = repo_path(cfg.results_dir)
    plan = specs(base, raw)
    data = cells.fetch([p[3] for p in plan], NAME, results_dir)
    rows = rows_of(plan, data)
    csv_path, png = save(tornado(rows, title_of(data[0]["config"])), rows, NAME, results_dir)
    log_figure(cfg.tracking, NAME, png, csv_path, {"overrides": task})
    table = Table("input", "end", "value", "speedup", *(f"{system_name(s)} JCT s" for s in data[0]["systems"]))
    for (label, end, value, _), d in zip(plan, data):
        jcts = [f"{m['jct_s']:,.1f}" for m in d["systems"].values()]
        sp = d["comparison"]["dualpath"]["speedup_vs_basic"]
        table.add_row(label, end, "" if value is None else str(value), f"{sp:.2f}x", *jcts)
    console.print(table)
    console.print(f"figure: {rel(png)}\ntable: {rel(csv_path)}", soft_wrap=True)
    return csv_path, png


if __name__ == "__main__":
    main()

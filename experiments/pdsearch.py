"""P/D shape search: how to split a GPU budget into prefill and decode nodes, per system.

python -m experiments.pdsearch +gpus=48 +agents=1024 +len=64k                  # DS 660B, 6 nodes
python -m experiments.pdsearch +gpus=24 +agents=512 +len=64k model=ds27b      # DS 27B, 3 nodes
python -m experiments.pdsearch +gpus=48 +agents=1024 +len=64k +tol=0.05       # "good" = within 5%

The arguments are Hydra overrides of configs/offline.yaml (the same groups as the offline
experiment) plus `+gpus` (the budget, a multiple of the cluster's GPUs per node) and `+tol`. The
cluster config given (default: the offline config's) is the template: its node hardware is kept and
every split of the budget's nodes into P prefill and D decode nodes (P, D >= 1) is one offline cell,
through the results store (a stored cell is read, the missing ones run side by side). For each
system the best shape is the one with the lowest JCT. A shape is *good* for a system when its JCT is
within `tol` (default 0.10) of the best JCT any system other than the oracle reaches on the budget,
so the count of good shapes says how wide a system's choice of shape is (also reported: the shapes
within `tol` of the system's own best, how flat its curve is). Shapes outside the paper's
P/D bound (`dualpath_jax.cluster.pd_bound_terms`) are marked. Writes
results/figures/pdsearch_<model>_<gpus>g_len<L>_a<agents>.{csv,png}.

Only node splits are searched: the EP group sizes stay the cost model's (`costmodel.ep_max_*`).
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib.pyplot as plt
from rich.table import Table

from dualpath_jax.cluster import check_pd_ratio
from dualpath_jax.config import ClusterSpec
from dualpath_jax.paths import repo_path
from dualpath_jax.tracking import log_figure
from experiments.figures import cells
from experiments.figures.plot import color, model_name, rel, save, style, system_name
from experiments.sensitivity import key_of
from experiments.sweep import refuse_group_lists

TOL = 0.10
ORACLE = "oracle"


def shapes(gpus: int, gpus_per_node: int) -> list[tuple[int, int]]:
    """Every (prefill nodes, decode nodes) split of the budget, prefill-light first."""
    if gpus <= 0 or gpus % gpus_per_node:
        raise ValueError(f"+gpus={gpus}: the budget must be a positive multiple of {gpus_per_node} GPUs per node")
    nodes = gpus // gpus_per_node
    if nodes < 2:
        raise ValueError(f"+gpus={gpus}: {nodes} node of {gpus_per_node} GPUs; a P/D split needs at least 2")
    return [(p, nodes - p) for p in range(1, nodes)]


def shape_overrides(p: int, d: int) -> list[str]:
    return [f"cluster.prefill_nodes={p}", f"cluster.decode_nodes={d}", f"cluster.name={p}p{d}d"]


def feasible(base: list[str], plan: list[tuple[int, int]]) -> tuple[list, list]:
    """(shapes whose config builds, [(shape, why not)]): a shape may not hold the model (e.g. DS 660B's
    prefill weights on one node). Every config is built before any cell runs."""
    ok, skipped = [], []
    for p, d in plan:
        try:
            cells.offline_config([*base, *shape_overrides(p, d)])
            ok.append((p, d))
        except ValueError as e:
            skipped.append(((p, d), str(e).removeprefix("config.cluster: ")))
    if not ok:
        raise ValueError(f"no split of the budget holds the model: {skipped[0][1]}")
    return ok, skipped


def split_args(task: list[str]) -> tuple[list[str], int, float]:
    """(the cell overrides, +gpus, +tol) from the command line; `rerun` is the CLI's switch."""
    base, gpus, tol = [], None, TOL
    for o in task:
        key, _, value = o.lstrip("+").partition("=")
        try:
            if key == "gpus":
                gpus = int(value)
            elif key == "tol":
                tol = float(value)
                if not 0 <= tol < 1:
                    raise ValueError
            elif key_of(o) != "rerun":
                base.append(o)
        except ValueError:
            raise ValueError(f"{o}: {key} takes {'an integer' if key == 'gpus' else 'a number in [0, 1)'}") from None
    if gpus is None:
        raise ValueError("+gpus=N is required: the GPU budget to split into prefill and decode nodes")
    return base, gpus, tol


def rows_of(plan: list[tuple[int, int]], data: list[dict], template: ClusterSpec, tol: float) -> list[dict]:
    rows = []
    for (p, d), res in zip(plan, data):
        broken = check_pd_ratio(replace(template, prefill_nodes=p, decode_nodes=d, name=f"{p}p{d}d"), warn=False)
        for s, m in res["systems"].items():
            rows.append(
                {
                    "shape": f"{p}P{d}D",
                    "prefill_nodes": p,
                    "decode_nodes": d,
                    "pd_ratio": p / d,
                    "in_pd_bound": not broken,
                    "system": s,
                    "jct_s": m["jct_s"],
                    "speedup_vs_basic": res["comparison"][s]["speedup_vs_basic"],
                    "file": rel(res["_path"]),
                }
            )
    real = [r["jct_s"] for r in rows if r["system"] != ORACLE] or [r["jct_s"] for r in rows]
    best_any = min(real)
    own = {}
    for r in rows:
        own[r["system"]] = min(own.get(r["system"], r["jct_s"]), r["jct_s"])
    for r in rows:
        r["good"] = r["jct_s"] <= (1 + tol) * best_any
        r["near_own_best"] = r["jct_s"] <= (1 + tol) * own[r["system"]]  # how flat its own curve is
    return rows


def best_by_system(rows: list[dict]) -> dict[str, dict]:
    """Each system's lowest-JCT shape (ties: the prefill-lighter one) and its good shapes."""
    out = {}
    for s in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == s]
        best = min(mine, key=lambda r: (r["jct_s"], r["prefill_nodes"]))
        out[s] = {
            **best,
            "good_shapes": [r["shape"] for r in mine if r["good"]],
            "near_own_best": [r["shape"] for r in mine if r["near_own_best"]],
        }
    return out


def plot(rows: list[dict], title: str, tol: float, skipped: list = ()):
    style()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    labels = list(dict.fromkeys(r["shape"] for r in rows))
    x = range(len(labels))
    outside = [i for i, lab in enumerate(labels) if not next(r for r in rows if r["shape"] == lab)["in_pd_bound"]]
    for i in outside:
        ax.axvspan(i - 0.5, i + 0.5, color="#dddddd", lw=0, label="outside the P/D bound" if i == outside[0] else None)
    best_any = min((r["jct_s"] for r in rows if r["system"] != ORACLE), default=None)
    if best_any is not None:
        ax.axhline((1 + tol) * best_any, color="black", lw=0.8, ls=":", label=f"good: within {tol:.0%} of the best")
    for k, s in enumerate(dict.fromkeys(r["system"] for r in rows)):
        jct = {r["shape"]: r["jct_s"] for r in rows if r["system"] == s}
        ax.plot(x, [jct[lab] for lab in labels], marker="o", color=color(s, k), label=system_name(s))
    ax.set_xticks(list(x), labels)
    ax.set_xlabel("prefill : decode nodes")
    ax.set_ylabel("offline JCT (s)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    if skipped:
        names = ", ".join(f"{p}P{d}D" for (p, d), _ in skipped)
        ax.annotate(f"not searched (the model does not fit): {names}", (0, -0.2), xycoords="axes fraction", fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> tuple:
    task, console = cells.study_task(argv)
    with cells.user_overrides(console):
        base, gpus, tol = split_args(task)
        refuse_group_lists(base)
        cfg = cells.offline_config(base)
        base = [*base, f"cluster={cfg.cluster.name}"]  # the template by name (`paper` is the model's)
        plan, skipped = feasible(base, shapes(gpus, cfg.cluster.gpus_per_node))
        results_dir = repo_path(cfg.results_dir)
    for (p, d), why in skipped:
        console.print(f"[yellow]{p}P{d}D not searched: {why}[/]", soft_wrap=True)
    name = f"pdsearch_{cfg.model.name}_{gpus}g_len{cfg.workload.mal_label}_a{cfg.workload.agents}"
    data = cells.fetch([("offline", [*base, *shape_overrides(p, d)]) for p, d in plan], name, results_dir)
    rows = rows_of(plan, data, cfg.cluster, tol)
    title = f"{model_name(cfg.model.name)}, {gpus} GPUs, MAL {cfg.workload.mal_label}, {cfg.workload.agents} agents"
    csv_path, png = save(plot(rows, title, tol, skipped), rows, name, results_dir)
    log_figure(cfg.tracking, name, png, csv_path, {"overrides": task})
    systems = list(data[0]["systems"])
    table = Table("shape", "P/D", "in bound", *(f"{system_name(s)} JCT s" for s in systems), title=title)
    for p, d in plan:
        sel = {r["system"]: r for r in rows if r["prefill_nodes"] == p}
        cell = [f"{sel[s]['jct_s']:,.1f}{'*' if sel[s]['good'] else ''}" for s in systems]
        table.add_row(f"{p}P{d}D", f"{p / d:.2f}", "yes" if sel[systems[0]]["in_pd_bound"] else "no", *cell)
    console.print(table)
    console.print(f"*: good (JCT within {tol:.0%} of the best non-oracle JCT on {gpus} GPUs)")
    for s, b in best_by_system(rows).items():
        good = ", ".join(b["good_shapes"]) or "none"
        near = ", ".join(b["near_own_best"])
        console.print(
            f"{system_name(s)}: best {b['shape']} ({b['jct_s']:,.1f} s); good shapes: {good}; "
            f"within {tol:.0%} of its own best: {near}"
        )
    console.print(f"figure: {rel(png)}\ntable: {rel(csv_path)}", soft_wrap=True)
    return csv_path, png, rows


if __name__ == "__main__":
    main()

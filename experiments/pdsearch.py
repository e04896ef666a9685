"""P/D shape search: how to split a GPU budget into prefill and decode nodes, per system.

python -m experiments.pdsearch +gpus=48 +agents=1024 +len=64k                  # DS 660B, 6 nodes
python -m experiments.pdsearch +gpus=24 +agents=512 +len=64k model=ds27b      # DS 27B, 3 nodes
python -m experiments.pdsearch +gpus=48 +agents=1024 +len=64k +tol=0.05       # "good" = within 5%
python -m experiments.pdsearch +gpus=48 +agents=1024 +len=64k +ep_decode=16,32  # x decode EP sizes
python -m experiments.pdsearch +gpus=48 +agents=1024 +len=64k +capacity=true    # + online capacity

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

Deployment options (cost model v2): `+ep_prefill=a,b` / `+ep_decode=a,b` search the EP group caps
(`costmodel.ep_max_prefill` / `ep_max_decode`) too, every combination with every split (one cell
each; the calibration keeps the anchor's own EP, `costmodel.anchor_ep_*`). Without them the cost
model's caps are kept. `+capacity=true` also runs, per deployment, the online SLO capacity search
(the online experiment's config, 900 s of arrivals as the figures use, `cells.ONLINE`; `+agents`
does not enter it, `online.*` overrides enter only it): each system's best deployment for capacity is the highest, and *good* for
capacity means within `tol` of the best non-oracle capacity.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

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


class Deployment(NamedTuple):
    """One point of the search: a P:D split and the EP caps it runs under (None: the cost model's)."""

    p: int
    d: int
    ep_prefill: int | None = None
    ep_decode: int | None = None

    @property
    def shape(self) -> str:
        return f"{self.p}P{self.d}D"

    @property
    def option(self) -> str:
        """The EP caps searched, e.g. "EP decode 16" ("" when none is)."""
        parts = [f"EP {role} {ep}" for role, ep in (("prefill", self.ep_prefill), ("decode", self.ep_decode)) if ep]
        return ", ".join(parts)

    @property
    def label(self) -> str:
        return f"{self.shape} ({self.option})" if self.option else self.shape

    def overrides(self) -> list[str]:
        out = shape_overrides(self.p, self.d)
        out += [f"costmodel.ep_max_prefill={self.ep_prefill}"] if self.ep_prefill else []
        return out + ([f"costmodel.ep_max_decode={self.ep_decode}"] if self.ep_decode else [])


def deployments(plan: list[tuple[int, int]], ep_prefill: list, ep_decode: list) -> list[Deployment]:
    """Every split with every combination of the EP caps searched (shape-major)."""
    return [Deployment(p, d, ep, ed) for p, d in plan for ep in ep_prefill or [None] for ed in ep_decode or [None]]


def feasible(base: list[str], plan: list[Deployment]) -> tuple[list, list]:
    """(deployments whose config builds, [(deployment, why not)]): a shape may not hold the model
    (e.g. DS 660B's prefill weights on one node). Every config is built before any cell runs."""
    ok, skipped = [], []
    for dep in plan:
        try:
            cells.offline_config([*base, *dep.overrides()])
            ok.append(dep)
        except ValueError as e:
            skipped.append((dep, str(e).removeprefix("config.cluster: ")))
    if not ok:
        raise ValueError(f"no split of the budget holds the model: {skipped[0][1]}")
    return ok, skipped


def ep_list(option: str, value: str) -> list[int]:
    """`+ep_decode=16,32` or `+ep_decode=[16,32]` -> [16, 32]; each a positive integer."""
    try:
        out = [int(v) for v in value.strip("[]").split(",")]
    except ValueError:
        out = []
    if not out or min(out) <= 0 or len(set(out)) != len(out):
        raise ValueError(f"{option}: takes distinct positive EP group sizes, e.g. {option.split('=')[0]}=16,32")
    return out


class Search(NamedTuple):
    """What the command line asks for beyond the cells' own overrides."""

    base: list[str]  # the cells' Hydra overrides
    gpus: int
    tol: float = TOL
    ep_prefill: tuple = ()
    ep_decode: tuple = ()
    capacity: bool = False
    online: tuple = ()  # `online.*` overrides: for the capacity cells only (the offline config has none)


def split_args(task: list[str]) -> Search:
    """The search from the command line; `rerun` is the CLI's switch."""
    base, opts = [], {}
    for o in task:
        key, _, value = o.lstrip("+").partition("=")
        try:
            if key == "gpus":
                opts["gpus"] = int(value)
            elif key == "tol":
                opts["tol"] = float(value)
                if not 0 <= opts["tol"] < 1:
                    raise ValueError
            elif key in ("ep_prefill", "ep_decode"):
                opts[key] = ep_list(o, value)
            elif key == "capacity":
                if value not in ("true", "false"):
                    raise ValueError
                opts["capacity"] = value == "true"
            elif key.startswith("online."):
                opts["online"] = (*opts.get("online", ()), o)
            elif key_of(o) != "rerun":
                base.append(o)
        except ValueError as e:
            kind = {"gpus": "an integer", "tol": "a number in [0, 1)", "capacity": "true or false"}.get(key)
            raise ValueError(f"{o}: {key} takes {kind}" if kind else str(e)) from None
    if "gpus" not in opts:
        raise ValueError("+gpus=N is required: the GPU budget to split into prefill and decode nodes")
    if opts.get("online") and not opts.get("capacity"):
        raise ValueError(f"{opts['online'][0]}: online settings shape only the capacity cells; add +capacity=true")
    if (opts.get("ep_prefill") or opts.get("ep_decode")) and "costmodel=v1" in base:
        raise ValueError("+ep_prefill/+ep_decode: cost model v1 has no EP groups (it spans each role); use v2")
    return Search(base, **opts)


def rows_of(plan: list[Deployment], data: list[dict], template: ClusterSpec, tol: float, caps=None) -> list[dict]:
    """One row per deployment and system: its offline JCT (and, with `caps`, the capacity cells of
    the same deployments, its SLO capacity), whether it is in the P/D bound, and whether it is good."""
    rows = []
    for k, (dep, res) in enumerate(zip(plan, data)):
        broken = check_pd_ratio(replace(template, prefill_nodes=dep.p, decode_nodes=dep.d, name=dep.shape), warn=False)
        terms = res.get("config", {}).get("costmodel", {})  # v1 cells store none: their EP spans each role
        for s, m in res["systems"].items():
            row = {
                "shape": dep.shape,
                "option": dep.option,
                "deployment": dep.label,
                "prefill_nodes": dep.p,
                "decode_nodes": dep.d,
                "ep_max_prefill": terms.get("ep_max_prefill", ""),
                "ep_max_decode": terms.get("ep_max_decode", ""),
                "pd_ratio": dep.p / dep.d,
                "in_pd_bound": not broken,
                "system": s,
                "jct_s": m["jct_s"],
                "speedup_vs_basic": res["comparison"][s]["speedup_vs_basic"],
                "file": rel(res["_path"]),
            }
            if caps is not None:
                row["capacity_aps"] = caps[k]["systems"][s]["capacity_aps"]
                row["capacity_file"] = rel(caps[k]["_path"])
            rows.append(row)
    real = [r for r in rows if r["system"] != ORACLE] or rows
    best_jct = min(r["jct_s"] for r in real)
    own = {}
    for r in rows:
        own[r["system"]] = min(own.get(r["system"], r["jct_s"]), r["jct_s"])
    for r in rows:
        r["good"] = r["jct_s"] <= (1 + tol) * best_jct
        r["near_own_best"] = r["jct_s"] <= (1 + tol) * own[r["system"]]  # how flat its own curve is
    if caps is not None:
        best_cap = max(r["capacity_aps"] for r in real)
        for r in rows:
            r["good_capacity"] = r["capacity_aps"] >= (1 - tol) * best_cap
    return rows


def best_by_system(rows: list[dict]) -> dict[str, dict]:
    """Each system's lowest-JCT deployment (ties: the prefill-lighter one) and its good ones; with
    capacities, also its highest-capacity deployment and its good ones for capacity."""
    out = {}
    for s in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == s]
        best = min(mine, key=lambda r: (r["jct_s"], r["prefill_nodes"]))
        out[s] = {
            **best,
            "good_shapes": [r["deployment"] for r in mine if r["good"]],
            "near_own_best": [r["deployment"] for r in mine if r["near_own_best"]],
        }
        if "capacity_aps" in best:
            top = max(mine, key=lambda r: (r["capacity_aps"], -r["prefill_nodes"]))
            out[s]["best_capacity"] = {"deployment": top["deployment"], "capacity_aps": top["capacity_aps"]}
            out[s]["good_capacity_shapes"] = [r["deployment"] for r in mine if r["good_capacity"]]
    return out


def _panel(ax, rows: list[dict], key: str, bar: float | None, bar_label: str, ylabel: str) -> None:
    labels = list(dict.fromkeys(r["shape"] for r in rows))
    x = range(len(labels))
    outside = [i for i, lab in enumerate(labels) if not next(r for r in rows if r["shape"] == lab)["in_pd_bound"]]
    for i in outside:
        ax.axvspan(i - 0.5, i + 0.5, color="#dddddd", lw=0, label="outside the P/D bound" if i == outside[0] else None)
    if bar is not None:
        ax.axhline(bar, color="black", lw=0.8, ls=":", label=bar_label)
    options = list(dict.fromkeys(r["option"] for r in rows))
    for k, s in enumerate(dict.fromkeys(r["system"] for r in rows)):
        for j, opt in enumerate(options):
            y = {r["shape"]: r[key] for r in rows if r["system"] == s and r["option"] == opt}
            name = system_name(s) + (f", {opt}" if opt else "")
            ax.plot(
                [i for i, lab in enumerate(labels) if lab in y],
                [y[lab] for lab in labels if lab in y],
                marker="os^vD"[j % 5],
                ls=("-", "--", ":", "-.")[j % 4],
                color=color(s, k),
                label=name,
            )
    ax.set_xticks(list(x), labels)
    ax.set_xlabel("prefill : decode nodes")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def plot(rows: list[dict], title: str, tol: float, skipped: list = ()):
    style()
    with_cap = "capacity_aps" in rows[0]
    fig, axes = plt.subplots(1, 2 if with_cap else 1, figsize=(13 if with_cap else 7.5, 4.2), squeeze=False)
    real = [r for r in rows if r["system"] != ORACLE]
    best = min((r["jct_s"] for r in real), default=None)
    _panel(
        axes[0][0], rows, "jct_s", best and (1 + tol) * best, f"good: within {tol:.0%} of the best", "offline JCT (s)"
    )
    if with_cap:
        top = max((r["capacity_aps"] for r in real), default=None)
        bar = top and (1 - tol) * top
        _panel(axes[0][1], rows, "capacity_aps", bar, f"good: within {tol:.0%} of the best", "SLO capacity (agents/s)")
        axes[0][1].set_title("online capacity under the SLO")
    fig.suptitle(title)
    if skipped:
        names = ", ".join(dep.label for dep, _ in skipped)
        axes[0][0].annotate(
            f"not searched (the model does not fit): {names}", (0, -0.2), xycoords="axes fraction", fontsize=8
        )
    fig.tight_layout()
    return fig


def capacity_overrides(base: list[str], online: tuple) -> list[str]:
    """The offline cell's overrides as the online capacity search takes them (no `+agents`), then
    the `online.*` ones."""
    return [*(o for o in base if key_of(o) != "agents"), *online]


def main(argv: list[str] | None = None) -> tuple:
    task, console = cells.study_task(argv)
    with cells.user_overrides(console):
        search = split_args(task)
        refuse_group_lists(search.base)
        cfg = cells.offline_config(search.base)
        base = [*search.base, f"cluster={cfg.cluster.name}"]  # the template by name (`paper` is the model's)
        splits = shapes(search.gpus, cfg.cluster.gpus_per_node)
        plan, skipped = feasible(base, deployments(splits, search.ep_prefill, search.ep_decode))
        if search.capacity:  # every online config is built before any cell runs, too
            for dep in plan:
                cells.online_config([*capacity_overrides(base, search.online), *dep.overrides()])
        results_dir = repo_path(cfg.results_dir)
    tol, gpus = search.tol, search.gpus
    for dep, why in skipped:
        console.print(f"[yellow]{dep.label} not searched: {why}[/]", soft_wrap=True)
    name = f"pdsearch_{cfg.model.name}_{gpus}g_len{cfg.workload.mal_label}_a{cfg.workload.agents}"
    name += "".join(
        f"_ep{role}{'-'.join(map(str, eps))}"
        for role, eps in (("p", search.ep_prefill), ("d", search.ep_decode))
        if eps
    )
    name += "_capacity" if search.capacity else ""
    specs = [("offline", [*base, *dep.overrides()]) for dep in plan]
    if search.capacity:
        specs += [("capacity", [*capacity_overrides(base, search.online), *dep.overrides()]) for dep in plan]
    data = cells.fetch(specs, name, results_dir)
    caps = data[len(plan) :] if search.capacity else None
    rows = rows_of(plan, data[: len(plan)], cfg.cluster, tol, caps)
    title = f"{model_name(cfg.model.name)}, {gpus} GPUs, MAL {cfg.workload.mal_label}, {cfg.workload.agents} agents"
    csv_path, png = save(plot(rows, title, tol, skipped), rows, name, results_dir)
    log_figure(cfg.tracking, name, png, csv_path, {"overrides": task})
    print_table(console, rows, plan, title, tol, gpus)
    console.print(f"figure: {rel(png)}\ntable: {rel(csv_path)}", soft_wrap=True)
    return csv_path, png, rows


def print_table(console, rows: list[dict], plan: list[Deployment], title: str, tol: float, gpus: int) -> None:
    systems = list(dict.fromkeys(r["system"] for r in rows))
    with_cap = "capacity_aps" in rows[0]
    cols = [f"{system_name(s)} JCT s" for s in systems]
    cols += [f"{system_name(s)} cap/s" for s in systems] if with_cap else []
    table = Table("deployment", "P/D", "in bound", *cols, title=title)
    for dep in plan:
        sel = {r["system"]: r for r in rows if r["deployment"] == dep.label}
        cell = [f"{sel[s]['jct_s']:,.1f}{'*' if sel[s]['good'] else ''}" for s in systems]
        if with_cap:
            cell += [f"{sel[s]['capacity_aps']:.3g}{'*' if sel[s]['good_capacity'] else ''}" for s in systems]
        table.add_row(dep.label, f"{dep.p / dep.d:.2f}", "yes" if sel[systems[0]]["in_pd_bound"] else "no", *cell)
    console.print(table)
    console.print(f"*: good (within {tol:.0%} of the best non-oracle JCT, or capacity, on {gpus} GPUs)")
    for s, b in best_by_system(rows).items():
        good = ", ".join(b["good_shapes"]) or "none"
        near = ", ".join(b["near_own_best"])
        line = (
            f"{system_name(s)}: best {b['deployment']} ({b['jct_s']:,.1f} s); good: {good}; "
            f"within {tol:.0%} of its own best: {near}"
        )
        if "best_capacity" in b:
            cap = b["best_capacity"]
            line += (
                f"; capacity best {cap['deployment']} ({cap['capacity_aps']:.3g} agents/s), "
                f"good: {', '.join(b['good_capacity_shapes']) or 'none'}"
            )
        console.print(line, soft_wrap=True)


if __name__ == "__main__":
    main()

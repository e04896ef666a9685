"""Online experiment (Hydra entry point).

    python -m experiments.online +aps=0.5 +len=64k
    python -m experiments.online +capacity=true +len=64k
    python -m experiments.online --multirun +aps=0.25,0.5,1,2 +len=64k
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from dualpath_jax.config import ConfigError, ModelSpec, from_dict, to_dict
from dualpath_jax.experiment import build_config, load_named
from dualpath_jax.online.run import run_capacity, run_online
from dualpath_jax.results import online_path, online_table, write_json_atomic
from dualpath_jax.tracking import track


def main_online(cfg: DictConfig) -> None:
    console = Console(width=None if sys.stdout.isatty() else 140)
    raw = OmegaConf.to_container(cfg, resolve=True)
    capacity = bool(raw.get("capacity", False))
    try:
        exp = build_config(raw, online=True)
        anchor = from_dict(ModelSpec, load_named("model", exp.hardware.calibration.anchor_model),
                           "hardware.calibration.anchor_model")
    except (ConfigError, ValueError) as e:
        console.print(f"[bold red]config error:[/] {e}")
        sys.exit(2)
    kind = "capacity" if capacity else f"aps{exp.online.aps:g}"
    name = f"online-{exp.model.name}-{exp.cluster.name}-{kind}-{exp.workload.mal_label}"
    with track(exp.tracking, name=name, group="online", config=to_dict(exp)) as run:
        if capacity:
            systems = run_capacity(exp, anchor, log=console.print)
            table = Table(title=f"capacity (P{exp.online.slo.percentile:g} TTFT <= {exp.online.slo.ttft_s} s, "
                                f"TPOT <= {1e3 * exp.online.slo.tpot_s:g} ms): {exp.model.name} on "
                                f"{exp.cluster.name}, MAL {exp.workload.mal_label}")
            for col in ("system", "capacity APS", "vs basic", "probes"):
                table.add_column(col)
            base = systems.get("basic", {}).get("capacity_aps") or float("nan")
            for s, r in systems.items():
                table.add_row(s, f"{r['capacity_aps']:.3g}", f"{r['capacity_aps'] / base:.2f}x",
                              str(len(r["probes"])))
                run.log({f"{s}/capacity_aps": r["capacity_aps"]})
        else:
            systems = run_online(exp, anchor)
            table = online_table(f"online: {exp.model.name} on {exp.cluster.name}, {exp.online.aps:g} "
                                 f"agents/s, MAL {exp.workload.mal_label}", systems)
            for s, r in systems.items():
                run.log({f"{s}/ttft_p90_s": r["latency"]["ttft_s"]["p90"],
                         f"{s}/tpot_p90_s": r["latency"]["tpot_s"]["p90"], f"{s}/slo_met": r["slo_met"]})
        path = online_path(exp, kind)
        write_json_atomic(path, {"config": to_dict(exp), "systems": systems})
        console.print(table)
        console.print(f"results: {path}")


@hydra.main(version_base="1.3", config_path="../configs", config_name="online")
def main(cfg: DictConfig) -> None:
    main_online(cfg)


if __name__ == "__main__":
    main()

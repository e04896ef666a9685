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
from rich.progress import Progress

from dualpath_jax.config import to_dict
from dualpath_jax.configure import anchor_model, build_config
from dualpath_jax.online.run import run_capacity, run_online
from dualpath_jax.results import as_text, capacity_table, cell_of, online_table, prepare, write_cell
from dualpath_jax.results.turns import write_turns
from dualpath_jax.tracking import log_cell, track

from .offline import TURN_COLUMNS, pop_rerun, progress_factory
from .sweep import job, reuse, run


def main_online(cfg: DictConfig) -> None:
    console = Console(width=None if sys.stdout.isatty() else 140)
    with job(console) as outcome:
        raw = OmegaConf.to_container(cfg, resolve=True)
        rerun = pop_rerun(raw)
        capacity = bool(raw.get("capacity", False))
        exp = build_config(raw, online=True)
        anchor = anchor_model(exp)
        cell = cell_of(exp, "capacity" if capacity else "online")
        records = exp.sim.record_turns and not capacity  # a capacity search keeps no records
        if reuse(cell, rerun, console, records=records):
            outcome.done("skip", cell.path)
            return
        prepare(cell)
        kind = "capacity" if capacity else "trace" if exp.online.arrivals == "trace" else f"aps{exp.online.aps:g}"
        name = "-".join(filter(None, ("online", exp.model.name, exp.cluster.name, kind, exp.workload.mal_label)))
        with track(exp.tracking, name=name, group="online", config=to_dict(exp)) as run:
            if capacity:
                systems = run_capacity(exp, anchor, log=console.print)
                table = capacity_table(exp, systems)
                for s, r in systems.items():
                    run.log({f"{s}/capacity_aps": r["capacity_aps"]})
            else:
                turns: dict = {}
                with Progress(*TURN_COLUMNS, console=console, disable=not exp.sim.progress) as bar:
                    systems = run_online(exp, anchor, progress=progress_factory(bar), turns=turns)
                table = online_table(exp, systems)
                for s, r in systems.items():
                    run.log(
                        {
                            f"{s}/ttft_p90_s": r["latency"]["ttft_s"]["p90"],
                            f"{s}/tpot_p90_s": r["latency"]["tpot_s"]["p90"],
                            f"{s}/slo_met": r["slo_met"],
                        }
                    )
            path = write_cell(cell, {"systems": systems}, as_text(table, width=140))
            outcome.done("ran", path)
            console.print(table)
            console.print(f"results: {path}", soft_wrap=True)
            if records:
                console.print(f"per-turn records: {write_turns(path, turns)}", soft_wrap=True)
            log_cell(run, path)


@hydra.main(version_base="1.3", config_path="../configs", config_name="online")
def main(cfg: DictConfig) -> None:
    main_online(cfg)


if __name__ == "__main__":
    run(main)

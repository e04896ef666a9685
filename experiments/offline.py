"""Offline experiment (Hydra entry point).

python -m experiments.offline +agents=1024 +len=64k
python -m experiments.offline --multirun +agents=512,1024,2048,4096 +len=32k,48k,64k
python -m experiments.offline +agents=1024 +len=64k model=qwen32b cluster=1p2d tracking.wandb=false
python -m experiments.offline +agents=1024 +len=64k rerun=true   # recompute a stored cell
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dualpath_jax.config import to_dict
from dualpath_jax.configure import anchor_model, build_config
from dualpath_jax.experiment import run_offline
from dualpath_jax.results import (
    attribution_lines,
    cell_of,
    comparison_table,
    offline_payload,
    offline_text,
    prepare,
    write_cell,
)
from dualpath_jax.results.identity import model_name
from dualpath_jax.results.turns import write_turns
from dualpath_jax.tracking import log_cell, track

from .sweep import job, reuse, run

# a bar per system: its turns done out of its workload's (the online command shows the same)
TURN_COLUMNS = (
    TextColumn("{task.description:>10}"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn("turns"),
    TimeElapsedColumn(),
)


def progress_factory(progress: Progress):
    def start(system: str, turns: int):
        task = progress.add_task(system, total=turns)
        step = max(1, turns // 200)
        count = 0

        def tick() -> None:
            nonlocal count
            count += 1
            if count % step == 0 or count == turns:
                progress.update(task, completed=count)

        return tick

    return start


def pop_rerun(raw: dict) -> bool:
    """`rerun=true` recomputes a stored cell; it is not part of the experiment's config."""
    rerun = raw.pop("rerun", False)
    if not isinstance(rerun, bool):
        raise ValueError(f"rerun={rerun!r}: expected true or false")
    return rerun


def main_offline(cfg: DictConfig) -> None:
    console = Console(width=None if sys.stdout.isatty() else 110)
    with job(console) as outcome:
        raw = OmegaConf.to_container(cfg, resolve=True)
        rerun = pop_rerun(raw)
        exp = build_config(raw)
        anchor = anchor_model(exp)
        cell = cell_of(exp, "offline")
        if reuse(cell, rerun, console, records=exp.sim.record_turns):
            outcome.done("skip", cell.path)
            return
        prepare(cell)
        parts = ("offline", model_name(exp), exp.cluster.name, f"a{exp.workload.agents}", exp.workload.mal_label)
        name = "-".join(filter(None, parts))  # no length for a trace workload run without +len
        with track(exp.tracking, name=name, group="offline", config=to_dict(exp)) as run:
            with Progress(*TURN_COLUMNS, console=console, disable=not exp.sim.progress, transient=False) as bar:
                res = run_offline(exp, anchor, progress=progress_factory(bar))
            path = write_cell(cell, offline_payload(res), offline_text(res))
            outcome.done("ran", path)
            if res.turns:
                console.print(f"per-turn records: {write_turns(path, res.turns)}", soft_wrap=True)
            log_cell(run, path)
            console.print(comparison_table(res))
            for line in attribution_lines(res):
                console.print(line, soft_wrap=True)
            console.print(f"results: {path}  (ran in {res.wall_s:.1f} s wall)", soft_wrap=True)
            comp = res.comparison()
            for sys_name, m in res.systems.items():
                run.log(
                    {
                        f"{sys_name}/jct_s": m.jct_s,
                        f"{sys_name}/speedup_vs_basic": comp[sys_name]["speedup_vs_basic"],
                        f"{sys_name}/prefill_gpu_util": m.prefill_gpu_util,
                        f"{sys_name}/snic_util_pe": m.snic_util_pe,
                        f"{sys_name}/snic_util_de": m.snic_util_de,
                    }
                )


@hydra.main(version_base="1.3", config_path="../configs", config_name="offline")
def main(cfg: DictConfig) -> None:
    main_offline(cfg)


if __name__ == "__main__":
    run(main)

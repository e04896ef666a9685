"""Weights & Biases tracking: offline by default, one run per experiment job, always finished.

A run logs the headline numbers as it goes and, once its cell is written (`log_cell`), a table of
every system's numbers and the cell's files as an artifact.

In a Hydra multirun every job runs in the same process; a job that did not finish its run would make
the next job log into it, so `track` finishes the run in a `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

from .config import TrackingSpec


class _NullRun:
    def log(self, *_a, **_k) -> None:
        pass

    def log_artifact(self, *_a, **_k) -> None:
        pass

    @property
    def summary(self) -> dict:
        return {}


@contextlib.contextmanager
def track(spec: TrackingSpec, name: str, group: str, config: dict) -> Iterator:
    """Yields a W&B run (or a no-op stand-in when tracking.wandb=false)."""
    if not spec.wandb:
        yield _NullRun()
        return
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project=spec.project,
        mode=spec.mode,
        name=name,
        group=group,
        config=config,
        dir=os.getcwd(),
        reinit="finish_previous",
    )
    try:
        yield run
    finally:
        run.finish()


def log_cell(run, results_file: Path) -> None:
    """Log a written cell: its per-system numbers as a W&B table, and its files (results JSON, table,
    per-turn records if any) as a `results` artifact named after the file."""
    if isinstance(run, _NullRun):
        return
    import wandb

    from .results import summary_numbers
    from .results.turns import turns_path

    systems = {s: summary_numbers(m) for s, m in json.loads(results_file.read_text())["systems"].items()}
    columns = list(dict.fromkeys(k for m in systems.values() for k in m))
    run.log(
        {
            "systems": wandb.Table(
                columns=["system", *columns], data=[[s, *(m.get(k) for k in columns)] for s, m in systems.items()]
            )
        }
    )
    artifact = wandb.Artifact(f"cell-{results_file.stem}", type="results")
    for f in (results_file, results_file.with_suffix(".txt"), turns_path(results_file)):
        if f.is_file():
            artifact.add_file(str(f))
    run.log_artifact(artifact)


def log_figure(spec: TrackingSpec, name: str, png: Path, csv_path: Path, config: dict) -> None:
    """Log a study's figure as a run of its own (group `figures`): the PNG as an image, the CSV it
    was drawn from as a table, and both files as a `figure` artifact named after it."""
    if not spec.wandb:
        return
    import csv

    import wandb

    with track(spec, name=name, group="figures", config=config) as run:
        header, *rows = csv.reader(csv_path.read_text().splitlines())
        run.log({"figure": wandb.Image(str(png)), "table": wandb.Table(columns=header, data=rows)})
        artifact = wandb.Artifact(f"figure-{name}", type="figure")
        for f in (png, csv_path):
            artifact.add_file(str(f))
        run.log_artifact(artifact)

"""Weights & Biases tracking: offline by default, one run per experiment job, always finished.

In a Hydra multirun every job runs in the same process; a job that did not finish its run would make
the next job log into it, so `track` finishes the run in a `finally`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from .config import TrackingSpec


class _NullRun:
    def log(self, *_a, **_k) -> None:
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

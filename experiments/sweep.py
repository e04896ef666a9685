"""One experiment job inside a Hydra run or sweep: errors, skip/rerun, and the sweep's summary.

A single run stops at a user mistake with its message and exit status 2. In a `--multirun` a
failing cell does not stop the sweep: its error is printed, its outcome is recorded in its job
folder (`<sweep dir>/<job>/cell.json`), the other cells run, and `SweepSummary` (a Hydra callback,
configs/offline.yaml) prints what each cell did at the end and exits 1 if any failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console

from dualpath_jax.atomic import atomic_write
from dualpath_jax.paths import ROOT
from dualpath_jax.results import Cell, stored
from dualpath_jax.results.turns import turns_path

OUTCOME = "cell.json"
# A user's mistake (a bad value, trace or folder): a message, no traceback.
USER_ERRORS = (ValueError, PermissionError)


_in_job = False  # inside an experiment job (else Hydra is composing the config)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class Job:
    """The outcome of one job, recorded for the sweep summary."""

    def __init__(self) -> None:
        self.status, self.file, self.error = "failed", None, ""

    def done(self, status: str, path: Path) -> None:
        self.status, self.file = status, str(path)


def reuse(cell: Cell, rerun: bool, console: Console, records: bool = False) -> bool:
    """True if `cell` is stored by code of the same semantics (prints `skip: <file>`, and outside
    a sweep the stored table); a stale file is named and run again. `records`: per-turn records
    are asked for, so a stored cell without them runs again (they are not part of its identity)."""
    found = stored(cell)
    if found.status == "fresh" and not rerun and not (records and not turns_path(cell.path).is_file()):
        console.print(f"skip: {found.path}", soft_wrap=True)
        if not in_multirun() and cell.table_path.is_file():
            console.print(cell.table_path.read_text().rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
            console.print("(stored results of this cell; rerun=true computes them again)")
        return True
    if found.status == "stale":
        console.print(f"[yellow]stale: {found.path} ({found.why}); running the cell again[/]", soft_wrap=True)
    return False


def enter_launch_folder() -> None:
    """Run the job in the folder its sweep was started from, where relative paths (results_dir,
    ./wandb) point (hydra.job.chdir=false). A Ray worker starts in the folder of the `ray start`
    that made its node, not there; local and joblib jobs are there already."""
    launch = HydraConfig.get().runtime.cwd
    if os.getcwd() != launch and os.path.isdir(launch):
        os.chdir(launch)


@contextlib.contextmanager
def job(console: Console) -> Iterator[Job]:
    global _in_job
    outcome, _in_job = Job(), True
    if in_multirun():
        enter_launch_folder()
    try:
        yield outcome
    except USER_ERRORS as e:
        outcome.error = f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e)
        console.print(f"[bold red]error:[/] {outcome.error}", soft_wrap=True)
        if not in_multirun():
            sys.exit(2)
    except Exception as e:  # a bug: show where, but let the other cells of a sweep run
        if not in_multirun():
            raise  # with _in_job still set: `run` lets it through with its traceback
        outcome.error = f"{type(e).__name__}: {e}"
        console.print(f"[bold red]error:[/] {outcome.error}\n{traceback.format_exc()}")
    finally:
        if in_multirun():
            hc = HydraConfig.get()
            record = {
                "job": hc.job.num,
                "overrides": list(hc.overrides.task),
                "status": outcome.status,
                "file": outcome.file,
                "error": outcome.error,
            }
            atomic_write(Path(hc.runtime.output_dir) / OUTCOME, json.dumps(record) + "\n")
    _in_job = False


class SweepSummary(Callback):
    """At the end of a multirun: one line per cell, and exit status 1 if any cell failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        records = []
        for folder in (d for d in sweep.iterdir() if (d / ".hydra").is_dir()):
            try:
                records.append(json.loads((folder / OUTCOME).read_text()))
            except (OSError, json.JSONDecodeError):  # the job died before it could say
                records.append(
                    {
                        "job": folder.name,
                        "overrides": [],
                        "status": "failed",
                        "file": None,
                        "error": f"no readable outcome in {folder / OUTCOME}",
                    }
                )
        records.sort(key=lambda r: int(r["job"]) if str(r["job"]).isdigit() else 1 << 30)
        console = Console(stderr=True)
        counts = {s: sum(r["status"] == s for r in records) for s in ("ran", "skip", "failed")}
        console.print(
            f"sweep {sweep}: {len(records)} cells, {counts['ran']} ran, {counts['skip']} "
            f"skipped, {counts['failed']} failed",
            soft_wrap=True,  # the sweep folder is an absolute path: keep the line whole
        )
        for r in records:
            if r["status"] == "failed":
                console.print(f"  failed: #{r['job']} {' '.join(r['overrides'])}: {r['error']}", soft_wrap=True)
        if counts["failed"]:
            sys.exit(1)


def run(main) -> None:
    """Call a `@hydra.main` function. Hydra's own refusals of the user's overrides (an unknown
    config option, a key not in the config, `model=1`) exit 2 with their message, like every other
    user mistake, instead of exit 1 with a traceback: Hydra raises them to us (HYDRA_FULL_ERROR) and
    they are told apart from bugs by happening outside any job."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        refuse_group_lists([a for a in sys.argv[1:] if "=" in a and not a.startswith("-")])  # not flags or their values
        main()
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        if _in_job:
            raise
        cause = f"\n{e.__cause__}" if isinstance(e.__cause__, OmegaConfBaseException) else ""
        print(f"error: {e}{cause}", file=sys.stderr)
        sys.exit(2)


def refuse_group_lists(overrides: list[str]) -> None:
    """A config group given a list or a dict (`model=[1,2]`) makes Hydra fail with a TypeError of
    its own while it composes; refuse it first, naming the override (ValueError: exit 2)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = {p.name: p for p in (ROOT / "configs").iterdir() if p.is_dir()}
    for o in OverridesParser.create().parse_overrides(overrides):
        group = groups.get(o.key_or_group)
        if group is not None and not o.is_sweep_override() and isinstance(o.value(), (list, dict)):
            options = ", ".join(sorted(f.stem for f in group.glob("*.yaml")))
            raise ValueError(f"{o.input_line}: the config group {o.key_or_group} takes one option name ({options})")

"""Get-or-run the experiment cells the figures are drawn from.

A cell is one experiment run, named by its Hydra overrides. `offline`, `online` and `capacity`
return the cell's results JSON (as a dict): read from its file under <results_dir>/ when that file
holds the same cell made by code of the same simulator semantics (`dualpath_jax.results`: the file
name carries the cell's identity hash), otherwise run through the project's Python API and written
there first, so later figures and later invocations reuse it. A stale file (other semantics or
schema) is named and run again; with `STORED_ONLY` (the figures command's --stored-only) a missing
or stale cell is an error naming its file instead, and `RERUN` (--rerun) recomputes every cell.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console

from dualpath_jax.paths import ROOT

RESULTS = ROOT / "results"
# Every cell runs without W&B; the figures draw their own progress bars (cells and turns).
QUIET = ("tracking.wandb=false", "sim.progress=false")
# Online cells of the figures: 15 min of arrivals, the first 200 s not judged (cheaper than the
# configs' 30 min / 5 min defaults; every online figure title says so).
ONLINE = ("online.duration_s=900", "online.warmup_s=200")

RUNS: Counter = Counter()  # cells run (not read) by this process and its pool workers, by kind
# Processes that run missing cells side by side (`fetch`; `--jobs` of the figures command).
JOBS = max(1, os.cpu_count() or 1)
STORED_ONLY = False  # a missing or stale cell is an error (StaleCellError), never run
RERUN = False  # every cell is run again, stored or not (once per invocation: RERUN_DONE)
RERUN_DONE: set[str] = set()  # results files this invocation has (re)written
console = Console(stderr=True)
_log: Callable[[str], None] = console.print
_bar = None  # the rich Progress of `fetch`, while one is open: simulations add a turns bar to it


def study_task(argv: list[str] | None, width: int = 120) -> tuple[list[str], Console]:
    """A study command's overrides (argv, else the command line; `rerun=true` among them sets
    RERUN) and the console it prints to."""
    global RERUN
    task = list(sys.argv[1:] if argv is None else argv)
    RERUN = any(o in ("rerun=true", "+rerun=true") for o in task)
    return task, Console(width=None if sys.stdout.isatty() else width)


@contextlib.contextmanager
def user_overrides(console: Console) -> Iterator[None]:
    """A study reads its overrides in this block: a bad one prints its message and exits 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)


def _turns_progress():
    """A `progress(system, turns) -> tick` factory for run_offline/run_online, or None."""
    if _bar is None:
        return None
    bar = _bar

    def start(system: str, turns: int):
        task = bar.add_task(f"  {system} (turns)", total=turns)
        step, count = max(1, turns // 200), 0

        def tick() -> None:
            nonlocal count
            count += 1
            if count % step == 0 or count >= turns:
                bar.update(task, completed=count, visible=count < turns)

        return tick

    return start


def results_root(results_dir: str | Path | None) -> Path:
    return Path(results_dir) if results_dir is not None else RESULTS


def dedupe(overrides) -> list[str]:
    """Later overrides of a key replace earlier ones (Hydra refuses `+len=...` twice)."""
    last = {o.lstrip("+").split("=", 1)[0]: i for i, o in enumerate(overrides)}
    return [o for i, o in enumerate(overrides) if last[o.lstrip("+").split("=", 1)[0]] == i]


def compose(name: str, overrides: list[str] | tuple[str, ...]) -> dict:
    """configs/<name>.yaml composed with `overrides`, as plain containers (without `rerun`, which
    is the CLI's switch, not part of a cell). A fresh copy each call: a sweep locates each of its
    cells more than once, and Hydra takes most of a second per composition."""
    return copy.deepcopy(_composed(name, tuple(dedupe(overrides))))


@functools.lru_cache(maxsize=512)
def _composed(name: str, overrides: tuple[str, ...]) -> dict:
    import hydra
    from omegaconf import OmegaConf

    with hydra.initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        raw = OmegaConf.to_container(hydra.compose(name, overrides=list(overrides)), resolve=True)
    raw.pop("rerun", None)
    return raw


def offline_cell(model: str, agents: int, length: str, system: str, *more: str) -> tuple:
    """The spec of one offline cell (`more`: further Hydra overrides, e.g. "cluster=1p2d")."""
    return ("offline", [f"model={model}", f"+agents={agents}", f"+len={length}", f"system={system}", *more])


def offline_config(overrides):
    from dualpath_jax.configure import build_config

    return build_config(compose("offline", [*QUIET, *overrides]))


def online_config(overrides, aps: float | None = None):
    from dualpath_jax.configure import build_config

    # repr: the rate exactly (a capacity found by a search has more digits than :g keeps)
    extra = [f"+aps={float(aps)!r}"] if aps is not None else ["+capacity=true"]
    return build_config(compose("online", [*QUIET, *ONLINE, *overrides, *extra]), online=True)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def locate(spec: tuple, results_dir=None):
    """The `dualpath_jax.results.Cell` of a cell spec: ("offline", overrides) |
    ("online", overrides, aps) | ("capacity", overrides)."""
    from dualpath_jax.results import cell_of

    kind, overrides, *rest = spec
    if kind == "offline":
        return cell_of(offline_config(overrides), kind, results_root(results_dir))
    if kind not in ("online", "capacity"):
        raise ValueError(f"unknown cell kind {kind!r}")
    cfg = online_config(overrides, rest[0] if kind == "online" else None)
    return cell_of(cfg, kind, results_root(results_dir))


def _must_rerun(cell) -> bool:
    return RERUN and str(cell.path) not in RERUN_DONE


def _reusable(cell) -> dict | None:
    """The stored results of `cell` if they can be reused, else None (the cell must run)."""
    from dualpath_jax.results import StaleCellError, stored

    found = stored(cell)
    if found.status == "fresh" and not _must_rerun(cell):
        return found.data
    if STORED_ONLY:
        why = "rerun asked for" if found.status == "fresh" else found.why
        raise StaleCellError(f"{_rel(found.path)}: {found.status} ({why}); --stored-only runs no cell")
    if found.status == "stale":
        _log(f"[yellow]stale: {_rel(found.path)} ({found.why}); running the cell again[/]")
    return None


def compute(cell) -> tuple[dict, str]:
    """Run a cell: (the numbers for its results file, its table as text)."""
    from dualpath_jax.configure import anchor_model
    from dualpath_jax.experiment import run_offline
    from dualpath_jax.online.run import run_capacity, run_online
    from dualpath_jax.results import as_text, capacity_table, offline_payload, offline_text, online_table

    cfg, anchor = cell.cfg, anchor_model(cell.cfg)
    if cell.kind == "offline":
        res = run_offline(cfg, anchor, progress=_turns_progress())
        return offline_payload(res), offline_text(res)
    if cell.kind == "online":
        systems = run_online(cfg, anchor, progress=_turns_progress())
        return {"systems": systems}, as_text(online_table(cfg, systems), width=140)
    # its systems' searches side by side, as many as JOBS allows (--jobs 1: one process in all)
    systems = run_capacity(cfg, anchor, log=lambda m: _log(f"     {m}"), jobs=min(len(cfg.systems), JOBS))
    return {"systems": systems}, as_text(capacity_table(cfg, systems), width=140)


def _run(cell, label: str) -> dict:
    """Run a cell, write its files, return its results file's contents."""
    from dualpath_jax.results import prepare, write_cell

    prepare(cell)
    _log(f"run  {label}")
    t0 = time.perf_counter()
    payload, table = compute(cell)
    RUNS[cell.kind] += 1
    write_cell(cell, payload, table)
    RERUN_DONE.add(str(cell.path))
    _log(f"     -> {_rel(cell.path)} ({time.perf_counter() - t0:.1f} s)")
    return _read(cell.path)


def _read(path: Path) -> dict:
    import json

    data = json.loads(path.read_text())
    data["_path"] = str(path)
    return data


def _get(spec: tuple, results_dir=None) -> dict:
    cell = locate(spec, results_dir)
    data = _reusable(cell)
    if data is None:
        kind, overrides, *rest = spec
        what = f"aps{rest[0]:g}" if kind == "online" else ""
        return _run(cell, " ".join([kind, what, *dedupe(overrides)]).replace("  ", " "))
    data["_path"] = str(cell.path)
    return data


def offline(overrides, results_dir=None) -> dict:
    """The offline cell `overrides` (e.g. ["model=ds27b", "+agents=1024", "+len=64k", "system=all"])."""
    return _get(("offline", overrides), results_dir)


def online(overrides, aps: float, results_dir=None) -> dict:
    """The online cell `overrides` at `aps` agents per second: {"config", "systems": {name: summary}}."""
    return _get(("online", overrides, aps), results_dir)


def capacity(overrides, results_dir=None) -> dict:
    """The SLO capacity search of `overrides`: {"config", "systems": {name: {capacity_aps, probes}}}."""
    return _get(("capacity", overrides), results_dir)


def get(spec: tuple, results_dir=None) -> dict:
    """One cell spec: ("offline", overrides) | ("online", overrides, aps) | ("capacity", overrides)."""
    return _get(spec, results_dir)


def stored(spec: tuple, results_dir=None) -> dict | None:
    """`spec` read from its results file if that holds the same cell from code of the same
    semantics, else None (nothing is run)."""
    from dualpath_jax.results import stored as stored_cell

    cell = locate(spec, results_dir)
    found = stored_cell(cell)
    if found.status != "fresh" or _must_rerun(cell):
        return None
    found.data["_path"] = str(cell.path)
    return found.data


def _die_with_parent(parent: int) -> None:
    """Pool worker initializer: exit as soon as the parent is gone (kill -9 of the figures
    command must not leave workers running whole simulations)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _get_in_worker(spec: tuple, results_dir, rerun: bool, stored_only: bool) -> tuple[dict, Counter]:
    """`get` in a pool process; returns the cells it ran too (RUNS lives per process)."""
    global RERUN, STORED_ONLY
    RERUN, STORED_ONLY = rerun, stored_only
    RUNS.clear()
    return get(spec, results_dir), Counter(RUNS)


def fetch(specs: list[tuple], label: str, results_dir=None, jobs: int | None = None) -> list[dict]:
    """Every cell of `specs` (read or run), with a progress bar. Missing cells run in `jobs`
    processes (default `JOBS`); each is a single-threaded simulation, so on N cores N of them
    run side by side."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    global _bar
    jobs = JOBS if jobs is None else jobs
    out: dict[int, dict] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"{label} cells", total=len(specs))
        if jobs > 1:  # read what is there, then run the rest side by side
            for i, spec in enumerate(specs):
                data = stored(spec, results_dir)
                if data is not None:
                    out[i] = data
                    bar.advance(task)
        missing = [i for i in range(len(specs)) if i not in out]
        if jobs > 1 and len(missing) > 1 and not STORED_ONLY:
            _run_in_pool(
                [specs[i] for i in missing],
                missing,
                results_dir,
                min(jobs, len(missing)),
                out,
                lambda: bar.advance(task),
            )
        _bar = bar
        try:
            for i, spec in enumerate(specs):
                if i not in out:
                    out[i] = get(spec, results_dir)
                    bar.advance(task)
        finally:
            _bar = None
    return [out[i] for i in range(len(specs))]


def _run_in_pool(specs, index, results_dir, jobs, out, advance) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    _log(f"running {len(specs)} cells in {jobs} processes")
    # spawn, not fork: the parent holds threads (rich's progress refresh) that fork would copy.
    with ProcessPoolExecutor(
        jobs, mp_context=mp.get_context("spawn"), initializer=_die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        futures = {
            pool.submit(_get_in_worker, spec, results_dir, RERUN, STORED_ONLY): i for spec, i in zip(specs, index)
        }
        for fut in as_completed(futures):
            out[futures[fut]], runs = fut.result()
            RUNS.update(runs)
            RERUN_DONE.add(out[futures[fut]]["_path"])
            advance()

"""Get-or-run the experiment cells the figures are drawn from.

A cell is one experiment run, named by its Hydra overrides. `offline`, `online` and `capacity`
return the cell's results JSON (as a dict): read from <results_dir>/... when the file is there and
was made with the same configuration, otherwise run through the project's Python API and written
there first, so later figures and later invocations reuse it.

The file names are the project's own (`dualpath_jax.results.result_path` / `online_path`). Those
names do not encode every setting (e.g. online.duration_s), so a file on disk is reused only when
its stored config agrees with the requested one on every setting both name, ignoring settings that
do not change results (tracking, progress bars, results_dir; fields added to the schema after the
file was written); a file made with another configuration is re-run and overwritten, with a
warning.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
# Settings that never change a result: left out when a stored config is compared with a request.
IGNORED = {("results_dir",), ("tracking",), ("sim", "progress")}
# Every cell runs without W&B; the figures draw their own progress bars (cells and turns).
QUIET = ("tracking.wandb=false", "sim.progress=false")
# Online cells of the figures: 15 min of arrivals, the first 200 s not judged (cheaper than the
# configs' 30 min / 5 min defaults; every online figure title says so).
ONLINE = ("online.duration_s=900", "online.warmup_s=200")

RUNS: Counter = Counter()  # cells run (not read) by this process and its pool workers, by kind
# Processes that run missing cells side by side (`fetch`; `--jobs` of the figures command).
JOBS = max(1, os.cpu_count() or 1)
console = Console(stderr=True)
_log: Callable[[str], None] = console.print
_bar = None  # the rich Progress of `fetch`, while one is open: simulations add a turns bar to it


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
    """configs/<name>.yaml composed with `overrides`, as plain containers."""
    import hydra
    from omegaconf import OmegaConf

    with hydra.initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return OmegaConf.to_container(hydra.compose(name, overrides=dedupe(overrides)), resolve=True)


def offline_cell(model: str, agents: int, length: str, system: str, *more: str) -> tuple:
    """The spec of one offline cell (`more`: further Hydra overrides, e.g. "cluster=1p2d")."""
    return ("offline", [f"model={model}", f"+agents={agents}", f"+len={length}", f"system={system}", *more])


def offline_config(overrides):
    from dualpath_jax.experiment import build_config

    return build_config(compose("offline", [*QUIET, *overrides]))


def online_config(overrides, aps: float | None = None):
    from dualpath_jax.experiment import build_config

    extra = [f"+aps={aps:g}"] if aps is not None else ["+capacity=true"]
    return build_config(compose("online", [*QUIET, *ONLINE, *overrides, *extra]), online=True)


def offline_path(cfg, results_dir=None) -> Path:
    """Where the offline cell of `cfg` lives (result_path only reads `.cfg` of its argument)."""
    from dualpath_jax.results import result_path

    return result_path(SimpleNamespace(cfg=cfg), results_root(results_dir))


def online_cell_path(cfg, kind: str, results_dir=None) -> Path:
    from dualpath_jax.results import online_path

    return online_path(cfg, kind, results_root(results_dir))


def _anchor(cfg):
    from dualpath_jax.config import ModelSpec, from_dict
    from dualpath_jax.experiment import load_named

    return from_dict(ModelSpec, load_named("model", cfg.hardware.calibration.anchor_model))


def _strip(d: dict, prefix=()) -> dict:
    out = {}
    for k, v in d.items():
        key = (*prefix, k)
        if key in IGNORED:
            continue
        out[k] = _strip(v, key) if isinstance(v, dict) else v
    return out


def _diff(a, b, prefix="") -> list[str]:
    """Settings whose values differ. Keys on one side only are skipped: the config schema grows
    (a file written before a field existed holds that field's default)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) & set(b)):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{prefix}{i}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _stored(path: Path, cfg) -> dict | None:
    """The file's contents if it holds `cfg`'s cell, else None (missing or another config)."""
    from dualpath_jax.config import to_dict

    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    want = _strip(json.loads(json.dumps(to_dict(cfg))))
    have = _strip(data.get("config", {}))
    diff = _diff(want, have)
    if diff:
        _log(f"[yellow]{path}: made with another config ({', '.join(diff[:4])}"
             f"{', ...' if len(diff) > 4 else ''}); running the cell again[/]")
        return None
    return data


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _locate(cell: tuple, results_dir=None) -> tuple:
    """(config, results file) of a cell spec."""
    kind, overrides, *rest = cell
    if kind == "offline":
        cfg = offline_config(overrides)
        return cfg, offline_path(cfg, results_dir)
    cfg = online_config(overrides, rest[0] if kind == "online" else None)
    name = "capacity" if kind == "capacity" else f"aps{cfg.online.aps:g}"
    return cfg, online_cell_path(cfg, name, results_dir)


def offline(overrides, results_dir=None, force: bool = False) -> dict:
    """The offline cell `overrides` (e.g. ["model=ds27b", "+agents=1024", "+len=64k", "system=all"])."""
    from dualpath_jax.experiment import run_offline
    from dualpath_jax.results import write_result, write_table

    cfg, path = _locate(("offline", overrides), results_dir)
    data = None if force else _stored(path, cfg)
    if data is None:
        _log(f"run  offline {' '.join(dedupe(overrides))}")
        res = run_offline(cfg, _anchor(cfg), progress=_turns_progress())
        RUNS["offline"] += 1
        write_table(res, write_result(res, results_root(results_dir)))
        _log(f"     -> {_rel(path)} ({res.wall_s:.1f} s)")
        data = json.loads(path.read_text())
    data["_path"] = str(path)
    return data


def _online(overrides, aps, results_dir, force, runner) -> dict:
    from dualpath_jax.config import to_dict
    from dualpath_jax.results import write_json_atomic

    cfg, path = _locate(("capacity", overrides) if aps is None else ("online", overrides, aps), results_dir)
    data = None if force else _stored(path, cfg)
    if data is None:
        _log(f"run  online {'capacity' if aps is None else f'aps{aps:g}'} {' '.join(dedupe(overrides))}")
        t0 = time.perf_counter()
        systems = runner(cfg, _anchor(cfg))
        RUNS["capacity" if aps is None else "online"] += 1
        write_json_atomic(path, {"config": to_dict(cfg), "systems": systems})
        _log(f"     -> {_rel(path)} ({time.perf_counter() - t0:.1f} s)")
        data = json.loads(path.read_text())
    data["_path"] = str(path)
    return data


def online(overrides, aps: float, results_dir=None, force: bool = False) -> dict:
    """The online cell `overrides` at `aps` agents per second: {"config", "systems": {name: summary}}."""
    from dualpath_jax.online.run import run_online

    return _online(overrides, aps, results_dir, force,
                   lambda cfg, anchor: run_online(cfg, anchor, progress=_turns_progress()))


def capacity(overrides, results_dir=None, force: bool = False) -> dict:
    """The SLO capacity search of `overrides`: {"config", "systems": {name: {capacity_aps, probes}}}."""
    from dualpath_jax.online.run import run_capacity

    return _online(overrides, None, results_dir, force,
                   lambda cfg, anchor: run_capacity(cfg, anchor, log=lambda m: _log(f"     {m}")))


def get(cell: tuple, results_dir=None) -> dict:
    """One cell spec: ("offline", overrides) | ("online", overrides, aps) | ("capacity", overrides)."""
    kind, overrides, *rest = cell
    if kind == "offline":
        return offline(overrides, results_dir)
    if kind == "online":
        return online(overrides, rest[0], results_dir)
    if kind == "capacity":
        return capacity(overrides, results_dir)
    raise ValueError(f"unknown cell kind {kind!r}")


def stored(cell: tuple, results_dir=None) -> dict | None:
    """`cell` read from its results file if that holds the same configuration, else None (nothing
    is run)."""
    cfg, path = _locate(cell, results_dir)
    data = _stored(path, cfg)
    if data is not None:
        data["_path"] = str(path)
    return data


def _get_in_worker(cell: tuple, results_dir) -> tuple[dict, Counter]:
    """`get` in a pool process; returns the cells it ran too (RUNS lives per process)."""
    RUNS.clear()
    return get(cell, results_dir), Counter(RUNS)


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
        if jobs > 1 and len(missing) > 1:
            _run_in_pool([specs[i] for i in missing], missing, results_dir, min(jobs, len(missing)), out,
                         lambda: bar.advance(task))
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
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_get_in_worker, spec, results_dir): i for spec, i in zip(specs, index)}
        for fut in as_completed(futures):
            out[futures[fut]], runs = fut.result()
            RUNS.update(runs)
            advance()

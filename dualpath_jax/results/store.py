"""Results files: write a cell, find out whether a stored cell can be reused, list stored cells.

A results file (schema in docs/results.md):

    {"cell": {"id", "kind", "inputs"}, "code": {package, version, git_commit, git_dirty,
     results_schema, sim_semantics}, "config": <identity config>, ...the run's numbers}

written with sorted keys and no wall-clock fields, so the same cell run by the same code gives the
same bytes. Beside it, `<same stem>.txt` holds the printed table. The pair is written under a lock
on the folder, so two processes writing one cell leave one complete, consistent pair; each file is
replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..atomic import atomic_write, check_writable
from .identity import Cell, digest
from .provenance import RESULTS_SCHEMA, SIM_SEMANTICS, code_info, git_state


class StaleCellError(RuntimeError):
    """A stored cell was asked for but is missing or was made by other code (names the file)."""


def dumps(doc: dict) -> str:
    """The bytes of a results file: NaN and infinities are refused, not written as `Infinity`."""
    try:
        return json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"
    except ValueError as e:
        raise ValueError(f"a results value is not finite: {_non_finite(doc) or e}") from None


def _non_finite(obj, where="") -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{where or '<root>'} = {obj}"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{where}.{k}" if where else str(k))
        if found:
            return found
    return None


def document(cell: Cell, payload: dict, code: dict | None = None) -> dict:
    """The results file of `cell` holding `payload` (the run's numbers)."""
    reserved = {"cell", "code", "config"} & set(payload)
    if reserved:
        raise ValueError(f"payload keys {sorted(reserved)} are reserved for the file's header")
    return {
        "cell": {"id": cell.id, "kind": cell.kind, "inputs": cell.identity["inputs"]},
        "code": code if code is not None else code_info(),
        "config": cell.identity["config"],
        **payload,
    }


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder (flock on its descriptor: no lock file to leave behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def prepare(cell: Cell) -> None:
    """Fail before any work if the cell's folder cannot be written (names results_dir), and read
    the checkout's state now: a long run's file names the code it started from, not a commit made
    while it ran."""
    check_writable(cell.path.parent, "results_dir")
    git_state()


def write_cell(cell: Cell, payload: dict, table: str | None = None, code: dict | None = None) -> Path:
    """Write the cell's results file (and its table, if given) as one consistent pair."""
    text = dumps(document(cell, payload, code))
    cell.path.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(cell.path.parent):
        atomic_write(cell.path, text)
        if table is not None:
            atomic_write(cell.table_path, table.rstrip("\n") + f"\ncell {cell.id}: {cell.path.name}\n")
    return cell.path


@dataclass(frozen=True)
class Stored:
    """What is on disk for a cell: status "missing", "fresh" (reusable) or "stale" (with why)."""

    status: str
    path: Path
    why: str = ""
    data: dict | None = None


def stored(cell: Cell) -> Stored:
    """Whether `cell`'s file holds this cell, made by code of the same semantics and schema."""
    if not cell.path.is_file():
        return Stored("missing", cell.path, "no file")
    try:
        data = json.loads(cell.path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return Stored("stale", cell.path, f"unreadable ({e})")
    why = staleness(data, cell.identity)
    return Stored("stale" if why else "fresh", cell.path, why, data)


def staleness(data: dict, identity: dict | None = None) -> str:
    """Why a stored results document cannot be reused ("" if it can)."""
    code = data.get("code") if isinstance(data, dict) else None
    if not isinstance(code, dict):
        return "written before results files recorded their code (schema 1)"
    if code.get("results_schema") != RESULTS_SCHEMA:
        return f"results schema {code.get('results_schema')}, this code writes {RESULTS_SCHEMA}"
    if code.get("sim_semantics") != SIM_SEMANTICS:
        return f"simulator semantics {code.get('sim_semantics')}, this code is {SIM_SEMANTICS}"
    have = identity_of(data)
    if have is None:
        return "no cell identity in the file"
    if digest(have) != data["cell"].get("id"):
        return "the file's identity does not match its id (edited by hand?)"
    if identity is not None and have != identity:
        return f"holds another cell (id {data['cell'].get('id')})"
    return ""


def identity_of(data: dict) -> dict | None:
    cell = data.get("cell")
    if not isinstance(cell, dict) or "config" not in data:
        return None
    return {"kind": cell.get("kind"), "config": data["config"], "inputs": cell.get("inputs", {})}


def results_files(root: Path) -> Iterator[Path]:
    """Every results JSON under `root`'s offline/ and online/ folders."""
    for sub in ("offline", "online"):
        yield from sorted((Path(root) / sub).glob("*/*.json"))

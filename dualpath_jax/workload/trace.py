"""The project's one trace format: JSONL, one agent trajectory per line.

    {"id": "traj-0", "turns": [{"input": 6758, "cached": 0, "output": 500}, ...]}

- `input`: prompt tokens of the turn (everything the model sees before generating);
- `cached`: tokens of that prompt whose KV already exists in storage (a prefix; <= input);
- `output`: tokens generated in the turn;
- optional `t`: arrival time in seconds (timestamped traces; offline runs ignore it).

An agent runs its turns in order; turn k+1 may start only after turn k finished.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


class TraceError(ValueError):
    """A malformed trace; the message names the file and line."""


@dataclass(frozen=True)
class Turn:
    input: int
    cached: int
    output: int
    t: float | None = None

    @property
    def new(self) -> int:
        """Tokens the prefill must compute."""
        return self.input - self.cached


@dataclass(frozen=True)
class Trajectory:
    id: str
    turns: tuple[Turn, ...]

    @property
    def final_length(self) -> int:
        last = self.turns[-1]
        return last.input + last.output


def _turn_from(obj, where: str) -> Turn:
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: a turn must be an object, got {obj!r}")
    vals = {}
    for key in ("input", "cached", "output"):
        v = obj.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise TraceError(f"{where}: field '{key}' must be a non-negative integer, got {v!r}")
        vals[key] = v
    if vals["cached"] > vals["input"]:
        raise TraceError(f"{where}: 'cached' ({vals['cached']}) exceeds 'input' ({vals['input']})")
    if vals["input"] == vals["cached"]:
        raise TraceError(f"{where}: a turn must have at least one new input token")
    t = obj.get("t")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
        raise TraceError(f"{where}: field 't' must be a number, got {t!r}")
    return Turn(t=None if t is None else float(t), **vals)


def json_object(line: str, where: str) -> dict:
    """One JSONL line as an object, or a TraceError naming `where`."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise TraceError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected a JSON object")
    return obj


def parse_line(line: str, where: str) -> Trajectory:
    obj = json_object(line, where)
    tid = obj.get("id")
    if not isinstance(tid, str) or not tid:
        raise TraceError(f"{where}: field 'id' must be a non-empty string, got {tid!r}")
    turns = obj.get("turns")
    if not isinstance(turns, list) or not turns:
        raise TraceError(f"{where}: field 'turns' must be a non-empty list")
    return Trajectory(tid, tuple(_turn_from(t, f"{where}: turns[{i}]") for i, t in enumerate(turns)))


def read_trace(path: str | os.PathLike) -> list[Trajectory]:
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: trace file not found")
    out = []
    with path.open() as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                out.append(parse_line(line, f"{path}:{n}"))
    if not out:
        raise TraceError(f"{path}: trace holds no trajectories")
    return out


def _turn_obj(turn: Turn) -> dict:
    obj = {"input": turn.input, "cached": turn.cached, "output": turn.output}
    if turn.t is not None:
        obj["t"] = turn.t
    return obj


def write_trace(path: str | os.PathLike, trajectories: Iterable[Trajectory]) -> None:
    """Write atomically: a crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            for tr in trajectories:
                f.write(json.dumps({"id": tr.id, "turns": [_turn_obj(t) for t in tr.turns]}) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

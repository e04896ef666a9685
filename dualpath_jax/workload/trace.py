"""The project's one trace format: JSONL, one agent trajectory per line (UTF-8).

    {"id": "traj-0", "turns": [{"input": 6758, "cached": 0, "output": 500}, ...]}

- `id`: a non-empty string, unique within the file;
- `input`: prompt tokens of the turn (everything the model sees before generating), >= 1;
- `cached`: leading prompt tokens whose KV already exists in storage; below `input` (a turn has at
  least one new token) and, after the first turn, at most the previous turn's `input + output`
  (an agent can only reuse KV it produced). A first turn may start with preloaded KV;
- `output`: tokens generated in the turn, >= 0;
- optional `t`: arrival time in seconds, finite, non-decreasing within a trajectory (timestamped
  traces; offline runs ignore it).
Counts are JSON integers below 2**63 (`3.0`, `3.5` and `true` are not); no other keys; no
NaN/Infinity anywhere. A bad line fails with a TraceError `file:line: what is wrong`.

An agent runs its turns in order; turn k+1 may start only after turn k finished.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write

COUNT_LIMIT = 2**63  # token counts beyond int64 would overflow the simulator's arrays
TRAJECTORY_KEYS = ("id", "turns")
TURN_KEYS = ("input", "cached", "output", "t")


class TraceError(ValueError):
    """A malformed trace; the message names the file and line (or byte offset)."""


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


# --- single values, shared by the JSONL reader/writer and the Mooncake importer ----------------


def show(v) -> str:
    """repr for error messages: short, and safe for ints too long for str()."""
    try:
        text = repr(v)
    except ValueError:
        return "an integer of over 4300 digits"
    return text if len(text) <= 60 else text[:57] + "..."


def count(v, where: str, key: str, least: int = 0) -> int:
    """A JSON integer in [least, 2**63): not a bool, not a float (3.0 included)."""
    if isinstance(v, bool) or not isinstance(v, int) or not least <= v < COUNT_LIMIT:
        raise TraceError(f"{where}: field '{key}' must be an integer >= {least} (below 2**63), got {show(v)}")
    return v


def number(v, where: str, key: str) -> float:
    """A finite number (not a bool)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TraceError(f"{where}: field '{key}' must be a number, got {show(v)}")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise TraceError(f"{where}: field '{key}' must be a finite number, got {show(v)}")
    return f


def field(obj: dict, key: str, where: str):
    if key not in obj:
        raise TraceError(f"{where}: field '{key}' is missing")
    return obj[key]


def only_keys(obj: dict, known: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key not in known:
            raise TraceError(f"{where}: field {show(key)} is unknown (known: {', '.join(known)})")


# --- JSON lines ------------------------------------------------------------------------------


class _NonFinite(str):
    """A NaN/Infinity literal (or a float overflowing to inf), kept so the error can name it."""


def _nonfinite_path(obj: dict) -> str:
    """Where in `obj` a _NonFinite sits, e.g. "turns[1].t" (a loop: JSON may nest deeply)."""
    stack = [("", obj)]
    while stack:
        at, v = stack.pop()
        if isinstance(v, _NonFinite):
            return at
        if isinstance(v, dict):
            stack.extend((f"{at}.{k}" if at else k, x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{at}[{i}]", x) for i, x in enumerate(v))
    return "?"


def json_object(line: str, where: str) -> dict:
    """One JSONL line as an object, or a TraceError naming `where`. Python's json accepts NaN and
    Infinity (and 1e999 becomes inf); the trace formats do not, so they are caught here."""
    bad, dupes = [], []

    def nonfinite(text):
        bad.append(text)
        return _NonFinite(text)

    def finite_float(text):
        f = float(text)
        return f if math.isfinite(f) else nonfinite(text)

    def pairs(kv):
        d = dict(kv)
        if len(d) < len(kv):  # json keeps the last of repeated keys silently
            dupes.extend(k for k in d if sum(k == key for key, _ in kv) > 1)
        return d

    try:
        obj = json.loads(line, parse_constant=nonfinite, parse_float=finite_float, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise TraceError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # an integer literal over Python's 4300-digit limit
        raise TraceError(f"{where}: not a usable JSON number ({e})") from None
    except RecursionError:
        raise TraceError(f"{where}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected a JSON object")
    if dupes:
        raise TraceError(f"{where}: field {show(dupes[0])} appears more than once")
    if bad:
        raise TraceError(f"{where}: field '{_nonfinite_path(obj)}' must be a finite number, got {bad[0]}")
    return obj


def numbered_lines(path: Path, last: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line up to line `last` (all by default); bytes that
    are not UTF-8 are named by offset."""
    if not path.is_file():
        raise TraceError(f"{path}: trace file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TraceError(f"{path}: cannot read the file ({e.strerror or e})") from None
    offset = 0
    for n, raw in enumerate(data.split(b"\n")[:last], start=1):
        if raw.strip(b" \t\r"):  # JSON whitespace only: anything else is a malformed line
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TraceError(f"{path}:{n}: byte offset {offset + e.start}: not valid UTF-8 ({e.reason})") from None
            yield n, text
        offset += len(raw) + 1


# --- trajectories: one validation for the reader, the writer and the Mooncake importer --------


def _check_turn(turn, prev: Turn | None, timed: tuple[int, float] | None, where: str) -> Turn:
    """`turn` (its time as a float) after `prev`, the last timed turn being `timed` (index, t)."""
    if not isinstance(turn, Turn):
        raise TraceError(f"{where}: a turn must be a Turn, got {show(turn)}")
    inp = count(turn.input, where, "input", least=1)
    cached = count(turn.cached, where, "cached")
    count(turn.output, where, "output")
    if cached > inp:
        raise TraceError(f"{where}: field 'cached' ({cached}) exceeds 'input' ({inp})")
    if cached == inp:
        raise TraceError(
            f"{where}: a turn must have at least one new input token (field 'cached' equals 'input', {inp})"
        )
    if prev is not None and cached > prev.input + prev.output:
        raise TraceError(
            f"{where}: field 'cached' ({cached}) exceeds what the agent's previous "
            f"turn produced (input {prev.input} + output {prev.output})"
        )
    if turn.t is None:
        return turn
    t = number(turn.t, where, "t")
    if timed is not None and t < timed[1]:
        raise TraceError(
            f"{where}: field 't' ({t}) is before turns[{timed[0]}]'s ({timed[1]}): "
            "times may not decrease within a trajectory"
        )
    return turn if type(turn.t) is float else dataclasses.replace(turn, t=t)


def check_trajectory(tr, where: str) -> Trajectory:
    """`tr` if it is valid (times as floats), else a TraceError naming `where`."""
    if not isinstance(tr, Trajectory):
        raise TraceError(f"{where}: expected a Trajectory, got {show(tr)}")
    if not isinstance(tr.id, str) or not tr.id:
        raise TraceError(f"{where}: field 'id' must be a non-empty string, got {show(tr.id)}")
    if not isinstance(tr.turns, tuple) or not tr.turns:
        raise TraceError(f"{where}: field 'turns' must be a non-empty tuple of turns")
    turns, prev, timed = [], None, None
    for i, turn in enumerate(tr.turns):
        prev = _check_turn(turn, prev, timed, f"{where}: turns[{i}]")
        timed = timed if prev.t is None else (i, prev.t)
        turns.append(prev)
    return Trajectory(tr.id, tuple(turns))


def check_trace(numbered: Iterable[tuple[int, Trajectory]], path: Path) -> list[Trajectory]:
    """Every (line, trajectory) checked, ids unique within the file; a trace is never empty."""
    out, first_line = [], {}
    for n, tr in numbered:
        tr = check_trajectory(tr, f"{path}:{n}")
        if tr.id in first_line:
            raise TraceError(f"{path}:{n}: field 'id' ({show(tr.id)}) repeats line {first_line[tr.id]}")
        first_line[tr.id] = n
        out.append(tr)
    if not out:
        raise TraceError(f"{path}: trace holds no trajectories")
    return out


# --- the JSONL reader and writer ---------------------------------------------------------------


def _turn_from(obj, where: str) -> Turn:
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: a turn must be an object, got {show(obj)}")
    only_keys(obj, TURN_KEYS, where)
    if "t" in obj and obj["t"] is None:  # None means "no time" on a Turn; JSON omits the key instead
        raise TraceError(f"{where}: field 't' must be a number, got null")
    return Turn(
        input=field(obj, "input", where),
        cached=field(obj, "cached", where),
        output=field(obj, "output", where),
        t=obj.get("t"),
    )


def parse_line(line: str, where: str) -> Trajectory:
    """One line as a Trajectory, its fields as written (check_trajectory validates them)."""
    obj = json_object(line, where)
    only_keys(obj, TRAJECTORY_KEYS, where)
    turns = field(obj, "turns", where)
    if not isinstance(turns, list) or not turns:
        raise TraceError(f"{where}: field 'turns' must be a non-empty list")
    return Trajectory(
        field(obj, "id", where), tuple(_turn_from(t, f"{where}: turns[{i}]") for i, t in enumerate(turns))
    )


def read_trace(path: str | os.PathLike) -> list[Trajectory]:
    path = Path(path)
    return check_trace(((n, parse_line(line, f"{path}:{n}")) for n, line in numbered_lines(path)), path)


def _line(tr: Trajectory) -> str:
    turns = [
        {"input": t.input, "cached": t.cached, "output": t.output, **({} if t.t is None else {"t": t.t})}
        for t in tr.turns
    ]
    return json.dumps({"id": tr.id, "turns": turns}, allow_nan=False) + "\n"


def write_trace(path: str | os.PathLike, trajectories: Iterable[Trajectory]) -> None:
    """Refuse (TraceError naming the line it would take) what read_trace would reject, then write
    atomically: a failure leaves the old file, never half of a new one."""
    path = Path(path)
    trajs = check_trace(enumerate(trajectories, start=1), path)
    atomic_write(path, "".join(_line(tr) for tr in trajs))

"""A profiled cost table (benchmarks/profile_costs.py writes it; `costmodel=profiled` reads it).

One JSON file: a header (which Flax model config ran, as built, and the simulator's ModelSpec for
it; the device, jax version, git commit; the grid; the units) and two tables of median seconds:

    prefill_s[i][j][k]: one prefill of `batch[k]` requests of `new[j]` new tokens each after
                        `cached[i]` cached tokens (the testbed's batches hold one shape)
    decode_s[i][j]:     one decode step of `batch[i]` requests at `context[j]` tokens each

Lookups are multilinear: linear in each dimension between its two neighbouring grid points.
Outside the grid (docs/costmodel.md, "Profiled costs"):
- below a dimension's smallest value the time is the smallest value's (clamped, one warning);
- above the largest cached, new or context value: an error (`OutsideTable`), checked before a run;
- above the largest batch: the largest batch's time per request times the batch (no batching gain
  past what was measured), one warning.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, ModelSpec, from_dict

FORMAT = "dualpath-jax profiled costs"
FORMAT_VERSION = 1
UNITS = {"time": "seconds (median over repeats, compile and warm-up excluded)", "tokens": "tokens per request"}
PREFILL_AXES = ("cached", "new", "batch")
DECODE_AXES = ("batch", "context")


class TableError(ValueError):
    """A profiled table is missing, unreadable or malformed; the message names the file and field."""


class OutsideTable(ValueError):
    """A lookup beyond the grid's largest value (profile a larger grid)."""


def _fail(path: Path, field: str, why: str):
    raise TableError(f"{path}: {field}: {why}")


def _axis(path: Path, raw: dict, field: str, minimum: int) -> tuple[int, ...]:
    values = raw.get(field.rsplit(".", 1)[1]) if isinstance(raw, dict) else None
    if not isinstance(values, list) or not values:
        _fail(path, field, f"expected a non-empty list of integers, got {values!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values):
        _fail(path, field, f"expected integers >= {minimum}, got {values!r}")
    if values != sorted(set(values)):
        _fail(path, field, f"must be strictly increasing, got {values!r}")
    return tuple(values)


def _times(path: Path, data, field: str, shape: tuple[int, ...]):
    """A nested list of positive finite seconds of exactly `shape`, as nested tuples."""
    if not shape:
        ok = isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data) and data > 0
        if not ok:
            _fail(path, field, f"expected a positive finite number of seconds, got {data!r}")
        return float(data)
    if not isinstance(data, list) or len(data) != shape[0]:
        got = len(data) if isinstance(data, list) else repr(data)
        _fail(path, field, f"expected a list of {shape[0]} entries (the grid), got {got}")
    return tuple(_times(path, x, f"{field}[{i}]", shape[1:]) for i, x in enumerate(data))


def _bracket(axis: tuple[int, ...], x: float) -> tuple[int, int, float]:
    """(lower index, upper index, weight of the upper) of x inside the axis (x within its range)."""
    if len(axis) == 1 or x <= axis[0]:
        return 0, 0, 0.0
    j = bisect.bisect_left(axis, x)
    if axis[j] == x:
        return j, j, 0.0
    lo, hi = axis[j - 1], axis[j]
    return j - 1, j, (x - lo) / (hi - lo)


def _lerp(table, brackets) -> float:
    """Multilinear interpolation of a nested tuple over per-dimension brackets."""
    if not brackets:
        return table
    (i, j, w), rest = brackets[0], brackets[1:]
    lo = _lerp(table[i], rest)
    return lo if w == 0.0 else lo + w * (_lerp(table[j], rest) - lo)


@dataclass(frozen=True)
class ProfileTable:
    path: Path
    header: dict  # everything but the two tables, as read
    sim_model: dict  # the simulator's ModelSpec for the profiled Flax config (serving.simcheck.model_spec)
    prefill_grid: dict  # axis name -> values
    decode_grid: dict
    prefill_s: tuple
    decode_s: tuple
    hbm_gb: float | None  # the device's memory JAX could use, if the profiler could read it

    @property
    def model(self) -> str:
        return self.header["model"]

    def __post_init__(self):
        object.__setattr__(self, "_warned", set())

    def _warn(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(f"{self.path}: {message}", stacklevel=3)

    def _clamped(self, table: str, axes: tuple[str, ...], grid: dict, values: tuple[float, ...]) -> list:
        brackets = []
        for name, x in zip(axes, values):
            axis = grid[name]
            if x > axis[-1] and name != "batch":
                raise OutsideTable(
                    f"{self.path}: grid.{table}.{name}: {x:g} is above the profiled grid's largest "
                    f"{axis[-1]} (profile a larger grid: benchmarks/profile_costs.py --{table}-{name})"
                )
            if x < axis[0]:
                self._warn(
                    (table, name), f"grid.{table}.{name}: {x:g} is below the grid's smallest {axis[0]}; priced at it"
                )
            brackets.append(_bracket(axis, x))
        return brackets

    def _batched(self, table: str, grid: dict, times, axes, values, batch: float) -> float:
        """`values` exclude batch, which is the table's first (decode) or last (prefill) axis."""
        top = grid["batch"][-1]
        b = min(batch, top)
        if batch > top:
            self._warn(
                (table, "batch"),
                f"grid.{table}.batch: {batch:g} is above the grid's largest {top}; priced at its time per request",
            )
        point = (b, *values) if table == "decode" else (*values, b)
        t = _lerp(times, self._clamped(table, axes, grid, point))
        return t * batch / b

    def prefill_time(self, cached: float, new: float, batch: float = 1) -> float:
        """Seconds of one prefill of `batch` requests of `new` tokens after `cached` each."""
        return self._batched("prefill", self.prefill_grid, self.prefill_s, PREFILL_AXES, (cached, new), batch)

    def decode_time(self, batch: float, context: float) -> float:
        """Seconds of one decode step of `batch` requests at `context` tokens each."""
        return self._batched("decode", self.decode_grid, self.decode_s, DECODE_AXES, (context,), batch)

    def check_range(self, cached: int, new: int, context: int) -> None:
        """Raise OutsideTable if a workload's largest turn needs more than the grid holds."""
        for table, name, x in (("prefill", "cached", cached), ("prefill", "new", new), ("decode", "context", context)):
            top = getattr(self, f"{table}_grid")[name][-1]
            if x > top:
                raise OutsideTable(
                    f"{self.path}: grid.{table}.{name}: the workload needs {x} tokens, above the profiled "
                    f"grid's largest {top} (profile a larger grid: benchmarks/profile_costs.py --{table}-{name})"
                )


def load_table(path: str | Path) -> ProfileTable:
    """Read and check a profiled table; TableError names the file and the field. Read once per
    file version (the config check and every system's cost model ask for it)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise TableError(f"{path}: no such file (costmodel.table)") from None
    return _load(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, size: int) -> ProfileTable:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TableError(f"{path}: no such file (costmodel.table)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TableError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise TableError(f"{path}: line {e.lineno}: not JSON: {e.msg}") from None
    if not isinstance(data, dict):
        _fail(path, "(top level)", f"expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        _fail(path, "format", f"expected {FORMAT!r}, got {data.get('format')!r}")
    if data.get("format_version") != FORMAT_VERSION:
        _fail(path, "format_version", f"expected {FORMAT_VERSION}, got {data.get('format_version')!r}")
    for field in ("model", "device_kind", "jax"):
        if not isinstance(data.get(field), str) or not data[field]:
            _fail(path, field, f"expected a non-empty string, got {data.get(field)!r}")
    sim_model = data.get("sim_model")
    if not isinstance(sim_model, dict) or sim_model.get("name") != data["model"]:
        _fail(path, "sim_model", f"expected the simulator's ModelSpec of model {data['model']!r}")
    try:
        from_dict(ModelSpec, sim_model, "sim_model")
    except ConfigError as e:
        raise TableError(f"{path}: {e}") from None
    hbm = data.get("device_memory_gb")
    if hbm is not None and (isinstance(hbm, bool) or not isinstance(hbm, (int, float)) or not hbm > 0):
        _fail(path, "device_memory_gb", f"expected a positive number or null, got {hbm!r}")
    grid = data.get("grid")
    if not isinstance(grid, dict):
        _fail(path, "grid", f"expected an object with prefill and decode, got {grid!r}")
    grids = {}
    for table, axes in (("prefill", PREFILL_AXES), ("decode", DECODE_AXES)):
        raw = grid.get(table)
        if not isinstance(raw, dict):
            _fail(path, f"grid.{table}", f"expected an object with {', '.join(axes)}, got {raw!r}")
        grids[table] = {a: _axis(path, raw, f"grid.{table}.{a}", 0 if a == "cached" else 1) for a in axes}
    prefill = _times(path, data.get("prefill_s"), "prefill_s", tuple(len(grids["prefill"][a]) for a in PREFILL_AXES))
    decode = _times(path, data.get("decode_s"), "decode_s", tuple(len(grids["decode"][a]) for a in DECODE_AXES))
    header = {k: v for k, v in data.items() if k not in ("prefill_s", "decode_s")}
    return ProfileTable(path, header, sim_model, grids["prefill"], grids["decode"], prefill, decode, hbm)

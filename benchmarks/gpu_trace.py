"""GPU-side copy times from a JAX profiler trace (`jax.profiler.trace`), without TensorBoard.

The host sees a copy end only when a thread wakes up to look; the profiler's device planes hold
each memcpy's own start and duration on the GPU. `copy_events` reads them (jax.profiler.ProfileData)
and groups them by kind and size, so a run's DE->PE hops can be set against plain copies of the
same size timed the same way.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

_SIZE = re.compile(r"(?:size|bytes)[:=\s]+(\d+)", re.I)


def _xplane(trace_dir: str | Path) -> Path:
    found = sorted(Path(trace_dir).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{trace_dir}: no *.xplane.pb (was jax.profiler.trace run there?)")
    return found[-1]


def _nbytes(stats) -> int | None:
    for name, value in stats:
        if name is None:
            continue
        if name in ("bytes", "size", "num_bytes", "memcpy_bytes") and isinstance(value, (int, float)):
            return int(value)
        if isinstance(value, str):
            m = _SIZE.search(value)
            if m:
                return int(m.group(1))
    return None


def copy_events(trace_dir: str | Path) -> list[dict]:
    """Every memcpy event on a GPU plane: plane, line, name, bytes (None if unknown), start and
    duration in ns, and its stats as strings."""
    from jax.profiler import ProfileData

    data = ProfileData.from_file(str(_xplane(trace_dir)))
    out = []
    for plane in data.planes:
        if "GPU" not in plane.name:
            continue
        for line in plane.lines:
            for ev in line.events:
                if "memcpy" not in ev.name.lower():
                    continue
                stats = [(k, v) for k, v in ev.stats if k is not None]
                out.append(
                    {
                        "plane": plane.name,
                        "line": line.name,
                        "name": ev.name,
                        "bytes": _nbytes(stats),
                        "start_ns": ev.start_ns,
                        "duration_ns": ev.duration_ns,
                        "stats": {k: str(v) for k, v in stats},
                    }
                )
    return out


def by_kind_and_size(events: list[dict]) -> dict:
    """(event name, plane, bytes) -> count, total seconds, GB/s."""
    acc = defaultdict(lambda: [0, 0.0])
    for e in events:
        a = acc[(e["name"], e["plane"], e["bytes"])]
        a[0] += 1
        a[1] += e["duration_ns"] / 1e9
    return {
        f"{name} | {plane} | {nb}": {
            "count": n,
            "seconds": s,
            "GBps": nb * n / s / 1e9 if nb is not None and s > 0 else None,
        }
        for (name, plane, nb), (n, s) in sorted(acc.items(), key=lambda kv: -kv[1][1])
    }


def device_copies(events: list[dict], sizes) -> dict[int, list[float]]:
    """Durations (s) of device-to-device memcpys of the given byte sizes, by size."""
    want, out = {int(n) for n in sizes}, defaultdict(list)
    for e in events:
        if e["name"] in ("MemcpyP2P", "MemcpyD2D") and e["bytes"] in want:
            out[e["bytes"]].append(e["duration_ns"] / 1e9)
    return dict(out)


def hop_vs_copy(run: dict[int, list[float]], copies: dict[int, list[float]]) -> dict:
    """A run's hops against plain copies of the same sizes, both timed on the GPU: GB/s of each
    (the copies weighted as the hops are: each hop set against the median copy of its size)."""
    nbytes = sum(n * len(ts) for n, ts in run.items())
    hop_s = sum(sum(ts) for ts in run.values())
    same_s = sum(len(ts) * float(sorted(copies[n])[len(copies[n]) // 2]) for n, ts in run.items() if copies.get(n))
    return {
        "hops": sum(len(ts) for ts in run.values()),
        "bytes": nbytes,
        "hop_GBps": nbytes / hop_s / 1e9 if hop_s else 0.0,
        "copy_GBps": nbytes / same_s / 1e9 if same_s else 0.0,
        "hop_vs_copy": same_s / hop_s if hop_s else 0.0,
    }

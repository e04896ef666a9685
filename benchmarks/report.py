"""Shared output of the benchmark scripts: print a text table and write it with its JSON.

Every report records the code that made it (`code`: version, git commit, dirty flag, semantics) and
is written atomically, so a benchmark killed mid-write leaves the previous report whole.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from dualpath_jax.atomic import atomic_write
from dualpath_jax.results import code_info


def cpu_model() -> str:
    """The CPU's model name (Linux), which a wall time needs beside it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_json(path: str | Path, report: dict, **dump) -> Path:
    """`report` plus its `code` record, as JSON at `path` (atomically). A long benchmark passes the
    record it took at its start (`report["code"]`): the checkout may move while it runs."""
    report = {**report, "code": report.get("code") or code_info()}
    return atomic_write(path, json.dumps(report, **{"indent": 1, **dump}) + "\n")


def write_report(out_dir: str | Path, stem: str, report: dict, lines: list[str], **dump) -> None:
    text = "\n".join(lines)
    print(text)
    out = Path(out_dir)
    write_json(out / f"{stem}.json", report, **dump)
    atomic_write(out / f"{stem}.txt", text + "\n")

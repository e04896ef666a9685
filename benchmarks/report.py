"""Shared output of the benchmark scripts: print a text table and write it with its JSON."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_report(out_dir: str | Path, stem: str, report: dict, lines: list[str]) -> None:
    text = "\n".join(lines)
    print(text)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"{stem}.txt").write_text(text + "\n")

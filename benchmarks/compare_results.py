"""Compare the results files of a rerun with the committed ones: which cells hold the same numbers.

    python benchmarks/compare_results.py /tmp/rerun/results            # against results/
    python benchmarks/compare_results.py /tmp/rerun/results --out results/bench/lifecycle_ab/online

For every `<kind>/<model>_<cluster>/<cell>.json` under the rerun folder that results/ also holds,
compares every field but the `code` record (which names the checkout that ran it) and the `.txt`
beside it byte for byte; prints one line per cell and, with --out, writes `compare.{json,txt}`.
Exit status 1 if any cell differs, 2 if a folder is missing or the two share no cell.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.report, run as a script

from benchmarks.report import write_report  # noqa: E402
from dualpath_jax.paths import ROOT  # noqa: E402


def differences(a, b, path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (floats compared exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} vs {b!r}"]


def compare(rerun: Path, committed: Path) -> list[dict]:
    rows = []
    for new in sorted(rerun.glob("*/*/*.json")):
        rel = new.relative_to(rerun)
        old = committed / rel
        if not old.is_file():
            continue
        a, b = json.loads(new.read_text()), json.loads(old.read_text())
        a.pop("code", None), b.pop("code", None)
        diff = differences(a, b)
        txt_new, txt_old = new.with_suffix(".txt"), old.with_suffix(".txt")
        txt = txt_new.is_file() and txt_old.is_file() and txt_new.read_bytes() == txt_old.read_bytes()
        rows.append({"cell": str(rel), "differences": len(diff), "first": diff[:3], "txt_identical": txt})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("rerun", type=Path, help="a results folder of a rerun (holding offline/, online/)")
    ap.add_argument("--committed", type=Path, default=ROOT / "results")
    ap.add_argument("--out", type=Path, default=None, help="write compare.{json,txt} here")
    args = ap.parse_args()
    for folder in (args.rerun, args.committed):
        if not folder.is_dir():
            ap.exit(2, f"error: {folder}: no such results folder\n")
    rows = compare(args.rerun, args.committed)
    if not rows:
        ap.exit(2, f"error: {args.rerun}: no <kind>/<model>_<cluster>/<cell>.json that {args.committed} also holds\n")
    lines = [
        f"{'same' if r['differences'] == 0 else 'DIFFERS'}  {r['cell']}  "
        f"({r['differences']} fields differ; .txt {'identical' if r['txt_identical'] else 'differs or missing'})"
        for r in rows
    ]
    same = sum(r["differences"] == 0 for r in rows)
    lines.append(f"{same} of {len(rows)} cells hold the same numbers as {args.committed}")
    if args.out is not None:
        write_report(args.out, "compare", {"rerun": str(args.rerun), "cells": rows}, lines)
    else:
        print("\n".join(lines))
    sys.exit(0 if same == len(rows) else 1)


if __name__ == "__main__":
    main()

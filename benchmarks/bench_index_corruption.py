"""Probe: what survives a damaged KV-store index (docs/kvstore.md, "Index recovery").

    PYTHONPATH=. python benchmarks/bench_index_corruption.py [--out results/bench/] [--before DIR]

Builds a small store (3 sequences of 5 blocks: sequence 0 in the snapshot, sequences 1-2 written one
block per log record, so 5 snapshot entries + 10 put records), then for each case copies it, damages
one index file, reopens it as the writer and counts the blocks that survive (indexed and reading
back byte-exact) and those still reachable by a prefix lookup. Cases: one byte flipped in the first,
a middle and the last log record; one bit flipped in the snapshot at each of 60 seeded offsets.
Each open is "raised" (the store did not open), "reported" (it opened and warned) or "silent" (it
opened, lost blocks and said nothing). The probe runs in a subprocess per code version: "after" is
this checkout, "before" (with --before DIR) the code unpacked in DIR, e.g. by
`git archive HEAD dualpath_jax | tar -x -C DIR`. Writes <out>/kvstore_index_corruption.{json,txt}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEQS, BLOCKS, FLIPS, SEED = 3, 5, 60, 20240


# ------------------------------------------------------------------- worker (runs on either code)
def build(root: Path):
    from dualpath_jax.kvstore import BlockLayout, KVStore

    layout = BlockLayout(layers=4, bytes_per_token=64, tokens_per_block=8)
    rng = np.random.default_rng(0)
    seqs = [np.arange(BLOCKS * 8, dtype=np.int64) + 1000 * s for s in range(SEQS)]
    data = [rng.integers(0, 256, (BLOCKS,) + layout.full_block_shape, dtype=np.uint8) for _ in seqs]
    with KVStore.open(root, layout, capacity_blocks=32, create=True) as st:
        st.write(seqs[0], data[0]).result()
        st.compact()
        for s in range(1, SEQS):
            for b in range(BLOCKS):
                st.write(seqs[s], data[s][b : b + 1], first_block=b).result()
        expected = {k: data[s][b] for s in range(SEQS) for b, k in enumerate(st.block_keys(seqs[s]))}
    return seqs, expected


def reopen(root: Path, seqs, expected) -> dict:
    """Open the damaged copy as the writer and count what it still serves correctly."""
    from dualpath_jax.kvstore import KVStore

    out = {
        "opened": False,
        "error": None,
        "warned": False,
        "survived": 0,
        "reachable": 0,
        "wrong_bytes": 0,
        "unknown_keys": 0,
        "read_errors": 0,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            st = KVStore.open(root)
        except Exception as e:  # noqa: BLE001 - the old code raises on a damaged snapshot
            out["error"] = f"{type(e).__module__}.{type(e).__name__}: {str(e)[:120]}"
            return out
    out["opened"], out["warned"] = True, bool(caught)
    with st:
        for k in st.keys():
            if k not in expected:  # a flipped key: bytes served under a name never written
                out["unknown_keys"] += 1
                continue
            try:
                ok = np.array_equal(st.read_blocks([k]).result()[0], expected[k])
            except Exception:  # noqa: BLE001 - a checksum failure on read: refused, not served
                out["read_errors"] += 1
                continue
            out["survived"] += ok
            out["wrong_bytes"] += not ok
        out["reachable"] = sum(st.lookup(s).num_blocks for s in seqs)
    return out


def flip(path: Path, offset: int, mask: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def probe() -> dict:
    import dualpath_jax

    tmp = Path(tempfile.mkdtemp(prefix="kv-corrupt-"))
    try:
        base = tmp / "base"
        seqs, expected = build(base)
        log = next(base.glob("index.*.log"))
        starts = [i + 1 for i, c in enumerate(log.read_bytes()) if c == 0x0A][:-1]
        records = [0] + starts
        cases = [
            ("log: first record", log.name, records[0] + 30, 0x01),
            ("log: middle record", log.name, records[len(records) // 2] + 30, 0x01),
            ("log: last record", log.name, records[-1] + 30, 0x01),
        ]
        snap = base / "index.json"
        rng = random.Random(SEED)
        cases += [
            ("snapshot: 1 bit flipped", snap.name, off, 1 << rng.randrange(8))
            for off in sorted(rng.sample(range(snap.stat().st_size), FLIPS))
        ]
        runs = []
        for n, (case, name, off, mask) in enumerate(cases):
            copy = tmp / f"c{n}"
            shutil.copytree(base, copy)
            flip(copy / name, off, mask)
            runs.append(dict(case=case, file=name, offset=off, mask=mask, **reopen(copy, seqs, expected)))
            shutil.rmtree(copy)
        return {
            "code": str(Path(dualpath_jax.__file__).parent),
            "blocks": len(expected),
            "log_records": len(records),
            "snapshot_bytes": snap.stat().st_size,
            "runs": runs,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------- driver
def run_label(code_dir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_dir), JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, __file__, "--worker"], env=env, capture_output=True, text=True, check=True)
    return json.loads(p.stdout.splitlines()[-1])


def summarize(res: dict) -> list[dict]:
    rows = []
    for case in dict.fromkeys(r["case"] for r in res["runs"]):
        runs = [r for r in res["runs"] if r["case"] == case]
        survived = [r["survived"] for r in runs]  # an open that raised serves nothing: 0
        errors: dict[str, int] = {}
        for r in runs:
            if r["error"]:
                t = r["error"].split(":")[0]
                errors[t] = errors.get(t, 0) + 1
        rows.append(
            {
                "case": case,
                "opens": len(runs),
                "opened": sum(r["opened"] for r in runs),
                "raised": len(runs) - sum(r["opened"] for r in runs),
                "raised_by": errors,
                "reported": sum(r["opened"] and r["warned"] for r in runs),
                "silent_loss": sum(r["opened"] and not r["warned"] and r["survived"] < res["blocks"] for r in runs),
                "survived_min": min(survived),
                "survived_mean": round(float(np.mean(survived)), 2),
                "survived_max": max(survived),
                "reachable_mean": round(float(np.mean([r["reachable"] for r in runs])), 2),
                "wrong_bytes": sum(r["wrong_bytes"] for r in runs),
                "unknown_keys": sum(r["unknown_keys"] for r in runs),
                "read_errors": sum(r["read_errors"] for r in runs),
            }
        )
    return rows


def table(results: dict) -> str:
    head = (
        f"{'case':<24} {'code':<7} {'opens':>5} {'raised':>6} {'reported':>8} {'silent':>6} "
        f"{'survived min/mean/max':>22} {'reachable':>9} {'wrong':>5} {'unknown':>7} {'readerr':>7}"
    )
    lines = [head, "-" * len(head)]
    for label, res in results.items():
        for r in summarize(res):
            lines.append(
                f"{r['case']:<24} {label:<7} {r['opens']:>5} {r['raised']:>6} {r['reported']:>8} "
                f"{r['silent_loss']:>6} {r['survived_min']:>8}/{r['survived_mean']:>6}/"
                f"{r['survived_max']:<6} {r['reachable_mean']:>9} {r['wrong_bytes']:>5} "
                f"{r['unknown_keys']:>7} {r['read_errors']:>7}"
            )
            if r["raised_by"]:
                raised = ", ".join(f"{k} x{v}" for k, v in r["raised_by"].items())
                lines.append(f"{'':<32}raised: {raised}")
    blocks = next(iter(results.values()))["blocks"]
    lines += [
        "",
        f"{blocks} blocks written. survived: indexed and byte-exact (an open that raised "
        "counts 0); reachable: found by prefix lookup (mean);",
        "silent: opened without a warning but lost blocks; wrong: blocks served with wrong bytes;",
        "unknown: blocks indexed under keys never written (a flipped key); readerr: indexed blocks "
        "whose read raised (checksum mismatch).",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    ap.add_argument("--before", type=Path, help="code before the change (a dir holding dualpath_jax/)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(probe()))
        return
    sys.path.insert(0, str(REPO))  # the report's writer; the workers import the code they probe
    from benchmarks.report import write_report

    results = {}
    if args.before is not None:
        results["before"] = run_label(args.before)
    results["after"] = run_label(REPO)
    summary = {
        label: {**{k: v for k, v in res.items() if k != "runs"}, "cases": summarize(res)}
        for label, res in results.items()
    }
    write_report(
        args.out,
        "kvstore_index_corruption",
        {"seed": SEED, "summary": summary, "results": results},
        table(results).splitlines(),
    )


if __name__ == "__main__":
    main()

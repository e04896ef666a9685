"""List the stored results cells, with the fields in which they differ.

    python -m experiments.results list                          # every cell under results/
    python -m experiments.results list model=ds660b agents=1024 # cells matching every filter
    python -m experiments.results list kind=online --stale      # only cells that would be rerun

    python -m experiments.results compare 875a9a65 f2669ca7   # two cells by id (or by file path)
    python -m experiments.results compare A B --metric jct_s --metric ttft_s

`compare` prints the config fields in which two stored cells differ, then per system present in
both each metric (numeric leaves of its summary: `ttft_s.p99`, ...) of A, of B, and B/A.

A filter is `field=value` on a cell's identity: `kind`, `id`, `status`, or a config field by its
dotted name (`workload.seed`, `system.dualpath.batching`) or by a unique last part (`agents`,
`seed` if only one field is so named), plus the shortcuts model, cluster, len and systems.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dualpath_jax.paths import ROOT
from dualpath_jax.results import summary_numbers
from dualpath_jax.results.store import identity_of, results_files, staleness

SHORTCUTS = {
    "model": "model.name",
    "cluster": "cluster.name",
    "len": "workload.mal_label",
    "systems": "system_set",
    "agents": "workload.agents",
    "aps": "online.aps",
}
SHOWN = ("kind", "status", "model.name", "cluster.name", "system_set")


def flatten(obj, prefix: str = "") -> dict[str, object]:
    """Dotted keys; the systems list is keyed by system name (system.<name>.<field>)."""
    out: dict[str, object] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "systems" and isinstance(v, list) and not prefix:
                for s in v:
                    out.update(flatten(s, f"system.{s.get('name', '?')}."))
            else:
                out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix.rstrip('.')}[{i}]."))
    else:
        out[prefix.rstrip(".")] = obj
    return out


def cell_rows(root: Path) -> list[dict]:
    rows = []
    for path in results_files(root):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            rows.append({"file": path, "kind": "?", "status": f"unreadable ({e})"})
            continue
        identity = identity_of(data) or {"kind": "?", "config": data.get("config", {})}
        why = staleness(data)
        row = {
            "file": path,
            "kind": identity["kind"],
            "id": data.get("cell", {}).get("id", "-"),
            "status": "stale" if why else "fresh",
            "why": why,
        }
        row.update(flatten(identity.get("config", {})))
        rows.append(row)
    return rows


def resolve_key(key: str, keys: set[str]) -> str:
    key = SHORTCUTS.get(key, key)
    if key in keys:
        return key
    ends = sorted(k for k in keys if k.endswith(f".{key}"))
    if len(ends) == 1:
        return ends[0]
    if ends:
        raise ValueError(f"filter {key!r} is ambiguous: {', '.join(ends[:6])}")
    raise ValueError(f"filter {key!r} names no field of the stored cells")


def matches(value, wanted: str) -> bool:
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    if isinstance(value, (int, float)):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value) == wanted


def select(rows: list[dict], filters: list[str]) -> list[dict]:
    keys = {k for r in rows for k in r}
    for f in filters:
        if "=" not in f:
            raise ValueError(f"filter {f!r}: expected field=value, e.g. model=ds660b")
        key, wanted = f.split("=", 1)
        if not rows:
            break
        key = resolve_key(key, keys)
        rows = [r for r in rows if key in r and matches(r[key], wanted)]
    return rows


def _differ(rows: list[dict], key: str) -> bool:
    return len({json.dumps(r.get(key), sort_keys=True) for r in rows}) > 1


def varying(rows: list[dict]) -> list[str]:
    """Config fields whose value is not the same in every listed cell. A field of a named section
    (model, cluster, hardware.gpu) counts only if it differs between cells of the same name, and a
    system's fields only among cells that all have that system (the name columns tell the rest)."""
    keys = sorted({k for r in rows for k in r} - {"file", "id", "why", *SHOWN})
    named = sorted(
        {k[:-5] for k in {*keys, *SHOWN} if k.endswith(".name") and not k.startswith("system.")}, key=len, reverse=True
    )
    out = []
    for k in keys:
        section = next((p for p in named if k.startswith(p + ".")), None)
        if section is not None:
            groups: dict[str, list[dict]] = {}
            for r in rows:
                groups.setdefault(str(r.get(f"{section}.name")), []).append(r)
            if any(_differ(g, k) for g in groups.values()):
                out.append(k)
        elif _differ(rows, k) and (all(k in r for r in rows) or not k.startswith("system.")):
            out.append(k)
    return out


def show(rows: list[dict], root: Path, console: Console, max_fields: int = 8) -> None:
    fields = varying(rows)
    table = Table(title=f"{len(rows)} stored cell(s) under {root}")
    for col in ("file", *SHOWN, *fields[:max_fields]):
        table.add_column(col, overflow="fold", no_wrap=col == "file")
    for r in rows:
        table.add_row(r["file"].name, *(str(r.get(k, "-")) for k in (*SHOWN, *fields[:max_fields])))
    console.print(table)
    if len(fields) > max_fields:
        console.print(f"(and {len(fields) - max_fields} more varying fields: {', '.join(fields[max_fields:])})")
    for r in rows:
        if r["status"] != "fresh":
            console.print(f"stale: {r['file']}: {r.get('why') or r['status']}", soft_wrap=True)


def find_cell(ref: str, root: Path) -> Path:
    """A results file by path, or by its cell id (the hash that ends its name) under `root`."""
    path = Path(ref)
    if path.suffix == ".json":
        if not path.is_file():
            raise ValueError(f"{ref}: no such results file")
        return path
    found = [f for f in results_files(root) if f.stem.endswith(f"-{ref}")]
    if len(found) != 1:
        what = "no stored cell" if not found else f"{len(found)} stored cells"
        raise ValueError(f"{ref}: {what} under {root} with that id (give a cell id or a .json path)")
    return found[0]


def read_cell(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not readable as a results file ({e})") from None
    if identity_of(data) is None or not isinstance(data.get("systems"), dict):
        raise ValueError(f"{path}: not a results file (no cell identity or systems)")
    return data


def compare(a: Path, b: Path, console: Console, metrics: list[str] = ()) -> Table:
    da, db = read_cell(a), read_cell(b)
    ka, kb = identity_of(da)["kind"], identity_of(db)["kind"]
    if ka != kb:
        raise ValueError(f"{a.name} is an {ka} cell and {b.name} an {kb} cell: compare cells of one kind")
    ca, cb = flatten(da["config"]), flatten(db["config"])
    differ = [k for k in sorted(set(ca) | set(cb)) if ca.get(k, "-") != cb.get(k, "-")]
    console.print(f"A: {_shown(a)}\nB: {_shown(b)}", soft_wrap=True)
    for k in differ:
        console.print(f"  {k}: {ca.get(k, '-')} -> {cb.get(k, '-')}", soft_wrap=True)
    if not differ:
        console.print("  (the same config)")
    systems = [s for s in da["systems"] if s in db["systems"]]
    if not systems:
        raise ValueError(f"{a.name} and {b.name} share no system")
    table = Table("metric", title=f"{ka} cells A and B (ratio B/A)")
    for s in systems:
        table.add_column(f"{s} A", justify="right")
        table.add_column(f"{s} B", justify="right")
        table.add_column("B/A", justify="right")
    na = {s: summary_numbers(da["systems"][s]) for s in systems}
    nb = {s: summary_numbers(db["systems"][s]) for s in systems}
    keys = [k for k in dict.fromkeys(k for s in systems for k in na[s]) if any(k in nb[s] for s in systems)]
    keys = [k for k in keys if not metrics or any(k == m or k.startswith(m + ".") for m in metrics)]
    if not keys:
        raise ValueError(f"no metric matches {', '.join(metrics)}" if metrics else "the cells share no metric")
    for k in keys:
        row = [k]
        for s in systems:
            x, y = na[s].get(k), nb[s].get(k)
            ratio = f"{y / x:.3f}" if x not in (None, 0) and y is not None else "-"
            row += [_num(x), _num(y), ratio]
        table.add_row(*row)
    console.print(table)
    return table


def _shown(path: Path) -> Path:
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:,}" if isinstance(v, int) else f"{v:,.4g}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.results",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list stored cells")
    ls.add_argument("filters", nargs="*", metavar="field=value")
    ls.add_argument("--results-dir", default=str(ROOT / "results"))
    ls.add_argument("--stale", action="store_true", help="only cells that are stale")
    cmp = sub.add_parser("compare", help="two stored cells side by side, with ratios")
    cmp.add_argument("a", help="a results file or a cell id")
    cmp.add_argument("b", help="a results file or a cell id")
    cmp.add_argument("--metric", action="append", default=[], help="only this metric (or its sub-keys)")
    cmp.add_argument("--results-dir", default=str(ROOT / "results"))
    args = p.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    root = Path(args.results_dir)
    if args.command == "compare":
        try:
            compare(find_cell(args.a, root), find_cell(args.b, root), console, args.metric)
        except ValueError as e:
            console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            return 2
        return 0
    rows = cell_rows(root)
    try:
        rows = select(rows, args.filters)
    except ValueError as e:
        console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        return 2
    if args.stale:
        rows = [r for r in rows if r["status"] != "fresh"]
    show(rows, root, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())

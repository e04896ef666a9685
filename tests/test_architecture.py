"""The package's modules import each other without cycles, counting imports inside functions
(a function-level import hides a cycle from Python, not from a reader)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dualpath_jax"


def module_names() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports anywhere in its body."""
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]) if node.level else node.module
            base = base.rstrip(".")
            subs = {f"{base}.{a.name}" for a in node.names} & known.keys()
            found |= subs if len(subs) == len(node.names) else subs | {base}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return (found & known.keys()) - {name}


def import_graph() -> dict[str, set[str]]:
    known = module_names()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_the_import_graph_is_resolved():
    graph = import_graph()
    # a resolver that found nothing would pass the cycle test trivially
    assert "dualpath_jax.results.result" in graph["dualpath_jax.serving.run"]
    assert "dualpath_jax.scheduling.dispatch" in graph["dualpath_jax.sim.simulator"]


def test_no_import_cycles():
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None

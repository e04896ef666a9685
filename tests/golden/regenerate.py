"""Rewrite the golden results files: `python -m tests.golden.regenerate` (after a SIM_SEMANTICS bump)."""

from dualpath_jax.atomic import atomic_write

from . import CELLS, path_of, render

if __name__ == "__main__":
    for name, spec in CELLS.items():
        path = path_of(name)
        old = path.read_text() if path.is_file() else None
        new = render(spec)
        atomic_write(path, new)
        print(f"{'same' if old == new else 'changed' if old else 'new'}: {path}")

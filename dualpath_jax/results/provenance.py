"""Which code made a results file: package version, git commit, and the two versions that say
whether a stored file can still be trusted.

`SIM_SEMANTICS` names what the simulator computes. Bump it in the same commit as any change that
moves a number of any results file (a cost-model term, a policy, a metric's definition, a workload
generator): stored cells of another semantics version are stale, and the figures command reruns
them. `tests/golden/` holds results files of tiny configs compared byte for byte, so a change that
moves numbers without a bump fails the tests (`python -m tests.golden.regenerate` rewrites them).
`RESULTS_SCHEMA` names the file layout (docs/results.md); bump it when the layout changes.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata

from ..paths import ROOT

RESULTS_SCHEMA = 2  # 1: files without "cell"/"code" (before cell identities)
SIM_SEMANTICS = 1  # bump whenever a change moves numbers (see the module docstring)

# What makes numbers: a checkout with changes here is "dirty"; results/ and docs/ are not code.
CODE_PATHS = ("dualpath_jax", "experiments", "benchmarks", "configs", "pyproject.toml")


def package_version() -> str:
    try:
        return metadata.version("dualpath-jax")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the package runs from; (None, None) outside a checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()

    try:
        if not (ROOT / ".git").exists():
            return None, None
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", *CODE_PATHS))
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return None, None


def code_info(git: bool = True) -> dict:
    """The "code" record of a results file. git=False leaves the checkout out (golden files)."""
    commit, dirty = git_state() if git else (None, None)
    return {
        "package": "dualpath-jax",
        "version": package_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        "results_schema": RESULTS_SCHEMA,
        "sim_semantics": SIM_SEMANTICS,
    }

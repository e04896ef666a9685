"""Where the project's files are: the repository root and its configs/<group>/<name>.yaml."""

from __future__ import annotations

import re
from pathlib import Path

from .config import ConfigError, _show

ROOT = Path(__file__).resolve().parents[1]


def repo_path(path: str | Path) -> Path:
    """A path as the configs give it: absolute, or relative to the repository root."""
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


def load_named(group: str, name: str) -> dict:
    """configs/<group>/<name>.yaml as a plain dict; an unknown name lists the known ones."""
    import yaml  # PyYAML comes with hydra-core

    folder = ROOT / "configs" / group
    path = folder / f"{name}.yaml" if isinstance(name, str) else None
    if path is None or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name) or not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"{group}={_show(name)} is unknown; known: {', '.join(known)}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{group}={name!r}: configs/{group}/{name}.yaml is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{group}={name!r}: configs/{group}/{name}.yaml holds no mapping")
    return data

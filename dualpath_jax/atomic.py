"""Atomic file writes: a reader sees the old file or the new one, never a mix.

Every output the project writes (results JSON, tables, CSVs, PNGs, traces) goes through
`atomic_write`: the bytes go to a temp file beside the target, named `.<name>.<pid>.tmp`, which is
fsynced and renamed over the target. The file gets the normal mode of a new file (0666 minus the
umask, 0644 usually), not mkstemp's 0600. A process killed mid-write (kill -9) leaves its temp file
behind; the next write into that folder removes temp files whose writer is no longer alive.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Callable, Iterator

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_temps(folder: Path) -> list[Path]:
    """Remove temp files of writers that died mid-write; returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temp path to write `path`'s new contents to (by name: e.g. matplotlib's savefig);
    on success it is fsynced and renamed over `path`, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(path.parent)
    tmp = temp_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[object], None]) -> Path:
    """Write `data` (bytes, text, or a function that writes to a binary file) to `path` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # O_EXCL: a stale temp of this very pid (a reused pid) is replaced, never appended to.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
    return path


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Create `folder` if needed and prove a file can be written there; OSError -> PermissionError
    naming `what` (e.g. "results_dir=/ro"), raised before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / ".write-check", b"")
        (folder / ".write-check").unlink()
    except OSError as e:
        raise PermissionError(f"{what}: cannot write to {folder} ({e.strerror or e})") from None
    return folder

"""Atomic file writes: a reader sees the old file or the new one, never a mix.

Every output the project writes (results JSON, tables, CSVs, PNGs, traces) goes through
`atomic_write`. On Linux the bytes go to an unnamed file in the target's folder (O_TMPFILE), which
is fsynced, given a name and renamed over the target: a process killed while writing leaves
nothing behind. Where O_TMPFILE is not supported (another OS, some filesystems) the temp file is
named `.<name>.<pid>.tmp`; a writer killed then leaves it, and the next write into that folder
removes temp files whose writer is no longer alive. Files get the normal mode of a new file
(0666 minus the umask: 0644 usually), not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


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
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            m = _TEMP.match(entry.name)
            if m and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _open_unnamed(folder: Path) -> int | None:
    if not _O_TMPFILE:
        return None
    try:
        return os.open(folder, _O_TMPFILE | os.O_WRONLY, 0o666)  # the kernel applies the umask
    except OSError:  # the filesystem does not support it
        return None


def _name_unnamed(fd: int, tmp: Path) -> None:
    """Link an O_TMPFILE file into its folder as `tmp` (linkat following /proc/self/fd)."""
    folder = os.open(tmp.parent, os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{fd}", tmp.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write `data` (bytes, text, or a function that writes to a binary file) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = _open_unnamed(path.parent)
    unnamed = fd is not None
    if not unnamed:
        with contextlib.suppress(FileNotFoundError):  # a stale temp of a reused pid
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
            if unnamed:  # give the finished file a name; only now can a kill leave a temp
                _name_unnamed(f.fileno(), tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Create `folder` if needed and prove a file can be written there; otherwise PermissionError
    naming `what` (e.g. "results_dir") and the folder, raised before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # An unnamed file (O_TMPFILE on Linux): processes checking one folder at once cannot
        # remove each other's probe, and a kill leaves nothing behind.
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise PermissionError(f"{what}: cannot write to {folder} ({e.strerror or e})") from None
    return folder

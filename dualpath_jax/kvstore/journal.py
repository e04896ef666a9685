"""Persistence of the prefix index: an atomically replaced snapshot plus an append-only commit log.

Files in the store directory:
  index.json        snapshot {"format", "version", "generation": g, "checksum", "entries": [...]},
                    entries in LRU order (least recent first), each [key, parent, slot, checksums].
                    Replaced only by write-temp + fsync + os.replace + fsync(dir): never torn.
  index.<g>.log     records appended since snapshot g, one per line: "<crc32 of json, 8 hex> <json>\n"
                    {"op": "put", "k", "p", "s", "c"} or {"op": "del", "k"}. Each batch is one
                    write() followed by fsync before the store acts on it.
Replay stops at the first line whose checksum or JSON is bad: only the tail can be torn (a crash
during an append), and a torn tail record was never acknowledged. A writer truncates that tail.
"""
from __future__ import annotations

import json
import os
import warnings
import zlib
from pathlib import Path
from typing import Iterable

SNAPSHOT = "index.json"
FORMAT = "dualpath-kvstore-index"
VERSION = 1


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: dict, fsync: bool = True) -> None:
    """Write JSON to path so a reader sees the old file or the new one, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(obj, separators=(",", ":")).encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def encode_record(rec: dict) -> bytes:
    body = json.dumps(rec, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def decode_line(line: bytes) -> dict | None:
    """The record of one complete line, or None if torn or corrupt."""
    if len(line) < 10 or not line.endswith(b"\n") or line[8:9] != b" ":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        rec = json.loads(body)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and rec.get("op") in ("put", "del") else None


class Journal:
    """Snapshot + log of one store directory. The caller serialises calls (store lock)."""

    def __init__(self, root: Path, checksum: str, writable: bool, fsync: bool = True) -> None:
        self.root, self.checksum, self.writable, self.fsync = Path(root), checksum, writable, fsync
        self.generation = 0
        self.records_since_snapshot = 0
        self._fd: int | None = None

    def _log_path(self, gen: int) -> Path:
        return self.root / f"index.{gen}.log"

    # --- load -----------------------------------------------------------------------------------
    def load(self) -> list[tuple]:
        """Entries [(key, parent, slot, packed_checksums)] in LRU order, from snapshot + log."""
        snap = self.root / SNAPSHOT
        entries: dict[str, tuple] = {}
        if snap.exists():
            try:
                obj = json.loads(snap.read_bytes())
                if obj.get("format") != FORMAT:
                    raise ValueError(f"format is {obj.get('format')!r}")
                self.generation = int(obj["generation"])
                for k, p, s, c in obj["entries"]:
                    entries[k] = (k, p, int(s), c)
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"index snapshot {snap} is unreadable: {e}") from e
        log = self._log_path(self.generation)
        valid = 0
        n = 0
        if log.exists():
            data = log.read_bytes()
            pos = 0
            while pos < len(data):
                end = data.find(b"\n", pos)
                line = data[pos:] if end < 0 else data[pos:end + 1]
                rec = decode_line(line)
                if rec is None:
                    break
                if rec["op"] == "put":
                    entries.pop(rec["k"], None)
                    entries[rec["k"]] = (rec["k"], rec["p"], int(rec["s"]), rec["c"])
                else:
                    entries.pop(rec["k"], None)
                pos += len(line)
                n += 1
            valid = pos
            if valid < len(data):
                warnings.warn(f"index log {log}: ignored a torn or corrupt tail of "
                              f"{len(data) - valid} bytes after {n} records", RuntimeWarning, stacklevel=2)
                if self.writable:
                    os.truncate(log, valid)
        self.records_since_snapshot = n
        if self.writable:
            self._cleanup()
        return list(entries.values())

    def _cleanup(self) -> None:
        for p in self.root.glob("index.*.log"):
            try:
                gen = int(p.name.split(".")[1])
            except ValueError:
                continue
            if gen != self.generation:
                p.unlink(missing_ok=True)
        (self.root / (SNAPSHOT + ".tmp")).unlink(missing_ok=True)

    # --- append ---------------------------------------------------------------------------------
    def _open_log(self) -> int:
        if self._fd is None:
            path = self._log_path(self.generation)
            existed = path.exists()
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if not existed and self.fsync:
                fsync_dir(self.root)
        return self._fd

    def append(self, records: Iterable[dict]) -> None:
        """Append records durably: returns only after they are on disk (if fsync)."""
        data = b"".join(encode_record(r) for r in records)
        if not data:
            return
        fd = self._open_log()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if self.fsync:
            os.fsync(fd)
        self.records_since_snapshot += data.count(b"\n")

    # --- compaction -----------------------------------------------------------------------------
    def snapshot(self, entries: list[tuple]) -> None:
        """Write snapshot g+1 holding `entries`, then start an empty log g+1 and drop log g."""
        old = self.generation
        atomic_write_json(self.root / SNAPSHOT, {
            "format": FORMAT, "version": VERSION, "generation": old + 1,
            "checksum": self.checksum, "entries": [list(e) for e in entries]}, fsync=self.fsync)
        self.close()
        self.generation = old + 1
        self.records_since_snapshot = 0
        self._log_path(old).unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

"""Persistence of the prefix index: a checksummed snapshot plus an append-only commit log.

Every line of both files is "<crc32 of the json, 8 hex> <json>\n", so damage loses only the lines
it hits. Files in the store directory:
  index.json     snapshot of generation g (format version 2; version 1, one JSON document without
                 checksums, is still read). Replaced only by write-temp + fsync + os.replace +
                 fsync(dir): never torn.
                   header   {"format", "version": 2, "generation": g, "checksum", "entries": n}
                   n lines  [key, parent, slot, packed checksums], LRU order (least recent first)
                   trailer  {"end": n, "generation": g, "crc": crc32 of every byte before it}
  index.<g>.log  records appended since snapshot g: {"op": "put", "k", "p", "s", "c"},
                 {"op": "del", "k"}, or {"op": "torn", "o"}: the bytes from offset o up to this
                 record are the torn tail of an append cut off by a crash (never acknowledged).
                 Each batch is one write() followed by fsync before the store acts on it.
Recovery (docs/kvstore.md, "Index recovery"): a bad line is reported with its file and byte offset
and loading goes on past it; nothing is ever truncated. What a lost record might have said is made
safe by two rules: a later claim of a slot wins, and every entry older than a lost record is
unproven (a lost "del" may have freed its slot), which the store verifies against the shard bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

SNAPSHOT = "index.json"
FORMAT = "dualpath-kvstore-index"
VERSION = 2


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write path so a reader sees the old file or the new one, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: dict, fsync: bool = True) -> None:
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode(), fsync)


# --- lines -----------------------------------------------------------------------------------------
def encode_line(value: Any) -> bytes:
    body = json.dumps(value, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of every line; the last one may lack its newline."""
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        yield pos, data[pos:end]
        pos = end


def decode_line(line: bytes) -> Any:
    """The JSON value of one line if its checksum holds, else None. A last line that lost only its
    newline still decodes: a record whose checksum holds is true (the write order makes it so)."""
    body = line[9:-1] if line.endswith(b"\n") else line[9:]
    if len(line) < 10 or line[8:9] != b" " or line[:8] != b"%08x" % zlib.crc32(body):
        return None
    try:
        return json.loads(body)
    except ValueError:  # checksum collision on garbage; UnicodeDecodeError is a ValueError
        return None


def _is_entry(v: Any) -> bool:
    """[key, parent, slot, packed checksums]"""
    return (
        isinstance(v, list)
        and len(v) == 4
        and type(v[2]) is int
        and all(isinstance(x, str) for x in (v[0], v[1], v[3]))
    )


def _record(v: Any) -> dict | None:
    """v if it is a well-formed log record, else None."""
    if not isinstance(v, dict):
        return None
    op = v.get("op")
    ok = (
        op == "put"
        and _is_entry([v.get("k"), v.get("p"), v.get("s"), v.get("c")])
        or op == "del"
        and isinstance(v.get("k"), str)
        or op == "torn"
        and type(v.get("o")) is int
    )
    return v if ok else None


def _runs(spans: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Adjacent (start, end) byte spans merged: [(start, end, lines)]."""
    out: list[tuple[int, int, int]] = []
    for a, b in spans:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b, out[-1][2] + 1)
        else:
            out.append((a, b, 1))
    return out


# --- replay ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Claim:
    """One index entry as loaded. seq: -1 from the snapshot, else the number of log records before
    its put. proven=False: a lost record could have deleted it (the store verifies its bytes)."""

    key: str
    parent: str
    slot: int
    packed: str
    seq: int
    proven: bool = True


class _Replay:
    """Entries rebuilt record by record, in LRU order, at most one per slot."""

    def __init__(self, report) -> None:
        self.entries: dict[str, Claim] = {}
        self.by_slot: dict[int, str] = {}
        self._report = report

    def put(self, c: Claim, where: str) -> None:
        self.delete(c.key)
        other = self.by_slot.get(c.slot)
        if other is not None:
            # A slot is reused only after the "del" of its block is durable: that del was lost,
            # and this later claim is the one whose bytes went into the slot.
            self.delete(other)
            self._report(
                f"{where}: block {c.key} claims slot {c.slot} of block {other}, whose "
                f"'del' record must be lost; the later claim wins, {other} is dropped"
            )
        self.entries[c.key] = c
        self.by_slot[c.slot] = c.key

    def delete(self, key: str) -> None:
        c = self.entries.pop(key, None)
        if c is not None and self.by_slot.get(c.slot) == key:
            del self.by_slot[c.slot]


class Journal:
    """Snapshot + log of one store directory. The caller serialises calls (store lock).

    After load(): problems (one line each, naming the file and byte offset), damaged_files (kept
    aside by set_aside() before a compaction replaces them), needs_compaction (a writer should
    rewrite the index now, so later opens start clean)."""

    def __init__(self, root: Path, checksum: str, writable: bool, fsync: bool = True) -> None:
        self.root, self.checksum, self.writable, self.fsync = Path(root), checksum, writable, fsync
        self.generation = 0
        self.records_since_snapshot = 0
        self.problems: list[str] = []
        self.damaged_files: list[Path] = []
        self.needs_compaction = False
        self._bad_before = -1  # entries with seq < this are unproven
        self._tail_fix = b""  # written before the next append (after a torn tail)
        self._fd: int | None = None

    def _log_path(self, gen: int) -> Path:
        return self.root / f"index.{gen}.log"

    def _log_generations(self) -> list[int]:
        gens = []
        for p in self.root.glob("index.*.log"):
            try:
                gens.append(int(p.name.split(".")[1]))
            except ValueError:
                continue
        return gens

    def _damage(self, msg: str, path: Path | None = None) -> None:
        self.problems.append(msg)
        self.needs_compaction = True
        if path is not None and path not in self.damaged_files:
            self.damaged_files.append(path)

    # --- load -----------------------------------------------------------------------------------
    def load(self) -> list[Claim]:
        """Entries in LRU order, from snapshot + log. Never raises on damaged content."""
        replay = _Replay(self._damage)
        self._load_snapshot(replay)
        self._replay_log(replay)
        claims = list(replay.entries.values())
        for c in claims:
            c.proven = c.seq >= self._bad_before
        if self.writable:
            self._cleanup()
        return claims

    def _infer_generation(self, why: str, path: Path) -> None:
        """Generation of a snapshot whose header and trailer are lost: the newest log's."""
        self.generation = max(self._log_generations(), default=0)
        self._bad_before = max(self._bad_before, 0)  # cannot tell the log matches: verify
        self._damage(
            f"index snapshot {path}: {why}; generation {self.generation} taken from the newest log file (0 if none)",
            path,
        )

    def _load_snapshot(self, replay: _Replay) -> None:
        path = self.root / SNAPSHOT
        if not path.exists():
            if max(self._log_generations(), default=0) > 0:  # a log of a compacted index
                self._infer_generation("missing (the blocks it held are lost)", path)
            return
        data = path.read_bytes()
        if data[:1] == b"{":
            return self._load_v1(path, data, replay)
        head = trail = None
        bad: list[tuple[int, int]] = []
        n = 0
        for off, line in split_lines(data):
            v = decode_line(line)
            if _is_entry(v):
                replay.put(Claim(v[0], v[1], v[2], v[3], -1), f"index snapshot {path} byte {off}")
                n += 1
            elif off == 0 and isinstance(v, dict) and v.get("format") == FORMAT and type(v.get("generation")) is int:
                head = v
            elif isinstance(v, dict) and type(v.get("end")) is int and type(v.get("generation")) is int:
                trail = (off, v)
            else:
                bad.append((off, off + len(line)))
        for a, b, k in _runs(bad):
            self._damage(
                f"index snapshot {path}: checksum fails on {k} line{'s' * (k > 1)} at byte {a} "
                f"({b - a} bytes); skipped, entries on them are lost",
                path,
            )
        if head is None and trail is None:
            return self._infer_generation("header and trailer are both unreadable", path)
        self.generation = (head or trail[1])["generation"]
        if bad:
            return
        # Every line is sound: the whole-file check catches lost, repeated or reordered lines.
        want = head["entries"] if head is not None else None
        if (
            trail is None
            or trail[1]["end"] != n
            or want != n
            or trail[1].get("crc") != "%08x" % zlib.crc32(data[: trail[0]])
        ):
            self._damage(
                f"index snapshot {path}: fails its whole-file check ({n} entries, header "
                f"says {want}, trailer {'missing' if trail is None else 'does not match'})",
                path,
            )

    def _load_v1(self, path: Path, data: bytes, replay: _Replay) -> None:
        """Version 1: one JSON document, no checksums. Its entries are verified on open."""
        try:
            obj = json.loads(data)
            gen, entries = int(obj["generation"]), list(obj["entries"])
            if obj.get("format") != FORMAT:
                raise ValueError(f"format is {obj.get('format')!r}")
        except (ValueError, KeyError, TypeError) as e:
            return self._infer_generation(f"version 1 snapshot is unreadable ({e})", path)
        self.generation = gen
        self._bad_before = max(self._bad_before, 0)
        self.needs_compaction = True  # a writer rewrites it in version 2
        for i, v in enumerate(entries):
            if _is_entry(v):
                replay.put(Claim(v[0], v[1], v[2], v[3], -1), f"index snapshot {path} entry {i}")
            else:
                self._damage(f"index snapshot {path}: entry {i} is malformed ({str(v)[:60]}); lost", path)

    def _replay_log(self, replay: _Replay) -> None:
        log = self._log_path(self.generation)
        if not log.exists():
            return
        data = log.read_bytes()
        seq = lines = 0
        bad_at: int | None = None  # start of the current run of bad lines
        bad_lines = 0
        for off, line in split_lines(data):
            lines += 1
            rec = _record(decode_line(line))
            if rec is None:
                if bad_at is None:
                    bad_at, bad_lines = off, 0
                bad_lines += 1
                continue
            if bad_at is not None:
                self._bad_run(log, bad_at, off, bad_lines, seq, rec)
                bad_at = None
            if rec["op"] == "put":
                replay.put(Claim(rec["k"], rec["p"], rec["s"], rec["c"], seq), f"index log {log} byte {off}")
            elif rec["op"] == "del":
                replay.delete(rec["k"])
            seq += 1
        self.records_since_snapshot = lines
        if bad_at is not None and b"\n" not in data[bad_at:]:
            # One last line cut short: an append cut off by a crash, never acknowledged. Kept as
            # it is; the next append starts on a fresh line, after a marker naming the fragment.
            self.problems.append(
                f"index log {log}: ignored a torn tail of {len(data) - bad_at} bytes at "
                f"byte {bad_at} (after {seq} records): an append cut off by a crash"
            )
            self._tail_fix = b"\n" + encode_line({"op": "torn", "o": bad_at})
            return
        if bad_at is not None:  # whole bad lines at the end: rot as likely as a torn write
            self._bad_run(log, bad_at, len(data), bad_lines, seq, None)
        if data and not data.endswith(b"\n"):
            self._tail_fix = b"\n"  # never glue the next record onto the last line

    def _bad_run(self, log: Path, start: int, end: int, lines: int, seq: int, after: dict | None) -> None:
        """Bad lines (followed by `after`): damage, unless they are a torn tail already marked."""
        if after is not None and after["op"] == "torn" and after["o"] == start:
            return
        self._bad_before = seq  # a lost "del" may have freed the slot of any older entry
        self._damage(
            f"index log {log}: checksum fails on {lines} record{'s' * (lines > 1)} at byte {start} "
            f"({end - start} bytes); skipped, replay goes on past them",
            log,
        )

    def _cleanup(self) -> None:
        for gen in self._log_generations():
            if gen < self.generation:  # folded into the snapshot already
                self._log_path(gen).unlink(missing_ok=True)
            elif gen > self.generation:  # kept aside: the next compaction makes it an older log
                self._damage(
                    f"index log {self._log_path(gen)} is newer than snapshot generation "
                    f"{self.generation}; not replayed, kept",
                    self._log_path(gen),
                )
        (self.root / (SNAPSHOT + ".tmp")).unlink(missing_ok=True)

    def set_aside(self) -> list[Path]:
        """Keep each damaged file as <name>.corrupt[.n] (a hard link, or a copy) before a compaction
        replaces it: bytes nothing could decode are never deleted."""
        kept = []
        for p in self.damaged_files:
            if not p.exists():
                continue
            dst, n = p.with_name(p.name + ".corrupt"), 0
            while dst.exists():
                n += 1
                dst = p.with_name(f"{p.name}.corrupt.{n}")
            try:
                os.link(p, dst)
            except OSError:
                shutil.copyfile(p, dst)
            kept.append(dst)
        if kept and self.fsync:
            fsync_dir(self.root)
        self.damaged_files = []
        return kept

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
        data = b"".join(encode_line(r) for r in records)
        if not data:
            return
        data = self._tail_fix + data
        fd = self._open_log()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if self.fsync:
            os.fsync(fd)
        self._tail_fix = b""
        self.records_since_snapshot += data.count(b"\n")

    # --- compaction -----------------------------------------------------------------------------
    def snapshot(self, entries: list[tuple]) -> None:
        """Write a snapshot of the next generation holding `entries` [(key, parent, slot, packed)],
        then start its empty log and drop the old one."""
        old = self.generation
        new = max([old, *self._log_generations()]) + 1  # never lands on a log left in place
        body = encode_line(
            {
                "format": FORMAT,
                "version": VERSION,
                "generation": new,
                "checksum": self.checksum,
                "entries": len(entries),
            }
        )
        body += b"".join(encode_line(list(e)) for e in entries)
        body += encode_line({"end": len(entries), "generation": new, "crc": "%08x" % zlib.crc32(body)})
        atomic_write_bytes(self.root / SNAPSHOT, body, fsync=self.fsync)
        self.close()
        self.generation = new
        self.records_since_snapshot = 0
        self._tail_fix = b""
        self._log_path(old).unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

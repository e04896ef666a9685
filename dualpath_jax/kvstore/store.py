"""KVStore: the persistent KV-cache store (the testbed's stand-in for DeepSeek's 3FS).

    store = KVStore.open("/data/kv", BlockLayout.mla(61), capacity_blocks=4096, create=True)
    with store.lookup(tokens, pin=True) as hit:           # longest cached prefix, held for the request
        kv = store.read_blocks(hit.keys).result()          # [n, L, T, B] uint8, host memory
        kv_l = store.read_layer(hit.keys, layer=3).result()  # [n, T, B]: Layer Blocks of layer 3
    store.write(tokens, new_blocks, first_block=hit.num_blocks).result()

Crash safety (docs/kvstore.md has the full argument): a block's bytes are written (and fsynced) into
a free slot first; only then is a "put" record appended to the index log and fsynced, and only then
does the block enter the in-memory index. A slot is reused only after the "del" record of the block
it held is durable. So after a crash at any point, every indexed block's bytes are complete; a
per-Layer-Block checksum recorded in the put record catches corruption on read.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import fcntl
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import tensorstore as ts

from . import hashing
from .context import StoreContext
from .errors import (
    BlockCorruptionError,
    IndexRecoveryWarning,
    KVStoreError,
    LayoutError,
    StoreFullError,
    StoreLockedError,
    StoreNotFoundError,
    StoreReadOnlyError,
)
from .index import Entry, PrefixIndex
from .journal import Claim, Journal, atomic_write_json
from .layout import BlockLayout
from .throttle import Throttle
from .tsarray import open_block_array
from .window import DEFAULT_IO_WINDOW, IOWindow

META = "kvstore.json"
META_FORMAT = "dualpath-kvstore"
LOCK = "LOCK"


@dataclasses.dataclass
class WriteResult:
    keys: list[str]  # keys of every block of the written range, in order
    written: list[str]  # blocks newly committed by this write
    skipped: list[str]  # blocks that were already cached (or being written): not rewritten


class PrefixHit:
    """Longest cached prefix of a token sequence. If looked up with pin=True it holds its blocks
    (they cannot be evicted) until release() or the end of a `with` block."""

    def __init__(self, store: "KVStore", keys: list[str], pinned: bool) -> None:
        self._store, self.keys, self._pinned = store, keys, pinned

    @property
    def num_blocks(self) -> int:
        return len(self.keys)

    @property
    def num_tokens(self) -> int:
        return len(self.keys) * self._store.layout.tokens_per_block

    def release(self) -> None:
        if self._pinned:
            self._pinned = False
            self._store.unpin(self.keys)

    def __enter__(self) -> "PrefixHit":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"PrefixHit(blocks={self.num_blocks}, tokens={self.num_tokens}, pinned={self._pinned})"


def _check_writable(root: Path) -> None:
    # A directory with no write bit at all is read-only by intent: honour that even for root,
    # who would otherwise write through it.
    if not root.stat().st_mode & 0o222:
        raise StoreReadOnlyError(
            f"KV store path {root} is read-only (mode "
            f"{oct(root.stat().st_mode & 0o777)}); open it with read_only=True "
            f"to read it"
        )
    probe = root / f".write-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise StoreReadOnlyError(
            f"KV store path {root} is not writable ({e.strerror}); open it with read_only=True to read it"
        ) from e
    for sub in (root / "blocks", root / META):
        if sub.exists() and not os.access(sub, os.W_OK):
            raise StoreReadOnlyError(
                f"KV store path {sub} is not writable; open the store with read_only=True to read it"
            )


class KVStore:
    """Full Blocks in a zarr3 TensorStore, a persisted prefix index, LRU eviction with pins."""

    # ----------------------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None,
        layout: BlockLayout | None = None,
        *,
        capacity_blocks: int | None = None,
        create: bool = False,
        read_only: bool = False,
        context: StoreContext | None = None,
        io_window: int = DEFAULT_IO_WINDOW,
        checksum: str = "auto",
        namespace: str = "",
        compact_min_records: int = 4096,
    ) -> "KVStore":
        """Open (or with create=True, create) the store at `path`; path=None: in-memory store.

        layout and capacity_blocks are required to create; when opening they are checked against
        the stored ones (None: take the stored). read_only=True never writes (and takes no lock).
        """
        context = context or StoreContext()
        if layout is not None and not isinstance(layout, BlockLayout):
            raise LayoutError(f"layout: expected a BlockLayout, got {type(layout).__name__}")
        if capacity_blocks is not None:
            if (
                isinstance(capacity_blocks, bool)
                or not isinstance(capacity_blocks, (int, np.integer))
                or capacity_blocks <= 0
            ):
                raise LayoutError(f"capacity_blocks: must be a positive integer, got {capacity_blocks!r}")
            capacity_blocks = int(capacity_blocks)
        if checksum == "auto":
            checksum = hashing.default_checksum()
            explicit_checksum = False
        else:
            explicit_checksum = True
        hashing.checksum_fn(checksum)  # validate the name early
        if path is None:
            if layout is None or capacity_blocks is None:
                raise LayoutError("layout and capacity_blocks: both are required for an in-memory store")
            ctx = context.make()
            arr = open_block_array(None, layout, capacity_blocks, ctx, create=True, read_only=False)
            return cls(
                None,
                layout,
                capacity_blocks,
                arr,
                ctx,
                journal=None,
                lock_fd=None,
                checksum=checksum,
                namespace=namespace,
                io_window=io_window,
                read_only=False,
                compact_min_records=compact_min_records,
            )

        ctx = context.make()
        root = Path(path).absolute()
        if not root.exists():
            if not create or read_only:
                raise StoreNotFoundError(
                    f"KV store path {root} does not exist"
                    + ("" if read_only else "; pass create=True to make a new store")
                )
            try:
                root.mkdir(parents=True)
            except OSError as e:
                raise StoreReadOnlyError(f"cannot create KV store at {root}: {e.strerror}") from e
        elif not root.is_dir():
            raise StoreNotFoundError(f"KV store path {root} is not a directory")

        lock_fd = None
        if not read_only:
            _check_writable(root)
            lock_fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock_fd)
                raise StoreLockedError(
                    f"KV store at {root} is open for writing by another process "
                    f"(lock {root / LOCK}); open it with read_only=True"
                ) from None
        try:
            meta_path = root / META
            fresh = not meta_path.exists()
            if fresh:
                if not create or read_only:
                    raise StoreNotFoundError(
                        f"{root} holds no KV store (no {META})"
                        + ("" if read_only else "; pass create=True to make one")
                    )
                if layout is None or capacity_blocks is None:
                    raise LayoutError(f"layout and capacity_blocks: both are required to create a store at {root}")
                stored_checksum, stored_ns = checksum, namespace
                # Nothing can be committed without the metadata file: clear leftovers of a crashed
                # create (or a stray index), then create the array before the metadata names it.
                for p in list(root.glob("index.*")):
                    p.unlink()
                arr = open_block_array(root, layout, capacity_blocks, ctx, create=True, read_only=False)
                atomic_write_json(
                    meta_path,
                    {
                        "format": META_FORMAT,
                        "version": 1,
                        "layout": layout.to_json(),
                        "capacity_blocks": capacity_blocks,
                        "checksum": checksum,
                        "namespace": namespace,
                        "key_format": hashing.KEY_FORMAT,
                        "tensorstore": {"driver": "zarr3", "path": "blocks/"},
                    },
                )
            else:
                try:
                    meta = json.loads(meta_path.read_bytes())
                    if meta.get("format") != META_FORMAT:
                        raise ValueError(f"format is {meta.get('format')!r}, want {META_FORMAT!r}")
                    stored_layout = BlockLayout.from_json(meta["layout"])
                    stored_cap = int(meta["capacity_blocks"])
                    stored_checksum, stored_ns = meta["checksum"], meta.get("namespace", "")
                except (ValueError, KeyError, TypeError) as e:
                    raise KVStoreError(f"KV store metadata {meta_path} is unreadable: {e}") from e
                if layout is not None:
                    layout.check_same(stored_layout, str(root))
                layout = stored_layout
                if capacity_blocks is not None and capacity_blocks != stored_cap:
                    raise LayoutError(
                        f"capacity_blocks: asked for {capacity_blocks} but the store at {root} has {stored_cap}"
                    )
                capacity_blocks = stored_cap
                if namespace and namespace != stored_ns:
                    raise LayoutError(f"namespace: asked for {namespace!r} but the store at {root} has {stored_ns!r}")
                if explicit_checksum and checksum != stored_checksum:
                    raise LayoutError(
                        f"checksum: asked for {checksum!r} but the store at {root} uses {stored_checksum!r}"
                    )
                hashing.checksum_fn(stored_checksum)
                try:
                    arr = open_block_array(root, layout, capacity_blocks, ctx, create=False, read_only=read_only)
                except ValueError as e:
                    raise KVStoreError(f"KV store block array under {root / 'blocks'} cannot be opened: {e}") from e
            journal = Journal(root, stored_checksum, writable=not read_only, fsync=context.file_io_sync)
            return cls(
                root,
                layout,
                capacity_blocks,
                arr,
                ctx,
                journal=journal,
                lock_fd=lock_fd,
                checksum=stored_checksum,
                namespace=stored_ns,
                io_window=io_window,
                read_only=read_only,
                compact_min_records=compact_min_records,
            )
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise

    def __init__(
        self,
        root: Path | None,
        layout: BlockLayout,
        capacity_blocks: int,
        array: Any,
        ctx: ts.Context,
        *,
        journal: Journal | None,
        lock_fd: int | None,
        checksum: str,
        namespace: str,
        io_window: int,
        read_only: bool,
        compact_min_records: int,
    ) -> None:
        self.root, self.layout, self.capacity_blocks = root, layout, capacity_blocks
        self.read_only, self.checksum, self.namespace = read_only, checksum, namespace
        self._where = str(root) if root is not None else "<memory>"
        self._array = array
        self._ctx = ctx
        self._journal = journal
        self._lock_fd = lock_fd
        self._cks = hashing.checksum_fn(checksum)
        self._root_key = hashing.root_key(namespace)
        self._compact_min = compact_min_records
        self._lock = threading.RLock()
        self._index = PrefixIndex()
        self._pending: dict[str, int] = {}  # key -> slot of blocks being written
        self.stats = {"evictions": 0, "blocks_written": 0, "blocks_read": 0, "layer_blocks_read": 0}
        self._io = IOWindow(io_window)
        # One window per emulated NIC (Throttle) as well: a NIC has its own queue, so one node's
        # throttled transfers never hold the I/O slots another node's transfers wait for.
        self._nic_io: dict[Throttle, IOWindow] = {}
        self._nic_lock = threading.Lock()
        self._closed = False
        # What was damaged in the index files at open, one line each (empty: nothing).
        self.recovery: list[str] = []
        if journal is not None:
            self._load_index(journal)
        # Free slots as a stack, lowest slot on top.
        used = {e.slot for e in self._index}
        self._free = sorted(set(range(capacity_blocks)) - used, reverse=True)

    # ----------------------------------------------------------------------------- recovery
    def _load_index(self, journal: Journal) -> None:
        """Index the journal's entries; verify those a lost record could have deleted against their
        shards; report damage; a writer then compacts so later opens start clean (docs/kvstore.md,
        "Index recovery")."""
        problems = journal.problems
        claims = journal.load()
        loaded: list[tuple[Entry, bool]] = []
        for c in claims:
            e = self._entry_of(c, problems)
            if e is not None:
                loaded.append((e, c.proven))
        unproven = [e for e, proven in loaded if not proven]
        failed = self._failing_on_disk(unproven)
        for e in unproven:
            if e.key in failed:
                problems.append(
                    f"index of {self._where}: block {e.key} (slot {e.slot}) could have been "
                    f"deleted by a lost record, and its bytes do not match its checksums; "
                    f"dropped"
                )
        if unproven:
            problems.append(
                f"index of {self._where}: {len(unproven) - len(failed)} of {len(unproven)} "
                f"blocks older than a lost record verified against their shards and kept"
            )
        for e, _ in loaded:
            if e.key not in failed:
                self._index.insert(e)
        self.recovery = list(problems)
        for msg in problems:
            warnings.warn(msg, IndexRecoveryWarning, stacklevel=4)
        if journal.writable and (journal.needs_compaction or len(self._index) < len(claims)):
            journal.set_aside()
            self.compact()

    def _entry_of(self, c: Claim, problems: list[str]) -> Entry | None:
        """The Entry of a loaded claim, or None (reported) if its slot or checksums are unusable."""
        try:
            cks = hashing.unpack_checksums(c.packed, self.checksum)
        except ValueError:  # binascii.Error is a ValueError
            cks = ()
        if not 0 <= c.slot < self.capacity_blocks or len(cks) != self.layout.layers:
            problems.append(
                f"index of {self._where}: block {c.key} names slot {c.slot} (capacity "
                f"{self.capacity_blocks}) and {len(cks)} layer checksums ({self.layout.layers} "
                f"layers); dropped"
            )
            return None
        return Entry(c.key, c.parent, c.slot, cks)

    def _failing_on_disk(self, entries: list[Entry]) -> set[str]:
        """Keys of entries whose shard bytes do not match their checksums (or cannot be read)."""
        failed: set[str] = set()
        w = self._io.window
        for i in range(0, len(entries), w):  # a window of reads in flight, not every block at once
            chunk = entries[i : i + w]
            reads = [self._array[e.slot].read() for e in chunk]
            for e, r in zip(chunk, reads):
                try:
                    ok = tuple(hashing.layer_checksums(self._cks, r.result())) == e.checksums
                except Exception:  # noqa: BLE001 - an unreadable shard proves nothing
                    ok = False
                if not ok:
                    failed.add(e.key)
        return failed

    # ----------------------------------------------------------------------------- basics
    @property
    def path(self) -> Path | None:
        return self.root

    @property
    def io_window(self) -> int:
        return self._io.window

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def keys(self) -> list[str]:
        with self._lock:
            return [e.key for e in self._index]

    def block_keys(self, tokens: Sequence[int] | np.ndarray, count: int | None = None) -> list[str]:
        """Keys of the Full Blocks of `tokens` (see hashing.block_keys)."""
        return hashing.block_keys(tokens, self.layout.tokens_per_block, self.namespace, count)

    def _check_open(self, writing: bool = False) -> None:
        if self._closed:
            raise KVStoreError(f"KV store {self._where} is closed")
        if writing and self.read_only:
            raise StoreReadOnlyError(f"KV store {self._where} was opened read_only=True")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._io.shutdown()
        for w in self._nic_io.values():
            w.shutdown()
        if self._journal is not None:
            self._journal.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "KVStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"KVStore({self._where!r}, {self.layout}, blocks={len(self)}/{self.capacity_blocks}, "
            f"io_window={self.io_window})"
        )

    def _window(self, throttle: Throttle | None) -> IOWindow:
        """The I/O window of transfers through `throttle` (the store's own when None)."""
        if throttle is None:
            return self._io
        with self._nic_lock:
            w = self._nic_io.get(throttle)
            if w is None:
                w = self._nic_io[throttle] = IOWindow(self._io.window, name=f"kvstore-{throttle.name}")
            return w

    # ----------------------------------------------------------------------------- index
    def lookup(self, tokens: Sequence[int] | np.ndarray, *, pin: bool = False) -> PrefixHit:
        """Longest cached prefix of `tokens`, in whole blocks. pin=True holds the hit blocks
        atomically with the lookup (release via the PrefixHit)."""
        self._check_open()
        keys = self.block_keys(tokens)
        with self._lock:
            n = self._index.longest_prefix(keys)
            hit = keys[:n]
            self._index.touch(hit)
            if pin:
                self._index.pin(hit)
        return PrefixHit(self, hit, pinned=pin)

    def entries(self, keys: Sequence[str]) -> list[dict]:
        """Where the blocks of `keys` are (slot, parent, checksums), as small records another
        process's read-only handle of this store can `adopt` to read those blocks itself."""
        with self._lock:
            found = [self._index.get(k) for k in keys]
        return [{"k": e.key, "p": e.parent, "s": e.slot, "c": hashing.pack_checksums(e.checksums, self.checksum)} for e in found]  # fmt: skip

    def adopt(self, records: Iterable[dict]) -> None:
        """Index blocks that the writing process committed after this read-only handle opened
        (records from its `entries`): the bytes are already durable in the shared files, so this
        handle can read them; a key already known is replaced (its slot may have been reused)."""
        if not self.read_only:
            raise StoreReadOnlyError(f"KV store {self._where}: adopt is for read-only handles; this one writes")
        with self._lock:
            for r in records:
                if r["k"] in self._index:
                    if self._index.get(r["k"]).slot == int(r["s"]):
                        continue
                    self._index.remove(r["k"])
                self._index.insert(Entry(r["k"], r["p"], int(r["s"]), hashing.unpack_checksums(r["c"], self.checksum)))

    def pin(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._index.pin(keys)

    def unpin(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._index.unpin(keys)

    def hold(self, keys: Iterable[str]) -> PrefixHit:
        """Context manager holding `keys` (all must be indexed) for the length of a request."""
        keys = list(keys)
        self.pin(keys)
        return PrefixHit(self, keys, pinned=True)

    def pins(self, key: str) -> int:
        with self._lock:
            return self._index.get(key).pins

    def compact(self) -> None:
        """Rewrite the index snapshot and start an empty log."""
        self._check_open(writing=True)
        with self._lock:
            if self._journal is not None:
                self._journal.snapshot(
                    [(e.key, e.parent, e.slot, hashing.pack_checksums(e.checksums, self.checksum)) for e in self._index]
                )

    def _maybe_compact(self) -> None:
        j = self._journal
        if j is not None and j.records_since_snapshot > max(self._compact_min, 2 * len(self._index)):
            self.compact()

    def _allocate(self, n: int, exclude: set[str]) -> list[int]:
        """n free slots, evicting LRU unpinned leaves as needed. Caller holds the lock. The "del"
        records of evicted blocks are durable before this returns (before any slot is reused)."""
        slots: list[int] = []
        dels: list[dict] = []
        try:
            while len(slots) < n:
                if self._free:
                    slots.append(self._free.pop())
                    continue
                victim = self._index.victim(exclude)
                if victim is None:
                    self._free.extend(reversed(slots))
                    slots = []
                    raise StoreFullError(
                        f"KV store {self._where} is full: {len(self._index)} of {self.capacity_blocks} "
                        f"blocks cached, {self._index.pinned_count()} pinned, {len(self._pending)} "
                        f"being written, none evictable for {n} new blocks"
                    )
                self._index.remove(victim.key)
                dels.append({"op": "del", "k": victim.key})
                slots.append(victim.slot)
                self.stats["evictions"] += 1
        finally:
            if dels and self._journal is not None:
                self._journal.append(dels)
        return slots

    def evict(self, n: int = 1) -> list[str]:
        """Evict up to n LRU unpinned leaf blocks now; returns their keys."""
        self._check_open(writing=True)
        out: list[str] = []
        with self._lock:
            dels, freed = [], []
            for _ in range(n):
                v = self._index.victim()
                if v is None:
                    break
                self._index.remove(v.key)
                dels.append({"op": "del", "k": v.key})
                out.append(v.key)
                freed.append(v.slot)
                self.stats["evictions"] += 1
            if dels and self._journal is not None:
                self._journal.append(dels)
            self._free.extend(freed)
            self._free.sort(reverse=True)
        return out

    # ----------------------------------------------------------------------------- writes
    def write(
        self, tokens: Sequence[int] | np.ndarray, blocks: Any, *, first_block: int = 0, throttle: Throttle | None = None
    ) -> cf.Future:
        """Persist Full Blocks first_block .. first_block+n-1 of `tokens`; blocks is [n, L, T, D]
        of any dtype with D * itemsize == bytes_per_token. Returns a future of WriteResult, resolved
        once every new block is durable and indexed. Blocks already cached are skipped. `blocks`
        must not be modified until the future resolves (it is read in place)."""
        self._check_open(writing=True)
        u8 = self.layout.as_bytes(blocks)
        if isinstance(first_block, bool) or not isinstance(first_block, (int, np.integer)) or first_block < 0:
            raise LayoutError(f"first_block: must be an integer >= 0, got {first_block!r}")
        n = u8.shape[0]
        all_keys = self.block_keys(tokens, count=first_block + n)
        keys = all_keys[first_block:]
        parents = [all_keys[first_block + i - 1] if first_block + i > 0 else self._root_key for i in range(n)]
        with self._lock:
            todo = [i for i, k in enumerate(keys) if k not in self._index and k not in self._pending]
            todo_set = set(todo)
            skipped = [keys[i] for i in range(n) if i not in todo_set]
            # Never evict the parents of what we are about to write (that would strand it).
            slots = self._allocate(len(todo), exclude=set(parents))
            for i, s in zip(todo, slots):
                self._pending[keys[i]] = s
        tasks = [
            (lambda i=i, s=s: self._write_one(keys[i], parents[i], s, u8[i], throttle)) for i, s in zip(todo, slots)
        ]

        def finalize(futs: list[cf.Future]) -> WriteResult:
            return self._commit(keys, [keys[i] for i in todo], slots, futs, skipped)

        return self._window(throttle).batch(tasks, finalize)

    def _write_one(self, key: str, parent: str, slot: int, data: np.ndarray, throttle: Throttle | None) -> Entry:
        deadline = throttle.reserve(data.nbytes) if throttle is not None else None
        cks = tuple(hashing.layer_checksums(self._cks, data))
        try:
            self._array[slot].write(data).result()
        except Exception as e:
            raise KVStoreError(f"writing KV block {key} (slot {slot}) to {self._where} failed: {e}") from e
        if deadline is not None:
            throttle.settle(deadline)
        return Entry(key, parent, slot, cks)

    def _commit(
        self, keys: list[str], todo_keys: list[str], slots: list[int], futs: list[cf.Future], skipped: list[str]
    ) -> WriteResult:
        """Index the blocks whose bytes are fully written: log (fsync), then in-memory."""
        done: list[Entry] = []
        first_error: BaseException | None = None
        with self._lock:
            for key, slot, f in zip(todo_keys, slots, futs):
                err = f.exception()
                if err is None:
                    done.append(f.result())
                else:
                    first_error = first_error or err
                    self._pending.pop(key, None)
                    self._free.append(slot)
            try:
                if self._journal is not None and done:
                    self._journal.append(
                        [
                            {
                                "op": "put",
                                "k": e.key,
                                "p": e.parent,
                                "s": e.slot,
                                "c": hashing.pack_checksums(e.checksums, self.checksum),
                            }
                            for e in done
                        ]
                    )
            except BaseException:
                for e in done:
                    self._pending.pop(e.key, None)
                    self._free.append(e.slot)
                raise
            for e in done:
                self._pending.pop(e.key, None)
                self._index.insert(e)
            self._index.touch(keys)
            self.stats["blocks_written"] += len(done)
            self._maybe_compact()
        if first_error is not None:
            raise first_error
        return WriteResult(keys=list(keys), written=[e.key for e in done], skipped=skipped)

    # ----------------------------------------------------------------------------- reads
    def _pin_for_read(self, keys: Sequence[str]) -> list[Entry]:
        self._check_open()
        keys = list(keys)
        with self._lock:
            entries = [self._index.get(k) for k in keys]
            self._index.pin(keys)
            self._index.touch(keys)
        return entries

    def _verify(self, e: Entry, layer: int, data: np.ndarray) -> None:
        got = self._cks(memoryview(data).cast("B"))
        if got != e.checksums[layer]:
            raise BlockCorruptionError(e.key, e.slot, layer, e.checksums[layer], got, self._where)

    def _out(self, out: np.ndarray | None, shape: tuple) -> np.ndarray:
        if out is None:
            return np.empty(shape, np.uint8)
        if (
            not isinstance(out, np.ndarray)
            or out.dtype != np.uint8
            or out.shape != shape
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise LayoutError(
                f"out: expected a writeable C-contiguous uint8 array of shape {shape}, got "
                f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
            )
        return out

    def read_blocks(
        self,
        keys: Sequence[str],
        *,
        throttle: Throttle | None = None,
        verify: bool = True,
        out: np.ndarray | None = None,
    ) -> cf.Future:
        """Future of the Full Blocks of `keys` as one uint8 array [n, L, T, B] (host memory, ready
        for jax.device_put after view_as). Blocks are held (not evictable) while being read.
        out: optional reusable buffer (e.g. a slice of a long-lived DRAM buffer) to read into;
        reusing memory avoids page-faulting fresh pages on every read. Reads in flight must not
        share an `out` (checksums are verified on the buffer after the bytes land)."""
        shape = (len(keys),) + self.layout.full_block_shape
        out = self._out(out, shape)
        entries = self._pin_for_read(keys)
        # TensorStore copies each shard's chunks straight into `out` (no intermediate array):
        # measured ~1.4x faster on warm reads than read() followed by a numpy copy.
        dst = ts.array(out, copy=False, write=True, context=self._ctx)

        def one(i: int, e: Entry) -> None:
            deadline = throttle.reserve(self.layout.full_block_nbytes) if throttle is not None else None
            try:
                dst[i].write(self._array[e.slot]).result()
            except Exception as ex:
                raise KVStoreError(f"reading KV block {e.key} (slot {e.slot}) from {self._where} failed: {ex}") from ex
            if verify:
                for layer in range(self.layout.layers):
                    self._verify(e, layer, out[i, layer])
            if deadline is not None:
                throttle.settle(deadline)

        return self._window(throttle).batch(
            [(lambda i=i, e=e: one(i, e)) for i, e in enumerate(entries)],
            lambda futs: self._finish_read(entries, futs, out, "blocks_read"),
        )

    def read_layer(
        self,
        keys: Sequence[str],
        layer: int,
        *,
        throttle: Throttle | None = None,
        verify: bool = True,
        out: np.ndarray | None = None,
    ) -> cf.Future:
        """Future of Layer Blocks `layer` of `keys`: uint8 [n, T, B]. Reads only that layer's bytes
        (plus each shard's small index), not the Full Blocks. out: optional buffer, as read_blocks."""
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < self.layout.layers:
            raise LayoutError(f"layer: must be an integer in [0, {self.layout.layers}), got {layer!r}")
        layer = int(layer)
        out = self._out(out, (len(keys),) + self.layout.layer_block_shape)
        entries = self._pin_for_read(keys)
        dst = ts.array(out, copy=False, write=True, context=self._ctx)

        def one(i: int, e: Entry) -> None:
            deadline = throttle.reserve(self.layout.layer_block_nbytes) if throttle is not None else None
            try:
                dst[i].write(self._array[e.slot, layer]).result()
            except Exception as ex:
                raise KVStoreError(
                    f"reading layer {layer} of KV block {e.key} (slot {e.slot}) from {self._where} failed: {ex}"
                ) from ex
            if verify:
                self._verify(e, layer, out[i])
            if deadline is not None:
                throttle.settle(deadline)

        return self._window(throttle).batch(
            [(lambda i=i, e=e: one(i, e)) for i, e in enumerate(entries)],
            lambda futs: self._finish_read(entries, futs, out, "layer_blocks_read"),
        )

    def _finish_read(self, entries: list[Entry], futs: list[cf.Future], out: np.ndarray, stat: str) -> np.ndarray:
        with self._lock:
            self._index.unpin(e.key for e in entries)
            self.stats[stat] += len(entries)
        for f in futs:
            if f.exception() is not None:
                raise f.exception()
        return out

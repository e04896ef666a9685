"""TensorStore context for the KV store, stated explicitly rather than left to defaults."""

from __future__ import annotations

import dataclasses
import os

import tensorstore as ts


@dataclasses.dataclass(frozen=True)
class StoreContext:
    """Context resources shared by every TensorStore operation of one KVStore.

    cache_pool_bytes: TensorStore's own chunk cache. 0 (default): no TensorStore-level cache; the OS
        page cache and the caller's DRAM buffers (PE/DE buffers) are the only caches, every read
        goes to the file so corruption and other processes' writes are always seen, and no block is
        held twice in DRAM. The cost is one extra small read of a shard index per Layer-Block read.
    file_io_concurrency: most file reads/writes TensorStore keeps in flight. Matches the default
        in-flight window of KVStore (16) so the window, not this pool, is the bound.
    file_io_sync: fsync each written shard before its write completes. True (default) is what makes
        "committed to the index" mean "durable on disk" across power loss, not only process crash.
    data_copy_concurrency: threads for encode/decode copies (the zarr3 'bytes' codec).
    """

    cache_pool_bytes: int = 0
    file_io_concurrency: int = 16
    file_io_sync: bool = True
    data_copy_concurrency: int = max(1, os.cpu_count() or 1)

    def to_json(self) -> dict:
        return {
            "cache_pool": {"total_bytes_limit": int(self.cache_pool_bytes)},
            "file_io_concurrency": {"limit": int(self.file_io_concurrency)},
            "file_io_sync": bool(self.file_io_sync),
            "data_copy_concurrency": {"limit": int(self.data_copy_concurrency)},
        }

    def make(self) -> ts.Context:
        return ts.Context(self.to_json())

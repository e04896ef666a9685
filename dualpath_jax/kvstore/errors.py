"""Errors raised by the KV-cache store. Every message names the path, block or field at fault."""

from __future__ import annotations


class KVStoreError(Exception):
    """Base class for every error the KV-cache store raises."""


class StoreNotFoundError(KVStoreError, FileNotFoundError):
    """The store path does not exist, or holds no store, and create was not asked for."""


class StoreReadOnlyError(KVStoreError, PermissionError):
    """The store path cannot be written, but the store was opened for writing."""


class StoreLockedError(KVStoreError):
    """Another live process holds the store's writer lock."""


class LayoutError(KVStoreError, ValueError):
    """A shape, dtype or layout field is wrong; the message names the field."""


class BlockNotFoundError(KVStoreError, KeyError):
    """A block key is not (or no longer) in the index."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class BlockCorruptionError(KVStoreError):
    """A block's stored bytes do not match the checksum recorded when it was committed."""

    def __init__(self, key: str, slot: int, layer: int, expected: int, actual: int, path: str):
        self.key, self.slot, self.layer = key, slot, layer
        self.expected, self.actual, self.path = expected, actual, path
        super().__init__(
            f"corrupt KV block {key} (slot {slot}, layer {layer}) in store {path}: "
            f"checksum {actual:#x} != committed {expected:#x}"
        )


class StoreFullError(KVStoreError):
    """No free slot and no evictable block (every block is pinned or has cached children)."""


class IndexRecoveryWarning(RuntimeWarning):
    """The index files were damaged or torn, and the index was rebuilt from what they and the shard
    bytes still prove. The message names the file and byte offset (docs/kvstore.md, Index recovery)."""

"""TensorStore KV-cache store: Full/Layer Block layout, prefix index, async reads/writes, throttles.

See docs/kvstore.md. Main entry point: KVStore.open(path, BlockLayout.mla(61), capacity_blocks=N,
create=True).
"""

from .context import StoreContext
from .errors import (
    BlockCorruptionError,
    BlockNotFoundError,
    IndexRecoveryWarning,
    KVStoreError,
    LayoutError,
    StoreFullError,
    StoreLockedError,
    StoreNotFoundError,
    StoreReadOnlyError,
)
from .hashing import block_keys, root_key
from .layout import DEFAULT_TOKENS_PER_BLOCK, BlockLayout, mla_bytes_per_token, view_as
from .store import KVStore, PrefixHit, WriteResult
from .throttle import Throttle
from .tsarray import shard_file
from .window import DEFAULT_IO_WINDOW

__all__ = [
    "KVStore",
    "PrefixHit",
    "WriteResult",
    "BlockLayout",
    "StoreContext",
    "Throttle",
    "block_keys",
    "root_key",
    "view_as",
    "mla_bytes_per_token",
    "shard_file",
    "DEFAULT_TOKENS_PER_BLOCK",
    "DEFAULT_IO_WINDOW",
    "KVStoreError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "StoreLockedError",
    "LayoutError",
    "BlockNotFoundError",
    "BlockCorruptionError",
    "StoreFullError",
    "IndexRecoveryWarning",
]

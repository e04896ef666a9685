"""In-memory prefix index: a trie over chained block keys, with LRU order and pins.

One node per Full Block. Because a block's key chains its parent's key (hashing.block_keys), the
trie is stored as a dict key -> Entry plus a child count per key; walking the trie along a token
sequence is a walk along its key list that stops at the first miss. Not thread-safe by itself: the
store serialises access under its lock.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Iterable, Iterator, Sequence

from .errors import BlockNotFoundError


@dataclasses.dataclass
class Entry:
    key: str
    parent: str  # key of the previous block of the sequence (root_key for the first)
    slot: int  # row of the block array that holds this block's bytes
    checksums: tuple  # one per Layer Block
    pins: int = 0  # running requests (and in-flight reads) holding this block


class PrefixIndex:
    def __init__(self) -> None:
        # Insertion/touch order = LRU order, least recently used first.
        self._entries: "collections.OrderedDict[str, Entry]" = collections.OrderedDict()
        self._children: collections.Counter = collections.Counter()  # parent key -> cached children

    # --- basic map ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def get(self, key: str) -> Entry:
        try:
            return self._entries[key]
        except KeyError:
            raise BlockNotFoundError(f"KV block {key} is not in the index (never written or evicted)") from None

    def insert(self, entry: Entry) -> None:
        if entry.key in self._entries:
            raise ValueError(f"KV block {entry.key} is already indexed")
        self._entries[entry.key] = entry
        self._children[entry.parent] += 1

    def remove(self, key: str) -> Entry:
        e = self.get(key)
        if e.pins:
            raise ValueError(f"KV block {key} is pinned ({e.pins}) and cannot be removed")
        del self._entries[key]
        self._children[e.parent] -= 1
        if self._children[e.parent] <= 0:
            del self._children[e.parent]
        return e

    # --- prefix lookup and recency ------------------------------------------------------------
    def longest_prefix(self, keys: Sequence[str]) -> int:
        """Number of leading keys of one sequence that are cached (the trie walk)."""
        n = 0
        for k in keys:
            if k not in self._entries:
                break
            n += 1
        return n

    def touch(self, keys: Sequence[str]) -> None:
        """Mark a path most recently used. Deepest first, so a parent ends up more recent than its
        children and an LRU scan meets leaves before their ancestors."""
        for k in reversed(keys):
            if k in self._entries:
                self._entries.move_to_end(k)

    # --- pins and eviction --------------------------------------------------------------------
    def pin(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for k in keys:
            self.get(k)  # raise before pinning anything
        for k in keys:
            self._entries[k].pins += 1

    def unpin(self, keys: Iterable[str]) -> None:
        for k in keys:
            e = self._entries.get(k)
            if e is not None and e.pins > 0:
                e.pins -= 1

    def victim(self, exclude: set[str] | frozenset = frozenset()) -> Entry | None:
        """Least recently used block that is unpinned and a leaf (no cached children).

        Only leaves go: evicting an inner node would strand its cached descendants, which a
        prefix walk can no longer reach.
        """
        for k, e in self._entries.items():
            if e.pins == 0 and k not in exclude and self._children.get(k, 0) == 0:
                return e
        return None

    def pinned_count(self) -> int:
        return sum(1 for e in self._entries.values() if e.pins)

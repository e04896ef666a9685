"""A chat's prefix KV in the project's TensorStore KV store (dualpath_jax/kvstore/).

One request's KV is [Y, n, M] in the model dtype, the layout of the testbed's codec
(dualpath_jax/serving/kvcodec.py), which turns it into Full Blocks of `tokens_per_block` tokens and
back. Only whole blocks are stored (the store keys them by the token prefix), so a lookup hits a
multiple of the block size; a turn keeps at least its last token to prefill, because the first new
token is chosen from that token's logits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import jax
import numpy as np

from ..kvstore import KVStore
from ..model import KVCache, ModelConfig
from ..serving import kvcodec


@dataclasses.dataclass
class LoadedPrefix:
    """hit_tokens: how many leading tokens were read from the store; kv [Y,1,P,M] on device, or
    None for no hit."""

    hit_tokens: int
    kv: jax.Array | None


def checkpoint_namespace(directory: str | os.PathLike, dtype: str) -> str:
    """A store namespace naming the checkpoint (its config.json and weight files' names and sizes)
    and the dtype, so a store directory never serves one model's KV to another."""
    root = Path(directory)
    digest = hashlib.blake2b((root / "config.json").read_bytes(), digest_size=8)
    for f in sorted(root.glob("*.safetensors")):
        digest.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"generate/{digest.hexdigest()}/{dtype}"


class PrefixStore:
    """Saves and loads token-prefix KV of one model in a KVStore."""

    def __init__(self, store: KVStore, cfg: ModelConfig):
        self.store, self.cfg = store, cfg
        self.tokens_per_block = store.layout.tokens_per_block

    @classmethod
    def open(cls, path, cfg: ModelConfig, *, tokens_per_block: int, capacity_blocks: int, namespace: str):
        """The store at `path` (made when absent; None: in memory) laid out for cfg's KV."""
        layout = kvcodec.block_layout(cfg, tokens_per_block)
        return cls(KVStore.open(path, layout, capacity_blocks=capacity_blocks, create=True, namespace=namespace), cfg)

    def load(self, tokens: list[int]) -> LoadedPrefix:
        """The longest stored prefix of `tokens` that leaves at least one token to prefill."""
        t = self.tokens_per_block
        with self.store.lookup(tokens, pin=True) as hit:
            keys = hit.keys[: (len(tokens) - 1) // t]
            if not keys:
                return LoadedPrefix(0, None)
            blocks = self.store.read_blocks(keys).result()  # uint8 [n, Y, T, B]
        # joined on the host (a view and one transposing copy): staging on device would compile
        # once per hit length, and every turn's hit is longer than the last
        n, y = blocks.shape[:2]
        kv = blocks.view(kvcodec.np_dtype(self.cfg)).reshape(n, y, t, self.cfg.cache_width)
        kv = np.ascontiguousarray(kv.transpose(1, 0, 2, 3)).reshape(y, 1, n * t, self.cfg.cache_width)
        return LoadedPrefix(len(keys) * t, jax.device_put(kv))

    def save(self, tokens: list[int], cache: KVCache, known: int, first_block: int = 0) -> int:
        """Store the whole blocks among the first `known` tokens of `tokens`, whose KV is in slot 0
        of `cache`, from block `first_block` on (earlier ones are stored already). Returns the
        number of blocks written or found stored."""
        t = self.tokens_per_block
        n_blocks = known // t
        if n_blocks <= first_block:
            return 0
        kv = np.stack([np.asarray(layer)[0, : n_blocks * t] for layer in cache.kv])  # [Y, n*T, M], sliced on the host
        blocks = kvcodec.blocks_of(kv[:, first_block * t :], t)
        self.store.write(tokens[: n_blocks * t], blocks, first_block=first_block).result()
        return n_blocks - first_block

    def close(self) -> None:
        self.store.close()

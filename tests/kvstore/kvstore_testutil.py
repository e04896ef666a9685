"""Shared helpers for the KV store tests (stores live under pytest's tmp_path, never the repo)."""

import numpy as np

from dualpath_jax.kvstore import BlockLayout

# Small layouts keep the suite fast; the MLA layout is exercised where its byte count matters.
SMALL = BlockLayout(layers=4, bytes_per_token=64, tokens_per_block=8)


def rand_blocks(layout: BlockLayout, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n,) + layout.full_block_shape, dtype=np.uint8)

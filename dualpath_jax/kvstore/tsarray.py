"""The TensorStore array that holds the blocks: zarr3, one shard per Full Block.

Shape [capacity_blocks, layers, tokens_per_block, bytes_per_token] uint8.
  chunk grid (= shard)       [1, layers, T, B]   one file per slot: blocks/c.<slot>.0.0.0
  inner chunk (sharding)     [1, 1, T, B]        one Layer Block, stored raw ('bytes' codec)
  shard index                at the end of the file, 16 B per Layer Block + crc32c
A Full-Block read is one pread of the whole shard; a Layer-Block read reads the shard index and then
exactly that layer's T*B bytes (an unsharded zarr3 chunk would always be read whole).
"""

from __future__ import annotations

from pathlib import Path

import tensorstore as ts

from .layout import BlockLayout


def zarr3_metadata(layout: BlockLayout, capacity_blocks: int) -> dict:
    L, T, B = layout.full_block_shape
    return {
        "shape": [capacity_blocks, L, T, B],
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, L, T, B]}},
        # "." keeps every shard file directly under blocks/ (no directory per slot).
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "."}},
        "fill_value": 0,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [1, 1, T, B],
                    "codecs": [{"name": "bytes"}],  # raw: KV bytes do not compress usefully
                    "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
                    "index_location": "end",
                },
            }
        ],
    }


def kvstore_spec(root: Path | None) -> dict:
    if root is None:
        return {"driver": "memory"}
    return {"driver": "file", "path": str(Path(root) / "blocks") + "/"}


def open_block_array(
    root: Path | None, layout: BlockLayout, capacity_blocks: int, context: ts.Context, create: bool, read_only: bool
) -> ts.TensorStore:
    spec = {"driver": "zarr3", "kvstore": kvstore_spec(root), "metadata": zarr3_metadata(layout, capacity_blocks)}
    kw = dict(context=context, read=True, write=not read_only)
    if create:
        kw.update(open=True, create=True)
    else:
        kw.update(open=True)
    return ts.open(spec, **kw).result()


def shard_file(root: Path, slot: int) -> Path:
    """Path of the file holding one slot's Full Block (for tests and tools)."""
    return Path(root) / "blocks" / f"c.{slot}.0.0.0"

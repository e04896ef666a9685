"""Writer process for the SIGKILL test: writes sequences of blocks in a loop, printing each commit.

usage: python kvstore_crash_writer.py STORE_DIR FIRST_SEQ
Prints "C <seq> <first_block> <n>" after each write's future resolved (block durable and indexed).
The data of (seq, block) is a pure function of both, so a checker can regenerate it.
"""

import sys

import numpy as np

from dualpath_jax.kvstore import BlockLayout, KVStore

LAYOUT = BlockLayout(layers=8, bytes_per_token=4096, tokens_per_block=16)  # 512 KiB Full Blocks
BLOCKS_PER_SEQ = 4
CAPACITY = 24


def seq_tokens(s: int) -> np.ndarray:
    return np.arange(BLOCKS_PER_SEQ * LAYOUT.tokens_per_block, dtype=np.int64) + 1_000_003 * s


def block_data(s: int, b: int) -> np.ndarray:
    return np.random.default_rng([s, b]).integers(0, 256, LAYOUT.full_block_shape, dtype=np.uint8)


def main() -> None:
    path, first = sys.argv[1], int(sys.argv[2])
    # small compaction threshold: snapshots (os.replace of index.json) also happen under the kill
    st = KVStore.open(path, LAYOUT, capacity_blocks=CAPACITY, create=True, compact_min_records=24)
    print("READY", flush=True)
    s = first
    while True:
        toks = seq_tokens(s)
        # blocks 0-1 in one batch, then 2 and 3 one by one
        for b0, n in ((0, 2), (2, 1), (3, 1)):
            data = np.stack([block_data(s, b) for b in range(b0, b0 + n)])
            st.write(toks, data, first_block=b0).result()
            print(f"C {s} {b0} {n}", flush=True)
        s += 1


if __name__ == "__main__":
    main()

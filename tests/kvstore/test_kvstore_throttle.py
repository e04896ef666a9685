"""Throttle: a token bucket per emulated NIC, accurate within 5% over ~0.5-1 s."""

import threading
import time

import numpy as np
import pytest

from dualpath_jax.kvstore import BlockLayout, KVStore, Throttle

MB = 1_000_000


@pytest.mark.parametrize("threads", [2, 4])
def test_throttle_accuracy_shared_by_threads(threads):
    th = Throttle(8 * MB)
    total, chunk = 4 * MB, 64 * 1024
    n_chunks = total // chunk
    barrier = threading.Barrier(threads + 1)

    def worker(k):
        barrier.wait()
        for _ in range(k, n_chunks, threads):
            th.acquire(chunk)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    expected = n_chunks * chunk / (8 * MB)
    assert abs(elapsed - expected) / expected < 0.05, (elapsed, expected)
    assert th.total_bytes == n_chunks * chunk


def test_throttle_idle_time_is_not_banked_without_burst():
    th = Throttle(10 * MB)
    th.acquire(MB)  # 0.1 s
    time.sleep(0.1)  # idle link
    t0 = time.perf_counter()
    th.acquire(MB)
    assert time.perf_counter() - t0 == pytest.approx(0.1, rel=0.05)
    tb = Throttle(10 * MB, burst_bytes=MB)
    time.sleep(0.1)  # credit for one burst
    t0 = time.perf_counter()
    tb.acquire(MB)
    assert time.perf_counter() - t0 < 0.02


def test_throttle_rejects_bad_rates():
    with pytest.raises(ValueError, match="bytes_per_s"):
        Throttle(0)
    assert Throttle.gbps(400).rate == 50e9


def test_store_reads_and_writes_go_through_the_throttle():
    lay = BlockLayout(layers=4, bytes_per_token=2048, tokens_per_block=16)  # 128 KiB blocks
    n = 32  # 4 MiB
    nbytes = n * lay.full_block_nbytes
    with KVStore.open(None, lay, capacity_blocks=n, io_window=4) as st:
        toks = np.arange(n * 16)
        blocks = np.random.default_rng(0).integers(0, 256, (n,) + lay.full_block_shape, np.uint8)
        nic = Throttle(nbytes / 0.5)  # 0.5 s worth
        t0 = time.perf_counter()
        st.write(toks, blocks, throttle=nic).result()
        w = time.perf_counter() - t0
        keys = st.lookup(toks).keys
        t0 = time.perf_counter()
        # two concurrent requests share one NIC: 2 x half the bytes in 0.5 s
        f1 = st.read_blocks(keys[: n // 2], throttle=nic)
        f2 = st.read_layer(keys, 0, throttle=nic)
        f3 = st.read_layer(keys, 1, throttle=nic)
        f4 = st.read_blocks(keys[n // 2 :], throttle=nic)
        for f in (f1, f2, f3, f4):
            f.result()
        r = time.perf_counter() - t0
        expected_r = 0.5 * (1 + 2 / lay.layers)
    assert w == pytest.approx(0.5, rel=0.05)
    assert r == pytest.approx(expected_r, rel=0.05)


def test_each_nic_has_its_own_io_queue():
    """A node's queued throttled reads do not hold back another node's transfers (each emulated
    NIC has its own in-flight window): a read through a fast NIC issued after a long read through
    a slow one finishes in its own link time, not after the slow one."""
    lay = BlockLayout(layers=4, bytes_per_token=2048, tokens_per_block=16)  # 128 KiB blocks
    n = 32
    nbytes = n * lay.full_block_nbytes
    with KVStore.open(None, lay, capacity_blocks=n, io_window=4) as st:
        toks = np.arange(n * 16)
        st.write(toks, np.random.default_rng(0).integers(0, 256, (n,) + lay.full_block_shape, np.uint8)).result()
        keys = st.lookup(toks).keys
        slow, fast = Throttle(nbytes / 1.0, name="slow"), Throttle(nbytes / 0.1, name="fast")
        t0 = time.perf_counter()
        f_slow = st.read_blocks(keys, throttle=slow)  # 1 s of link time, 32 block tasks
        f_fast = st.read_blocks(keys[: n // 2], throttle=fast)  # 0.05 s
        f_fast.result()
        fast_s = time.perf_counter() - t0
        f_slow.result()
        slow_s = time.perf_counter() - t0
    assert fast_s < 0.3, fast_s  # one shared FIFO window would make it ~1 s
    assert 0.95 < slow_s < 1.5, slow_s  # the slow NIC still takes its own link time


def test_settle_counts_transfers_the_store_not_the_link_paced():
    th = Throttle(10 * MB)
    th.settle(th.reserve(MB))  # I/O took ~0 s of the link's 0.1 s: the link paced it
    d = th.reserve(MB // 100)  # 1 ms of link time ...
    time.sleep(0.05)  # ... but the "I/O" took 50 ms
    th.settle(d)
    assert (th.transfers, th.late) == (2, 1)
    assert 0.04 < th.late_s < 0.2

"""Host <-> GPU copy paths the testbed can use, timed on one GPU: what a layer of KV costs to move.

    PYTHONPATH=. python3 benchmarks/bench_host_copies.py --out results/bench

For one KV layer of `--tokens` tokens (bf16, MLA 512+64 per token), median of `--reps`:
- D2H: jax.device_get (pageable numpy), and a device_put to the `pinned_host` memory kind followed by
  np.asarray; how long copy_to_host_async() holds the calling thread;
- H2D: jax.device_put of a numpy array, and of an array already in `pinned_host` memory;
- a host copy of the same bytes (numpy, bf16) on 1 and on 4 threads at once (does it scale?).
Writes host_copies_<tag>.json and .txt under --out.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import write_report  # noqa: E402


def median_s(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def parallel_s(fn, threads: int, reps: int) -> float:
    """Seconds for `threads` threads to each run fn once, at the same time (median of reps)."""

    def once():
        ts = [threading.Thread(target=fn) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    return median_s(once, reps)


def pipeline(dev, host: np.ndarray, kinds: list, layers: int) -> dict:
    """A prefill engine's thread in miniature: `layers` steps of ~30 ms of GPU work, each blocked
    on, and after each one layer moved between host and GPU by one of the ways below, its host side
    on 4 worker threads. Seconds per engine step for each way (`none`: nothing moved): a way that
    holds the engine's thread (or the GPU) shows as a longer step."""
    from concurrent.futures import ThreadPoolExecutor

    a = jax.device_put(np.ones((8192, 8192), np.float32), dev).astype(jnp.bfloat16)
    mm = jax.jit(lambda m: (m @ m) * 1e-4)
    mm(a).block_until_ready()
    t0 = time.perf_counter()
    mm(a).block_until_ready()
    reps = max(1, int(0.03 / max(time.perf_counter() - t0, 1e-5)))
    out = jax.device_put(host, dev)
    sink = [np.empty_like(host) for _ in range(layers)]
    pinned = jax.sharding.SingleDeviceSharding(dev, memory_kind="pinned_host") if "pinned_host" in kinds else None
    hbm = jax.sharding.SingleDeviceSharding(dev, memory_kind="device")

    def to_sink(i, x):
        np.copyto(sink[i], np.asarray(x))

    # way -> (on the engine thread after a step: what to hand over, on a worker: what to do with it)
    ways = {
        "none": None,
        "d2h device_get": (lambda: out + 0, lambda i, x: to_sink(i, jax.device_get(x))),
        "d2h copy_to_host_async": (lambda: (lambda x: (x.copy_to_host_async(), x)[1])(out + 0), to_sink),
        "h2d numpy": (lambda: None, lambda i, _: jax.device_put(host, dev).block_until_ready()),
    }
    if pinned is not None:
        ways["d2h pinned_host"] = (lambda: jax.device_put(out + 0, pinned), to_sink)
        ways["h2d via pinned_host"] = (
            lambda: None,
            lambda i, _: jax.device_put(jax.device_put(host, pinned), hbm).block_until_ready(),
        )
    res = {}
    for name, way in ways.items():
        pool = ThreadPoolExecutor(4)
        for _ in range(2):  # the first compiles and warms
            y, futs = a, []
            t0 = time.perf_counter()
            for i in range(layers):
                for _ in range(reps):
                    y = mm(y)
                y.block_until_ready()
                if way is not None:
                    futs.append(pool.submit(way[1], i, way[0]()))
            step = (time.perf_counter() - t0) / layers
            for f in futs:
                f.result()
            drained = (time.perf_counter() - t0) / layers
        pool.shutdown()
        res[name] = {"step_s": step, "with_moves_s": drained}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--width", type=int, default=576, help="KV values per token per layer (MLA 512+64)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--layers", type=int, default=16, help="steps of the engine-thread pipeline test")
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    dev = jax.devices()[0]
    tag = args.tag or dev.platform
    shape = (args.tokens, args.width)
    host = np.ones(shape, jnp.bfloat16)
    nbytes = host.nbytes
    on_dev = jax.device_put(host, dev)
    on_dev.block_until_ready()
    kinds = [m.kind for m in dev.addressable_memories()]
    r = {"device": dev.device_kind, "jax": jax.__version__, "bytes": nbytes, "memory_kinds": kinds}

    r["d2h_device_get_s"] = median_s(lambda: np.asarray(jax.device_get(on_dev + 0)), args.reps)

    def async_call():
        y = on_dev + 0
        y.block_until_ready()
        t0 = time.perf_counter()
        y.copy_to_host_async()
        held = time.perf_counter() - t0
        np.asarray(y)
        return held

    async_call()
    held = [async_call() for _ in range(args.reps)]
    r["copy_to_host_async_call_s"] = float(np.median(held))
    r["d2h_async_then_asarray_s"] = median_s(async_call, args.reps)

    if "pinned_host" in kinds:
        pinned = jax.sharding.SingleDeviceSharding(dev, memory_kind="pinned_host")
        hbm = jax.sharding.SingleDeviceSharding(dev, memory_kind="device")
        r["d2h_to_pinned_s"] = median_s(lambda: jax.device_put(on_dev + 0, pinned).block_until_ready(), args.reps)
        p = jax.device_put(on_dev, pinned)
        p.block_until_ready()
        r["pinned_asarray_s"] = median_s(lambda: np.array(p), args.reps)
        r["h2d_from_pinned_s"] = median_s(lambda: jax.device_put(p, hbm).block_until_ready(), args.reps)
        r["numpy_to_pinned_s"] = median_s(lambda: jax.device_put(host, pinned).block_until_ready(), args.reps)
    r["h2d_numpy_s"] = median_s(lambda: jax.device_put(host, dev).block_until_ready(), args.reps)

    dst = np.empty_like(host)
    dsts = [np.empty_like(host) for _ in range(4)]
    k = iter(range(1 << 30))
    r["host_copy_1_thread_s"] = median_s(lambda: np.copyto(dst, host), args.reps)
    r["host_copy_4_threads_s"] = parallel_s(lambda: np.copyto(dsts[next(k) % 4], host), 4, args.reps)
    r["d2h_device_get_4_threads_s"] = parallel_s(lambda: np.asarray(jax.device_get(on_dev + 0)), 4, args.reps)

    r["pipeline"] = pipeline(dev, host, kinds, args.layers)

    lines = [
        f"host copies, one KV layer of {args.tokens} tokens ({nbytes / 1e6:.1f} MB), {dev.device_kind}, "
        f"jax {jax.__version__}; memory kinds {kinds}"
    ]
    for key, v in r.items():
        if key.endswith("_s"):
            per = 4 if "4_threads" in key else 1
            lines.append(f"{key[:-2]:32s} {v * 1e3:8.2f} ms  {per * nbytes / v / 1e9:7.1f} GB/s")
    for name, p in r["pipeline"].items():
        lines.append(
            f"engine step, moving a layer by {name:22s} {p['step_s'] * 1e3:7.2f} ms per step, "
            f"{p['with_moves_s'] * 1e3:7.2f} ms with the moves drained"
        )
    write_report(args.out, f"host_copies_{tag}", r, lines)


if __name__ == "__main__":
    main()

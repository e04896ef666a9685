"""Benchmark of the TensorStore KV-cache store (dualpath_jax.kvstore).

    PYTHONPATH=. python benchmarks/bench_kvstore.py [--out results/bench/] [--data-gb 2]

Measures, on the disk holding --dir (default: a temp dir), in one run:
  1. raw sequential read of one plain file (the disk's speed) versus random hit-block sets read
     through the store (Full Blocks), cold and warm page cache, plus write throughput;
  2. the in-flight window (io_window) sweep, cold and warm;
  3. Layer-Block reads (layerwise path), cold and warm;
  4. a block-size sweep (16/32/64/128 tokens x 61 layers x 656 / 1152 B) to justify the default;
  5. throttle accuracy (bare token bucket, and store reads capped by a throttle).
Prints a table and writes <out>/kvstore_<tag>.json and .txt (tag: gpu if a GPU is visible, else cpu).
"Cold" means the page cache was emptied first: by /proc/sys/vm/drop_caches when permitted, else by
posix_fadvise(DONTNEED) on every file read (the output says which one was achieved).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import write_json  # noqa: E402
from dualpath_jax.atomic import atomic_write  # noqa: E402
from dualpath_jax.kvstore import (
    DEFAULT_IO_WINDOW,
    DEFAULT_TOKENS_PER_BLOCK,
    BlockLayout,  # noqa: E402
    KVStore,
    StoreContext,
    Throttle,
    hashing,  # noqa: E402
)

MB = 1e6
LINES: list[str] = []


def say(msg: str = "") -> None:
    print(msg, flush=True)
    LINES.append(msg)


# ------------------------------------------------------------------------------------ page cache
class Cache:
    method: str | None = None

    @classmethod
    def drop(cls, paths: list[Path]) -> str:
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            cls.method = "drop_caches"
            return cls.method
        except OSError:
            pass
        for p in paths:
            files = [p] if p.is_file() else [q for q in p.rglob("*") if q.is_file()]
            for q in files:
                fd = os.open(q, os.O_RDONLY)
                try:
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
        cls.method = "posix_fadvise_dontneed"
        return cls.method


# ------------------------------------------------------------------------------------ helpers
def machine_info(scratch: Path) -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tensorstore": importlib.metadata.version("tensorstore"),
        "numpy": np.__version__,
        "scratch_dir": str(scratch),
    }
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:  # the filesystem/device holding the scratch dir
        best = ("", "", "")
        for line in open("/proc/mounts"):
            dev, mnt, fs = line.split()[:3]
            if str(scratch).startswith(mnt) and len(mnt) > len(best[1]):
                best = (dev, mnt, fs)
        info["scratch_device"], info["scratch_mount"], info["scratch_fs"] = best
        du = shutil.disk_usage(scratch)
        info["scratch_free_gib"] = round(du.free / 2**30, 1)
    except OSError:
        pass
    info["gpu"] = gpu_name()
    return info


def gpu_name() -> str | None:
    if shutil.which("nvidia-smi"):
        try:
            import subprocess

            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
            ).stdout.strip()
            return out.splitlines()[0] if out else None
        except Exception:  # noqa: BLE001
            return None
    return None


def fill_store(st: KVStore, n_blocks: int, seed: int = 0, batch: int = 16) -> tuple[list[str], float]:
    """Write n_blocks Full Blocks as n_blocks/batch sequences; returns keys and seconds."""
    lay = st.layout
    rng = np.random.default_rng(seed)
    # one random pool, rolled per batch: random-looking bytes without paying the RNG per byte
    pool = rng.integers(0, 256, (batch,) + lay.full_block_shape, dtype=np.uint8)
    keys: list[str] = []
    futs = []
    t0 = time.perf_counter()
    for s in range(0, n_blocks, batch):
        n = min(batch, n_blocks - s)
        toks = np.arange(n * lay.tokens_per_block, dtype=np.int64) + s * 1_000_003
        data = np.roll(pool[:n], s, axis=-1)
        futs.append(st.write(toks, data))
        if len(futs) >= 4:
            keys += futs.pop(0).result().keys
    for f in futs:
        keys += f.result().keys
    return keys, time.perf_counter() - t0


def requests_of(keys: list[str], blocks_per_request: int, rng: random.Random) -> list[list[str]]:
    order = keys[:]
    rng.shuffle(order)
    return [order[i : i + blocks_per_request] for i in range(0, len(order), blocks_per_request)]


class Buffers:
    """Long-lived host buffers, one per request, reused across reads (as a serving node's DRAM
    buffer is): fresh np.empty per read would page-fault every page, which dominates on VMs."""

    def __init__(self) -> None:
        self.bufs: dict[tuple, np.ndarray] = {}

    def get(self, i: int, shape: tuple) -> np.ndarray:
        b = self.bufs.get((i, shape))
        if b is None:
            b = self.bufs[(i, shape)] = np.ones(shape, np.uint8)  # touched once here
        return b


BUFS = Buffers()


def read_full(st: KVStore, reqs: list[list[str]], throttle: Throttle | None = None, verify: bool = True) -> float:
    shapes = [(len(r),) + st.layout.full_block_shape for r in reqs]
    outs = [BUFS.get(i, sh) for i, sh in enumerate(shapes)]
    t0 = time.perf_counter()
    futs = [st.read_blocks(r, throttle=throttle, verify=verify, out=o) for r, o in zip(reqs, outs)]
    for f in futs:
        f.result()
    return time.perf_counter() - t0


def read_layers(st: KVStore, reqs: list[list[str]]) -> float:
    """Layerwise path: every request reads layer 0, 1, ... of its blocks (requests concurrent)."""
    # one buffer per (request, layer): concurrent reads must never share an output buffer
    outs = {
        (i, layer): BUFS.get((i, layer), (len(r),) + st.layout.layer_block_shape)
        for i, r in enumerate(reqs)
        for layer in range(st.layout.layers)
    }
    t0 = time.perf_counter()
    futs = [
        st.read_layer(r, layer, out=outs[i, layer]) for layer in range(st.layout.layers) for i, r in enumerate(reqs)
    ]
    for f in futs:
        f.result()
    return time.perf_counter() - t0


def raw_file(path: Path, nbytes: int) -> None:
    chunk = np.random.default_rng(1).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())


def raw_read(path: Path, bufsize: int = 4 << 20) -> float:
    buf = bytearray(bufsize)
    mv = memoryview(buf)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(mv):
            pass
    return time.perf_counter() - t0


def files_read(files: list[Path], window: int) -> float:
    """Plain reads (os.preadv) of the store's shard files, `window` at a time, in random order:
    what the file-per-block layout allows on this disk without TensorStore."""
    import concurrent.futures as cf

    bufs = [bytearray(os.path.getsize(files[0])) for _ in range(window)]
    free = list(range(window))
    lock = threading.Lock()

    def one(f: Path) -> None:
        with lock:
            k = free.pop()
        try:
            fd = os.open(f, os.O_RDONLY)
            try:
                n = os.fstat(fd).st_size
                mv = memoryview(bufs[k])[:n]
                off = 0
                while off < n:
                    off += os.preadv(fd, [mv[off:]], off)
            finally:
                os.close(fd)
        finally:
            with lock:
                free.append(k)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(window) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - t0


def gbs(nbytes: float, s: float) -> float:
    return nbytes / s / 1e9


# ------------------------------------------------------------------------------------ sections
def section_main(scratch: Path, data_gb: float, reps: int, res: dict, rng: random.Random) -> None:
    lay = BlockLayout.mla(61, "bfloat16", DEFAULT_TOKENS_PER_BLOCK)
    n_blocks = max(32, int(data_gb * 1e9 / lay.full_block_nbytes))
    path = scratch / "main"
    say(
        f"\n== 1. Full-Block reads vs raw sequential read: {lay}, {n_blocks} blocks "
        f"({n_blocks * lay.full_block_nbytes / 1e9:.2f} GB), io_window={DEFAULT_IO_WINDOW}"
    )
    st = KVStore.open(path, lay, capacity_blocks=n_blocks, create=True)
    keys, w_s = fill_store(st, n_blocks)
    total = n_blocks * lay.full_block_nbytes
    res["write"] = {"bytes": total, "seconds": w_s, "GBps": gbs(total, w_s), "file_io_sync": True}
    say(f"write (fsync per block, index fsync per batch): {gbs(total, w_s):.3f} GB/s")
    # raw file of the same size on the same disk
    rawp = scratch / "raw.bin"
    raw_file(rawp, total)
    blocks_per_req = 32  # 2,048 hit tokens per request at 64 tokens/block
    files = sorted((path / "blocks").glob("c.*"))
    shard_bytes = sum(os.path.getsize(f) for f in files)
    read_full(st, requests_of(keys, blocks_per_req, rng))  # allocate and touch the buffers once
    meas: dict[str, list[float]] = {f"{w}_{c}": [] for w in ("raw", "files", "store") for c in ("cold", "warm")}
    for _ in range(reps):  # interleaved, so a noisy neighbour hits raw and store alike
        for what in ("raw", "files", "store"):
            Cache.drop([rawp, path])
            for cache in ("cold", "warm"):
                if what == "raw":
                    v = gbs(total, raw_read(rawp))
                elif what == "files":
                    order = files[:]
                    rng.shuffle(order)
                    v = gbs(shard_bytes, files_read(order, DEFAULT_IO_WINDOW))
                else:
                    v = gbs(total, read_full(st, requests_of(keys, blocks_per_req, rng)))
                meas[f"{what}_{cache}"].append(v)
    say(
        f"{'cache':6} {'raw seq file':>16} {'shard files':>16} {'store':>16} {'store/raw':>10} "
        f"{'store/files':>12}   GB/s, median (best) of {reps}"
    )
    for cache in ("cold", "warm"):
        raw, fil, sto = (meas[f"{w}_{cache}"] for w in ("raw", "files", "store"))
        ratio = float(np.median(sto) / np.median(raw))
        res.setdefault("full_block_read", {})[cache] = {
            "raw_sequential_GBps": raw,
            "shard_files_plain_GBps": fil,
            "store_random_sets_GBps": sto,
            "raw_median": float(np.median(raw)),
            "files_median": float(np.median(fil)),
            "store_median": float(np.median(sto)),
            "store_over_raw": ratio,
            "store_over_files": float(np.median(sto) / np.median(fil)),
            "bytes": total,
            "blocks_per_request": blocks_per_req,
        }
        say(
            f"{cache:6} {np.median(raw):8.3f} ({max(raw):5.3f}) {np.median(fil):8.3f} ({max(fil):5.3f}) "
            f"{np.median(sto):8.3f} ({max(sto):5.3f}) {ratio:10.1%} "
            f"{np.median(sto) / np.median(fil):12.1%}"
        )
    say(
        "raw seq file: one plain file read front to back (4 MiB reads); shard files: the store's own "
        f"files read plainly in random order, {DEFAULT_IO_WINDOW} in flight; store: random sets of "
        f"{blocks_per_req} hit blocks via read_blocks (checksums verified), all requests submitted "
        "at once"
    )
    # checksum cost on warm reads
    nover = max(gbs(total, read_full(st, requests_of(keys, blocks_per_req, rng), verify=False)) for _ in range(2))
    ver = max(gbs(total, read_full(st, requests_of(keys, blocks_per_req, rng))) for _ in range(2))
    buf = np.random.default_rng(0).integers(0, 256, lay.layer_block_nbytes, np.uint8)
    speeds = {}
    for name in ("crc32", "xxh3_64"):
        try:
            fn = hashing.checksum_fn(name)
        except Exception:  # noqa: BLE001 - xxhash not installed
            continue
        t0 = time.perf_counter()
        for _ in range(2000):
            fn(memoryview(buf))
        speeds[name] = 2000 * buf.nbytes / (time.perf_counter() - t0) / 1e9
    res["checksum"] = {
        "store_checksum": st.checksum,
        "warm_read_verify_off_GBps": nover,
        "warm_read_verify_on_GBps": ver,
        "single_thread_GBps": speeds,
    }
    say(
        f"warm reads, best of 2: verify off {nover:.3f} GB/s, {st.checksum} verify on {ver:.3f} GB/s; "
        f"checksum speed, one thread: " + ", ".join(f"{k} {v:.1f} GB/s" for k, v in speeds.items())
    )

    # io_window sweep
    say("\n== 2. in-flight window sweep (Full-Block random sets, half the store; warm: best of 2)")
    say(f"{'window':>8} {'cold GB/s':>10} {'warm GB/s':>10}")
    st.close()
    res["window_sweep"] = []
    half = keys[: max(blocks_per_req, len(keys) // 2)]
    hb = len(half) * lay.full_block_nbytes
    for win in (1, 4, 8, 16, 32, len(half)):
        st = KVStore.open(path, io_window=win)
        Cache.drop([path])
        cold = gbs(hb, read_full(st, requests_of(half, blocks_per_req, rng)))
        warm = max(gbs(hb, read_full(st, requests_of(half, blocks_per_req, rng))) for _ in range(2))
        st.close()
        label = "all" if win == len(half) else str(win)
        res["window_sweep"].append({"io_window": label, "cold_GBps": cold, "warm_GBps": warm})
        say(f"{label:>8} {cold:10.3f} {warm:10.3f}")

    # layer reads
    say("\n== 3. Layer-Block reads (layerwise: each request reads layer 0..60 of its blocks)")
    st = KVStore.open(path)
    sub = keys[: max(8, min(len(keys), int(0.5e9 / lay.full_block_nbytes)))]
    nb = len(sub) * lay.full_block_nbytes
    res["layer_block_read"] = {}
    for cache in ("cold", "warm"):
        Cache.drop([path]) if cache == "cold" else read_layers(st, requests_of(sub, blocks_per_req, rng))
        s = read_layers(st, requests_of(sub, blocks_per_req, rng))
        res["layer_block_read"][cache] = {"bytes": nb, "GBps": gbs(nb, s), "layer_block_bytes": lay.layer_block_nbytes}
        say(f"{cache}: {gbs(nb, s):.3f} GB/s ({lay.layer_block_nbytes} B per Layer Block read)")
    st.close()
    rawp.unlink()
    shutil.rmtree(path)
    BUFS.bufs.clear()


def section_block_sweep(scratch: Path, sweep_mb: float, res: dict, rng: random.Random) -> None:
    say(
        f"\n== 4. block-size sweep: 61 layers, ~{sweep_mb:.0f} MB per config, requests of 2,048 "
        f"tokens, cold = page cache emptied"
    )
    say(
        f"{'T':>4} {'B/tok':>6} {'Full MB':>8} {'Layer KB':>9} {'write':>7} {'full cold':>10} "
        f"{'full warm':>10} {'layer cold':>11} {'layer warm':>11}   (GB/s)"
    )
    res["block_sweep"] = []
    for bpt in (656, 1152):
        for T in (16, 32, 64, 128):
            lay = BlockLayout(61, bpt, T)
            n = max(16, int(sweep_mb * 1e6 / lay.full_block_nbytes))
            path = scratch / f"sweep_{T}_{bpt}"
            st = KVStore.open(path, lay, capacity_blocks=n, create=True)
            keys, w_s = fill_store(st, n, batch=max(1, 1024 // T))
            total = n * lay.full_block_nbytes
            per_req = max(1, 2048 // T)
            Cache.drop([path])
            fc = gbs(total, read_full(st, requests_of(keys, per_req, rng)))
            fw = gbs(total, read_full(st, requests_of(keys, per_req, rng)))
            sub = keys[: max(per_req, len(keys) // 4)]
            nb = len(sub) * lay.full_block_nbytes
            Cache.drop([path])
            lc = gbs(nb, read_layers(st, requests_of(sub, per_req, rng)))
            lw = gbs(nb, read_layers(st, requests_of(sub, per_req, rng)))
            row = {
                "tokens_per_block": T,
                "bytes_per_token": bpt,
                "full_block_MB": lay.full_block_nbytes / MB,
                "layer_block_KB": lay.layer_block_nbytes / 1e3,
                "write_GBps": gbs(total, w_s),
                "full_cold_GBps": fc,
                "full_warm_GBps": fw,
                "layer_cold_GBps": lc,
                "layer_warm_GBps": lw,
                "bytes": total,
            }
            res["block_sweep"].append(row)
            say(
                f"{T:4d} {bpt:6d} {row['full_block_MB']:8.2f} {row['layer_block_KB']:9.1f} "
                f"{row['write_GBps']:7.3f} {fc:10.3f} {fw:10.3f} {lc:11.3f} {lw:11.3f}"
            )
            st.close()
            shutil.rmtree(path)
            BUFS.bufs.clear()


def section_throttle(res: dict) -> None:
    say("\n== 5. throttle accuracy (4 threads share one Throttle, ~1 s each)")
    say(f"{'rate':>12} {'chunk':>8} {'elapsed s':>10} {'achieved/rate':>14}")
    res["throttle"] = []
    for rate, chunk in ((8e6, 64 << 10), (1e9, 4 << 20), (50e9, 4_497_408)):  # last: 400 Gbps
        th = Throttle(rate)
        total = int(rate * 1.0)
        n = total // chunk
        per = [n // 4 + (1 if k < n % 4 else 0) for k in range(4)]
        bar = threading.Barrier(5)

        def worker(m: int) -> None:
            bar.wait()
            for _ in range(m):
                th.acquire(chunk)

        ts = [threading.Thread(target=worker, args=(m,)) for m in per]
        for t in ts:
            t.start()
        bar.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join()
        el = time.perf_counter() - t0
        achieved = n * chunk / el / rate
        res["throttle"].append({"rate_Bps": rate, "chunk": chunk, "elapsed_s": el, "achieved_over_rate": achieved})
        say(f"{rate / 1e9:9.3f} GB/s {chunk:8d} {el:10.4f} {achieved:14.4f}")


def section_throttled_store(scratch: Path, res: dict, rng: random.Random) -> None:
    lay = BlockLayout.mla(61, "bfloat16", DEFAULT_TOKENS_PER_BLOCK)
    n = 64
    st = KVStore.open(scratch / "thr", lay, capacity_blocks=n, create=True)
    keys, _ = fill_store(st, n)
    total = n * lay.full_block_nbytes
    read_full(st, requests_of(keys, 32, rng))  # warm
    free = gbs(total, read_full(st, requests_of(keys, 32, rng)))
    cap = 0.5 * free * 1e9
    nic = Throttle(cap, name="emulated-snic")
    reps = max(1, int(np.ceil(cap * 1.0 / total)))  # ~1 s of throttled reading
    t0 = time.perf_counter()
    for _ in range(reps):
        read_full(st, requests_of(keys, 32, rng), throttle=nic)
    el = time.perf_counter() - t0
    got = reps * total / el
    res["throttled_store_read"] = {
        "unthrottled_warm_GBps": free,
        "cap_GBps": cap / 1e9,
        "achieved_GBps": got / 1e9,
        "achieved_over_cap": got / cap,
        "seconds": el,
    }
    say(
        f"store warm reads through a Throttle at 50% of their free speed: cap {cap / 1e9:.3f} GB/s, "
        f"achieved {got / 1e9:.3f} GB/s ({got / cap:.4f} of cap, {el:.2f} s)"
    )
    st.close()
    shutil.rmtree(scratch / "thr")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/bench/")
    ap.add_argument("--dir", default=None, help="scratch dir on the disk to measure (default: temp)")
    ap.add_argument("--data-gb", type=float, default=2.0, help="store size for sections 1-3")
    ap.add_argument("--sweep-mb", type=float, default=384, help="data per block-size config")
    ap.add_argument("--tag", default=None, help="output name kvstore_<tag> (default cpu/gpu)")
    ap.add_argument("--reps", type=int, default=5, help="repeats of the raw-vs-store comparison")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="bench_kvstore_", dir=args.dir))
    tag = args.tag or ("gpu" if gpu_name() else "cpu")
    res: dict = {
        "machine": machine_info(scratch),
        "context": StoreContext().to_json(),
        "default_tokens_per_block": DEFAULT_TOKENS_PER_BLOCK,
        "default_io_window": DEFAULT_IO_WINDOW,
    }
    res["loadavg_start"] = os.getloadavg()
    t0 = time.time()
    say(f"KV store benchmark ({tag}): {json.dumps(res['machine'])}")
    try:
        section_main(scratch, args.data_gb, args.reps, res, rng)
        section_block_sweep(scratch, args.sweep_mb, res, rng)
        section_throttle(res)
        section_throttled_store(scratch, res, rng)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    res["cold_cache_method"] = Cache.method
    res["loadavg_end"] = os.getloadavg()
    res["wall_s"] = time.time() - t0
    say(
        f"\ncold cache achieved by: {Cache.method}; warm = the same bytes read just before. "
        f"Total {res['wall_s']:.0f} s. Load average at start {res['loadavg_start'][0]:.2f}, "
        f"at end {res['loadavg_end'][0]:.2f} (counts this run's own I/O threads too)."
    )
    out = Path(args.out)
    write_json(out / f"kvstore_{tag}.json", res, indent=2)
    atomic_write(out / f"kvstore_{tag}.txt", "\n".join(LINES) + "\n")
    print(f"wrote {out / f'kvstore_{tag}.json'} and .txt")


if __name__ == "__main__":
    main()

"""The real testbed, 1P1D on two GPUs: Basic vs DualPath vs Oracle in one call.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/bench_testbed.py --out results/bench/

Steps (all in this one process):
1. Build the testbed (by default the first 8 layers of `dsv3_e32`, DeepSeek-V3 shapes with 32
   routed experts; one copy of the weights per GPU; a TensorStore memory-driver KV store) and a uniform agent workload: each agent starts with `--preload`
   tokens of KV in the store; each turn appends `--append` tokens and generates `--gen`.
2. Measure, before the timed runs: the store's uncapped read rate, a GPU->GPU copy (idle, and
   while either GPU has compute queued) and an H2D copy of one layer's worth of KV, and the oracle's PE busy time for this workload (an untimed
   oracle pass that also compiles every shape).
3. Set the emulated storage NIC so that reading every turn's hit KV through one node takes
   `--ratio` times the PE compute (about 2: Basic's PE GPU is busy under half the time).
4. Timed runs, for each `--ratio`: basic, dualpath, oracle. Report JCT, speedups, GPU busy per engine, bytes per
   link, DE->PE transfer throughput against the standalone D2D copy.
   With --profile, run dualpath once more under the JAX profiler and time its DE->PE copies on the
   GPU against plain copies of the same sizes (gpu_trace.py): the host only sees a copy end when a
   thread wakes up to look.
5. Simulate the same setup with the measured rates and report each system's JCT error.
Writes testbed_<tag>[_r<ratio>].json and .txt under --out (the ratio suffix when several are given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.report import write_report  # noqa: E402
from dualpath_jax.config import (
    ClusterSpec,
    ExperimentConfig,
    HardwareSpec,
    SimSpec,  # noqa: E402
    SystemSpec,
    TrackingSpec,
    WorkloadSpec,
    from_dict,
    to_dict,
)
from dualpath_jax.kvstore import KVStore  # noqa: E402
from dualpath_jax.paths import load_named  # noqa: E402
from dualpath_jax.serving import (  # noqa: E402
    Testbed,
    TestbedSpec,
    kvcodec,  # noqa: E402
)
from dualpath_jax.serving.simcheck import simulate  # noqa: E402
from dualpath_jax.workload import Trajectory, Turn  # noqa: E402


def workload(agents: int, turns: int, preload: int, append: int, gen: int) -> list[Trajectory]:
    out = []
    for a in range(agents):
        ctx, tl = preload, []
        for _ in range(turns):
            tl.append(Turn(input=ctx + append, cached=ctx, output=gen))
            ctx += append + gen
        out.append(Trajectory(f"agent{a}", tuple(tl)))
    return out


def timed_copy(x, dst, reps=5) -> float:
    """Median seconds of jax.device_put(x, dst) (blocked)."""
    ts = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        jax.device_put(x, dst).block_until_ready()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts[1:]))


def copy_while_busy(x, dst, busy_dev) -> float:
    """Seconds of jax.device_put(x, dst) issued while `busy_dev` runs ~0.1 s of queued matmuls:
    about the idle copy time if the copy runs beside that work, longer if it is ordered after it."""
    a = jax.device_put(np.ones((8192, 8192), np.float32), busy_dev).astype(jax.numpy.bfloat16)
    mm = jax.jit(lambda m: (m @ m) * 1e-4)
    mm(a).block_until_ready()
    t0 = time.perf_counter()
    mm(a).block_until_ready()
    one = time.perf_counter() - t0
    ts = []
    for _ in range(3):
        y = a
        for _ in range(max(1, int(0.1 / max(one, 1e-4)))):
            y = mm(y)
        t0 = time.perf_counter()
        jax.device_put(x, dst).block_until_ready()
        ts.append(time.perf_counter() - t0)
        y.block_until_ready()
    return float(np.median(ts))


def store_read_rate(tb: Testbed, nbytes_target: float) -> float:
    """Uncapped read rate (B/s) of the testbed's kind of store (memory driver, or files under
    `store_path`) with two concurrent readers."""
    mcfg, bt = tb.mcfg, tb.spec.tokens_per_block
    layout = kvcodec.block_layout(mcfg, bt)
    n = max(2, int(nbytes_target // layout.full_block_nbytes))
    where = None
    if tb.spec.store_path:
        Path(tb.spec.store_path).mkdir(parents=True, exist_ok=True)
        where = tempfile.mkdtemp(prefix="probe-", dir=tb.spec.store_path)
    store = KVStore.open(where, layout, capacity_blocks=2 * n + 8, create=True, io_window=tb.spec.io_window)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, size=n * bt, dtype=np.int32)
    blocks = rng.integers(0, 255, size=(n,) + layout.full_block_shape, dtype=np.uint8)
    store.write(ids, blocks).result()
    keys = store.lookup(ids).keys
    half = n // 2
    store.read_blocks(keys).result()  # warm
    t0 = time.perf_counter()
    f1, f2 = store.read_blocks(keys[:half]), store.read_blocks(keys[half:])
    f1.result(), f2.result()
    rate = n * layout.full_block_nbytes / (time.perf_counter() - t0)
    store.close()
    if where:
        shutil.rmtree(where, ignore_errors=True)
    return rate


def transfer_figures(dp, refs: dict, tb: Testbed, de_dev, pe_dev) -> dict:
    """DE->PE throughput of the dualpath run `dp`, against plain D2D copies of the same sizes made now."""
    if dp is None:
        return {}
    d2d_b = sum(v for k, v in dp.link_bytes.items() if k.startswith("d2d"))
    d2d_t = sum(v for k, v in dp.link_seconds.items() if k.startswith("d2d"))
    stage_t = sum(v for k, v in dp.link_seconds.items() if k.startswith("de_h2d_stage"))
    transfer = {
        "de_to_pe_bytes": d2d_b,
        "d2d_hop_GBps": d2d_b / d2d_t / 1e9 if d2d_t else 0.0,
        "de_stage_h2d_GBps": d2d_b / stage_t / 1e9 if stage_t else 0.0,
        "de_dram_to_pe_gpu_GBps": d2d_b / (d2d_t + stage_t) / 1e9 if d2d_t else 0.0,
    }
    transfer["d2d_hop_vs_d2d_copy"] = transfer["d2d_hop_GBps"] / refs["d2d_layer_GBps"]
    transfer["de_path_vs_d2d_copy"] = transfer["de_dram_to_pe_gpu_GBps"] / refs["d2d_layer_GBps"]
    # the same hops as plain copies, now, on the same devices: one [1, tokens, D] array per size
    ref_t, sizes = 0.0, {}
    width = tb.mcfg.cache_width
    for nb, (count, secs) in dp.hop_sizes.items():
        tokens = int(nb) // tb.mcfg.kv_bytes_per_token_layer()
        x = jax.device_put(np.ones((1, tokens, width), kvcodec.np_dtype(tb.mcfg)), de_dev)
        t = timed_copy(x, pe_dev)
        sizes[nb] = {
            "hops": count,
            "hop_s_mean": secs / count,
            "copy_s": t,
            "hop_GBps": int(nb) * count / secs / 1e9,
            "copy_GBps": int(nb) / t / 1e9,
        }
        ref_t += count * t
        del x
    transfer["hop_sizes"] = sizes
    transfer["same_size_copy_GBps"] = d2d_b / ref_t / 1e9 if ref_t else 0.0
    transfer["d2d_hop_vs_same_size_copy"] = ref_t / d2d_t if d2d_t else 0.0
    return transfer


def profiled_hops(tb: Testbed, system, dp, de_dev, pe_dev, where: Path) -> dict:
    """Run `system` again under the profiler, then plain D2D copies of its hop sizes under a second
    trace; the GPU's own memcpy durations of both, grouped by kind and size (gpu_trace.py)."""
    from benchmarks import gpu_trace

    run_dir, ref_dir = where / "run", where / "copies"
    with jax.profiler.trace(str(run_dir)):
        m = tb.run_system(system)
    width = tb.mcfg.cache_width
    with jax.profiler.trace(str(ref_dir)):
        for nb in dp.hop_sizes:
            tokens = int(nb) // tb.mcfg.kv_bytes_per_token_layer()
            x = jax.device_put(np.ones((1, tokens, width), kvcodec.np_dtype(tb.mcfg)), de_dev)
            x.block_until_ready()
            timed_copy(x, pe_dev)
    run_ev, ref_ev = gpu_trace.copy_events(run_dir), gpu_trace.copy_events(ref_dir)
    shutil.rmtree(where, ignore_errors=True)  # ~100 MB; the figures below are what is kept
    return {
        "profiled_jct_s": m.jct_s,
        **gpu_trace.hop_vs_copy(
            gpu_trace.device_copies(run_ev, dp.hop_sizes), gpu_trace.device_copies(ref_ev, dp.hop_sizes)
        ),
        "run_copies": gpu_trace.by_kind_and_size(run_ev),
        "plain_copies": gpu_trace.by_kind_and_size(ref_ev),
    }


def report_lines(args, tb, devs, cap, hit_bytes, pe_compute, results, failed, comp, refs, transfer, sim) -> list[str]:
    lines = [
        f"testbed 1P1D, {tb.mcfg.name} ({tb.mcfg.n_layers} layers, {tb.mcfg.dtype}) on "
        f"{len(devs)} x {devs[0].device_kind}, jax {jax.__version__}",
        f"workload: {args.agents} agents x {args.turns} turns, preload {args.preload}, append "
        f"{args.append}, gen {args.gen}, blocks of {args.bt} tokens; SNIC cap {cap / 1e9:.3f} GB/s "
        f"per node (ratio {hit_bytes / cap / pe_compute:.2f} of PE compute); read checksums "
        f"{'on' if tb.spec.verify_reads else 'off'}",
        f"{'system':10s} {'JCT s':>8s} {'vs basic':>9s} {'vs oracle':>10s} {'PE busy':>8s} "
        f"{'DE busy':>8s} {'read PE GB':>10s} {'read DE GB':>10s} {'TTFT s':>7s} "
        f"{'SNIC PE':>8s} {'SNIC DE':>8s}",
    ]
    for n, m in results.items():
        lines.append(
            f"{n:10s} {m.jct_s:8.2f} {comp[n]['speedup_vs_basic']:8.2f}x "
            f"{comp[n]['gap_to_oracle']:+9.1%} {m.prefill_gpu_util:8.1%} {m.decode_gpu_busy:8.1%} "
            f"{m.bytes_read_pe_nodes / 1e9:10.2f} {m.bytes_read_de_nodes / 1e9:10.2f} "
            f"{m.ttft_s['mean']:7.3f} {m.snic_util_pe:8.1%} {m.snic_util_de:8.1%}"
        )
    for n, e in failed.items():
        lines.append(f"{n:10s} FAILED {e}")
    for n, m in results.items():
        lines.append(
            f"{n}: mean seconds per turn in each stage: " + ", ".join(f"{k} {v:.3f}" for k, v in m.stages_s.items())
        )
    for n, m in results.items():
        for pe, t in m.pe_time_s.items():
            lines.append(
                f"{n}: {pe} thread seconds: "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(t.items()))
                + f" (of {m.wall_s:.2f})"
            )
    for n, m in results.items():
        pace = [
            f"{nic} {p['late']}/{p['transfers']} late ({p['late_s']:.1f} s)"
            for nic, p in m.nic_pace.items()
            if p["transfers"]
        ]
        if pace:
            lines.append(f"{n}: block transfers slower than their NIC's link time (store-paced): {'; '.join(pace)}")
    lines.append(
        f"references: D2D {refs['d2d_layer_GBps']:.1f} GB/s (one layer of 16K tokens; 256 MiB: "
        f"{refs['d2d_256MiB_GBps']:.1f}; the layer while the source GPU computes "
        f"{refs['d2d_layer_src_busy_GBps']:.1f}, while the destination GPU computes "
        f"{refs['d2d_layer_dst_busy_GBps']:.1f}), H2D {refs['h2d_layer_GBps']:.1f} GB/s, store read "
        f"{refs['store_read_GBps']:.2f} GB/s uncapped"
    )
    if transfer:
        lines.append(
            f"DE->PE in dualpath: D2D hop {transfer['d2d_hop_GBps']:.1f} GB/s "
            f"({transfer['d2d_hop_vs_same_size_copy']:.0%} of plain D2D copies of the same sizes, "
            f"{transfer['same_size_copy_GBps']:.1f} GB/s; "
            f"{transfer['d2d_hop_vs_d2d_copy']:.0%} of the 16K-token layer copy); staging H2D "
            f"{transfer['de_stage_h2d_GBps']:.1f} GB/s; DE DRAM -> PE GPU "
            f"{transfer['de_dram_to_pe_gpu_GBps']:.1f} GB/s"
        )
        if "gpu" in transfer:
            g = transfer["gpu"]
            lines.append(
                f"DE->PE on the GPU (profiler, a second dualpath run): {g['hops']} hops at "
                f"{g['hop_GBps']:.1f} GB/s vs plain copies of the same sizes {g['copy_GBps']:.1f} "
                f"GB/s = {g['hop_vs_copy']:.0%}"
            )
        for nb, r in transfer["hop_sizes"].items():
            lines.append(
                f"  hop {int(nb) / 1e6:.1f} MB x{r['hops']:.0f}: {r['hop_GBps']:.1f} GB/s vs copy "
                f"{r['copy_GBps']:.1f} GB/s"
            )
    if "error" not in sim:
        for n, r in sim.items():
            if not n.startswith("_"):
                lines.append(
                    f"simulator {n}: JCT {r['sim_jct_s']:.2f}s vs testbed {r['testbed_jct_s']:.2f}s ({r['error']:+.1%})"
                )
    else:
        lines.append(f"simulator: {sim['error']}")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--model", default="dsv3_e32")
    ap.add_argument("--layers", type=int, default=8, help="0: all of the model's layers")
    ap.add_argument("--agents", type=int, default=16)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--preload", type=int, default=24576)
    ap.add_argument("--append", type=int, default=4088)
    ap.add_argument("--gen", type=int, default=8)
    ap.add_argument("--bt", type=int, default=256)
    ap.add_argument(
        "--ratio",
        type=float,
        nargs="+",
        default=[2.0, 1.8],
        help="one-node read time / PE compute; several: one set of timed runs (and files "
        "testbed_<tag>_r<ratio>) per value after one calibration",
    )
    ap.add_argument(
        "--store-frac",
        type=float,
        default=0.4,
        help="cap each node's SNIC at this share of the store's measured read rate, so "
        "two nodes reading at once stay below what the one real store can serve",
    )
    ap.add_argument("--io-window", type=int, default=16)
    ap.add_argument(
        "--store-path",
        default="",
        help="a directory for a file-backed store (e.g. on /dev/shm); default: TensorStore's memory driver",
    )
    ap.add_argument(
        "--verify",
        nargs="+",
        choices=("on", "off"),
        default=["on"],
        help="check read blocks' checksums; several: one set of timed runs per value",
    )
    ap.add_argument("--snic-gbps", type=float, default=0.0, help="fix the cap instead of --ratio")
    ap.add_argument("--store-probe-gb", type=float, default=2.0, help="bytes read to measure the store")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after the timed runs, run dualpath again under the JAX profiler and time its "
        "DE->PE copies on the GPU against plain copies of the same sizes (gpu_trace.py)",
    )
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    devs = jax.devices()
    tag = args.tag or ("h200x2" if devs[0].platform == "gpu" and "H200" in devs[0].device_kind else devs[0].platform)
    print(f"devices: {devs}", flush=True)

    cluster = from_dict(ClusterSpec, load_named("cluster", "testbed_1p1d"))
    sysyaml = load_named("system", "paper")["system"]
    systems = tuple(SystemSpec(name=k, **v) for k, v in sysyaml.items())
    agents = workload(args.agents, args.turns, args.preload, args.append, args.gen)
    final = args.preload + args.turns * (args.append + args.gen)
    cfg = ExperimentConfig(
        model=None,  # the testbed serves testbed.model
        cluster=cluster,
        hardware=from_dict(HardwareSpec, load_named("hardware", "h800")),
        workload=WorkloadSpec(source="synthetic", agents=args.agents, mal=final, mal_label=str(final)),
        systems=systems,
        sim=SimSpec(progress=False, prefill_batch_tokens=args.append),
        tracking=TrackingSpec(wandb=False),
        backend="real",
    )
    spec = TestbedSpec(
        model=args.model,
        n_layers=args.layers,
        tokens_per_block=args.bt,
        capacity_blocks=args.agents * (final // args.bt + 2) + 64,
        max_prefill_batch=1,
        max_decode_batch=args.agents,
        max_context=final,
        io_window=args.io_window,
        store_path=args.store_path,
    )
    tb = Testbed(cfg, spec, agents)
    print(
        f"model {tb.mcfg.name} x{tb.mcfg.n_layers} layers on {len(tb.devices)} devices; "
        f"init {tb.init_s:.1f}s; KV {tb.kvb} B/token",
        flush=True,
    )

    # ---- link references measured in this run --------------------------------------------------
    pe_dev, de_dev = tb.devices[tb.pe_ids[0]], tb.devices[tb.de_ids[0]]
    layer_bytes = 16384 * tb.mcfg.kv_bytes_per_token_layer()  # one layer of a 16K-token prefix
    host = np.ones((16384, tb.mcfg.cache_width), kvcodec.np_dtype(tb.mcfg))
    on_de = jax.device_put(host, de_dev)
    d2d_s = timed_copy(on_de, pe_dev)
    h2d_s = timed_copy(host, pe_dev)
    big = jax.device_put(np.ones((256, 1 << 20), np.uint8), de_dev)  # 256 MiB
    d2d_big_s = timed_copy(big, pe_dev)
    # is a D2D copy ordered after work queued on the source (DE) or destination (PE) device?
    d2d_src_busy_s, d2d_dst_busy_s = copy_while_busy(on_de, pe_dev, de_dev), copy_while_busy(on_de, pe_dev, pe_dev)
    refs = {
        "d2d_layer_src_busy_GBps": layer_bytes / d2d_src_busy_s / 1e9,
        "d2d_layer_dst_busy_GBps": layer_bytes / d2d_dst_busy_s / 1e9,
    }
    refs |= {
        "layer_bytes": layer_bytes,
        "d2d_layer_GBps": layer_bytes / d2d_s / 1e9,
        "h2d_layer_GBps": layer_bytes / h2d_s / 1e9,
        "d2d_256MiB_GBps": big.nbytes / d2d_big_s / 1e9,
    }
    del big, on_de
    refs["store_read_GBps"] = store_read_rate(tb, args.store_probe_gb * 1e9) / 1e9
    print("references:", json.dumps(refs), flush=True)

    # ---- calibrate the storage cap from the oracle's PE compute ---------------------------------
    by = {s.name: s for s in systems}
    t0 = time.perf_counter()
    tb.cluster = None
    cal = tb.run_system(by["oracle"])  # also compiles every shape (warm-up)
    pe_compute = cal.compute_bound_s
    hit_bytes = sum(t.cached // args.bt * args.bt for a in agents for t in a.turns) * tb.kvb
    print(
        f"calibration oracle run {time.perf_counter() - t0:.1f}s: PE compute {pe_compute:.2f}s, "
        f"hit KV {hit_bytes / 1e9:.2f} GB",
        flush=True,
    )
    for ratio, verify in [(r, v) for v in args.verify for r in args.ratio]:
        name = tag + ("" if len(args.ratio) == 1 else f"_r{ratio:g}") + ("" if verify == "on" else "_noverify")
        tb.spec = replace(tb.spec, verify_reads=verify == "on")
        cap = args.snic_gbps * 1e9 / 8 if args.snic_gbps else hit_bytes / (ratio * pe_compute)
        store_cap = args.store_frac * refs["store_read_GBps"] * 1e9
        if not args.snic_gbps and cap > store_cap:
            print(
                f"SNIC cap {cap / 1e9:.3f} GB/s from --ratio exceeds {args.store_frac} of the store's "
                f"read rate; using {store_cap / 1e9:.3f} GB/s",
                flush=True,
            )
            cap = store_cap
        print(f"ratio {ratio:g}: SNIC cap {cap / 1e9:.3f} GB/s", flush=True)
        cluster = replace(cluster, snic_gbps=cap * 8 / 1e9)
        cfg = replace(cfg, cluster=cluster)
        tb.cfg = cfg

        results, failed = {}, {}
        for s in systems:
            t0 = time.perf_counter()
            try:
                m = tb.run_system(s)
            except Exception as e:  # keep the other systems' figures
                failed[s.name] = repr(e)
                print(f"{s.name}: FAILED {e!r}", flush=True)
                continue
            results[s.name] = m
            print(
                f"{s.name}: JCT {m.jct_s:.2f}s (run {time.perf_counter() - t0:.1f}s) busy {m.gpu_busy} "
                f"read PE {m.bytes_read_pe_nodes / 1e9:.2f} GB DE {m.bytes_read_de_nodes / 1e9:.2f} GB",
                flush=True,
            )

        transfer = transfer_figures(results.get("dualpath"), refs, tb, de_dev, pe_dev)
        comp = {
            n: {
                "speedup_vs_basic": results["basic"].jct_s / m.jct_s if "basic" in results else 0.0,
                "gap_to_oracle": m.jct_s / results["oracle"].jct_s - 1.0 if "oracle" in results else 0.0,
            }
            for n, m in results.items()
        }

        if args.profile and "dualpath" in results and ratio == args.ratio[0]:
            transfer["gpu"] = profiled_hops(
                tb, by["dualpath"], results["dualpath"], de_dev, pe_dev, out / f"trace_{name}"
            )
        try:
            sim = simulate(
                cfg,
                tb,
                results,
                cnic_bytes_per_s=transfer.get("de_dram_to_pe_gpu_GBps", 0.0) * 1e9 or refs["d2d_layer_GBps"] * 1e9,
                hbm_gb=141.0 if "H200" in devs[0].device_kind else 80.0,
            )
        except Exception as e:  # the GPU figures above stand on their own
            sim = {"error": repr(e)}
        doc = {
            "device": {
                "kind": devs[0].device_kind,
                "platform": devs[0].platform,
                "count": len(devs),
                "jax": jax.__version__,
                "python": platform.python_version(),
                "host": platform.node(),
            },
            "args": vars(args),
            "testbed": to_dict(spec),
            "cluster": to_dict(cluster),
            "model": {
                "name": tb.mcfg.name,
                "layers": tb.mcfg.n_layers,
                "dtype": tb.mcfg.dtype,
                "kv_bytes_per_token": tb.kvb,
            },
            "init_s": tb.init_s,
            "warmup_s": tb.warm_s,
            "calibration": {"oracle_pe_compute_s": pe_compute, "hit_bytes": hit_bytes, "snic_Bps": cap},
            "references": refs,
            "transfer": transfer,
            "comparison": comp,
            "systems": {n: m.as_dict() for n, m in results.items()},
            "failed": failed,
            "simulator": sim,
            "ratio": ratio,
            "verify_reads": verify == "on",
            "wall_s": time.perf_counter() - t_start,
        }
        lines = report_lines(args, tb, devs, cap, hit_bytes, pe_compute, results, failed, comp, refs, transfer, sim)
        write_report(out, f"testbed_{name}", doc, lines, sort_keys=True, default=float)


if __name__ == "__main__":
    main()

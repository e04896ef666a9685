"""Single-side vs split reads on the testbed (CPU) and in the simulator, on one tiny setup.

    PYTHONPATH=. python benchmarks/split_reads.py --out results/bench/

Steps (one process, CPU by default: two fake devices make the 1P1D testbed):
1. The tiny model (`testbed.model=tiny`) on `testbed_1p1d`, a uniform workload (each agent starts
   with `--preload` tokens of KV in the store, each turn appends `--append` and generates `--gen`).
2. An untimed oracle pass measures the PE compute; the emulated SNIC is set so that reading all
   hit KV through one node takes `--ratio` x that compute (reads matter, as on the GPU bench).
3. Timed runs, `--repeats` times each: basic, dualpath (every read through one side: the shorter
   queue, the paper's rule), dualpath_split (the policy's share through each side, in whole blocks;
   `split_read: true`), oracle.
4. The simulator on the same setup with the testbed's measured rates (`serving.simcheck`).
Writes split_reads_<tag>.json (every run's metrics, the config, the code) and .txt (the table).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jax  # noqa: E402

from benchmarks.bench_testbed import workload  # noqa: E402
from benchmarks.report import machine, write_report  # noqa: E402
from dualpath_jax.config import (  # noqa: E402
    ClusterSpec,
    ExperimentConfig,
    HardwareSpec,
    SimSpec,
    SystemSpec,
    TrackingSpec,
    WorkloadSpec,
    from_dict,
    to_dict,
)
from dualpath_jax.paths import load_named  # noqa: E402
from dualpath_jax.results import code_info  # noqa: E402
from dualpath_jax.serving import Testbed, TestbedSpec  # noqa: E402
from dualpath_jax.serving.simcheck import simulate  # noqa: E402

# the systems compared, by name in configs/system/ (the split one is `schedulers`' dualpath_split)
SYSTEMS = (("paper", "basic"), ("paper", "dualpath"), ("schedulers", "dualpath_split"), ("paper", "oracle"))
LINKS = ("snic_read[0]", "snic_read[1]", "pe_cnic_in[0]", "d2d[1->0]", "pe_cnic_out[0]", "de_cnic_in[1]")


def systems() -> tuple[SystemSpec, ...]:
    return tuple(SystemSpec(name=n, **load_named("system", f)["system"][n]) for f, n in SYSTEMS)


def median_run(runs: list):
    """The run whose JCT is the median of the repeats (an odd count: one of them)."""
    return sorted(runs, key=lambda m: m.jct_s)[len(runs) // 2]


def table(args, cap, ratio, runs: dict, sim: dict) -> list[str]:
    mb = 1e6
    lines = [
        f"split vs single-side reads: testbed 1P1D, tiny model on {machine()}, jax {jax.__version__}",
        f"workload: {args.agents} agents x {args.turns} turns, preload {args.preload}, append {args.append}, "
        f"gen {args.gen}, blocks of {args.bt} tokens; SNIC cap {cap / mb:.3f} MB/s per node (one-node read "
        f"= {ratio:.2f} x the oracle's PE compute); testbed: median of {args.repeats} runs",
        f"{'system':15s} {'world':8s} {'JCT s':>7s} {'JCT range s':>13s} {'read PE MB':>10s} {'read DE MB':>10s} "
        f"{'SNIC PE':>8s} {'SNIC DE':>8s} {'SNIC max/avg':>12s}",
    ]
    for name, ms in runs.items():
        m = median_run(ms)
        jcts = sorted(x.jct_s for x in ms)
        lines.append(
            f"{name:15s} {'testbed':8s} {m.jct_s:7.3f} {jcts[0]:6.3f}-{jcts[-1]:6.3f} "
            f"{m.bytes_read_pe_nodes / mb:10.3f} {m.bytes_read_de_nodes / mb:10.3f} {m.snic_util_pe:8.1%} "
            f"{m.snic_util_de:8.1%} {m.snic_read_max_avg:12.3f}"
        )
        s = sim.get(name)
        if s:
            lines.append(
                f"{'':15s} {'sim':8s} {s['sim_jct_s']:7.3f} {s['error']:+12.1%} "
                f"{s['sim_bytes_read_pe_nodes'] / mb:10.3f} {s['sim_bytes_read_de_nodes'] / mb:10.3f} "
                f"{s['sim_snic_util_pe']:8.1%} {s['sim_snic_util_de']:8.1%} {s['sim_snic_read_max_avg']:12.3f}"
            )
    lines.append("(sim row: the JCT range column is the simulator's error against the testbed's median)")
    lines.append("testbed bytes per link, measured / plan_turn's plan for the same placements (MB):")
    for name, ms in runs.items():
        m = median_run(ms)
        plan = {**m.plan_bytes, "snic_read[0]": m.plan_bytes.get("snic_read_pe_read", 0.0)}
        plan["snic_read[1]"] = m.plan_bytes.get("snic_read_de_read", 0.0)
        plan["pe_cnic_in[0]"], plan["pe_cnic_out[0]"] = (
            m.plan_bytes.get("pe_cnic_in", 0),
            m.plan_bytes.get("pe_cnic_out", 0),
        )
        plan["de_cnic_in[1]"] = m.plan_bytes.get("de_cnic_in", 0.0)
        cells = []
        for link in LINKS:
            got = m.link_bytes.get(link, 0.0)
            want = "" if link.startswith("d2d") else f"/{plan[link] / mb:.3f}"
            cells.append(f"{link} {got / mb:.3f}{want}")
        lines.append(f"  {name}: " + ", ".join(cells))
    split = median_run(runs["dualpath_split"])
    both = sum(1 for r in split.timeline if 0 < r["de_hit"] < r["hit"])
    lines.append(f"dualpath_split: {both} of {len(split.timeline)} turns read through both nodes")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--preload", type=int, default=512)
    ap.add_argument("--append", type=int, default=64)
    ap.add_argument("--gen", type=int, default=8)
    ap.add_argument("--bt", type=int, default=16)
    ap.add_argument("--ratio", type=float, default=2.0, help="one-node read time / the oracle's PE compute")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args(argv)
    t_start, code = time.perf_counter(), code_info()
    cluster = from_dict(ClusterSpec, load_named("cluster", "testbed_1p1d"))
    agents = workload(args.agents, args.turns, args.preload, args.append, args.gen)
    final = args.preload + args.turns * (args.append + args.gen)
    cfg = ExperimentConfig(
        model=None,
        cluster=cluster,
        hardware=from_dict(HardwareSpec, load_named("hardware", "h800")),
        workload=WorkloadSpec(source="synthetic", agents=args.agents, mal=final, mal_label=str(final)),
        systems=systems(),
        sim=SimSpec(progress=False, prefill_batch_tokens=args.append),
        tracking=TrackingSpec(wandb=False),
        backend="real",
    )
    spec = TestbedSpec(
        model="tiny",
        tokens_per_block=args.bt,
        max_prefill_batch=1,
        max_decode_batch=args.agents,
        max_context=final,
    )
    tb = Testbed(cfg, spec, agents)
    by = {s.name: s for s in cfg.systems}
    cal = tb.run_system(by["oracle"])  # untimed: the PE compute of this workload
    hit_bytes = sum(t.cached // args.bt * args.bt for a in agents for t in a.turns) * tb.kvb
    cap = hit_bytes / (args.ratio * cal.compute_bound_s)
    cluster = replace(cluster, snic_gbps=cap * 8 / 1e9)
    tb.cfg = cfg = replace(cfg, cluster=cluster)
    runs = {s.name: [] for s in cfg.systems}
    for _ in range(args.repeats):  # interleaved, so a slow spell of the host hits every system
        for s in cfg.systems:
            runs[s.name].append(tb.run_system(s))
    medians = {n: median_run(ms) for n, ms in runs.items()}
    hop = medians["dualpath"]
    hop_s = sum(v for k, v in hop.link_seconds.items() if k.startswith("d2d"))
    hop_bytes = sum(v for k, v in hop.link_bytes.items() if k.startswith("d2d"))
    sim = simulate(cfg, tb, medians, cnic_bytes_per_s=hop_bytes / hop_s if hop_s else 1e9)
    doc = {
        "machine": machine(),
        "jax": jax.__version__,
        "args": vars(args),
        "testbed": to_dict(spec),
        "cluster": to_dict(cluster),
        "systems": [to_dict(s) for s in cfg.systems],
        "model": {"name": tb.mcfg.name, "layers": tb.mcfg.n_layers, "kv_bytes_per_token": tb.kvb},
        "calibration": {"oracle_pe_compute_s": cal.compute_bound_s, "hit_bytes": hit_bytes, "snic_Bps": cap},
        "runs": {n: [m.as_dict() for m in ms] for n, ms in runs.items()},
        "simulator": sim,
        "wall_s": time.perf_counter() - t_start,
        "code": code,
    }
    lines = table(args, cap, args.ratio, runs, sim)
    lines.append(f"wall {doc['wall_s']:.1f} s")
    write_report(args.out, f"split_reads_{args.tag}", doc, lines, sort_keys=True, default=float)


if __name__ == "__main__":
    main()

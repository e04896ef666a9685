"""The testbed across two processes (1P1D, serving/mp): a correct run and the per-hop transfer
rate of the cross-process KV path (jax.experimental.transfer pulls), on CPU or on one GPU.

    PYTHONPATH=. python benchmarks/bench_multiprocess.py --out results/bench            # CPU, tiny model
    # one H200, both node processes on the same GPU (each may take 40% of its memory):
    JAX_PLATFORMS=cuda DUALPATH_NODE_DEVICES=shared XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 PYTHONPATH=. python3 \\
        benchmarks/bench_multiprocess.py --out results/bench --model ds16b --layers 8 --bt 256 \\
        --preload 8192 --append 1024 --tag h200_shared

Steps: the scheduler (this process) starts two node processes (a jax.distributed job on
loopback) and serves the workload with DualPath twice, every hit read through the DE node (so
every layer of every hit crosses DE -> PE as a hop) and then through the PE node (its KV goes
PE -> DE per layer); then the first node recomputes every prompt with no cached KV. Reports each
run's JCT, every turn's first-token logits against the recompute (max abs difference), bytes per
link against the plan, and the hops' rate per hop size (bytes / seconds from issue to landed, as
the PE's hop timer sees them) and overall. Writes multiprocess_<tag>.{json,txt}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

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
from dualpath_jax.serving import TestbedSpec  # noqa: E402
from dualpath_jax.serving.mp.host import MPHost  # noqa: E402
from dualpath_jax.serving.mp.scheduler import MPSystemRun  # noqa: E402

PLAN = {"snic_read[0]": "snic_read_pe_read", "snic_read[1]": "snic_read_de_read", "pe_cnic_in[0]": "pe_cnic_in",
        "pe_cnic_out[0]": "pe_cnic_out", "de_cnic_in[1]": "de_cnic_in"}  # fmt: skip


def hop_rates(m) -> tuple[dict, float]:
    """Per hop size (bytes): [hops, seconds, bytes/s]; and the overall bytes/s."""
    per = {int(k): [int(n), s, int(k) * n / s if s else 0.0] for k, (n, s) in m.hop_sizes.items()}
    total_b = sum(k * n for k, (n, _, _) in per.items())
    total_s = sum(s for _, s, _ in per.values())
    return per, total_b / total_s if total_s else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--layers", type=int, default=0, help="0: the model's own")
    ap.add_argument("--dtype", default="", help="the model's dtype (float32, bfloat16; default: its own)")
    ap.add_argument("--moe-backend", default="", help="sort, ragged or dense (dense drops no token; default: its own)")
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--preload", type=int, default=256)
    ap.add_argument("--append", type=int, default=32)
    ap.add_argument("--gen", type=int, default=4)
    ap.add_argument("--bt", type=int, default=16)
    ap.add_argument("--snic-gbps", type=float, default=8.0, help="the emulated SNIC cap per node")
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args(argv)
    t_start, code = time.perf_counter(), code_info()
    cluster = from_dict(ClusterSpec, dict(load_named("cluster", "testbed_1p1d"), snic_gbps=args.snic_gbps))
    agents = workload(args.agents, args.turns, args.preload, args.append, args.gen)
    final = args.preload + args.turns * (args.append + args.gen)
    dualpath = SystemSpec(name="dualpath", **load_named("system", "paper")["system"]["dualpath"])
    cfg = ExperimentConfig(
        model=None,
        cluster=cluster,
        hardware=from_dict(HardwareSpec, load_named("hardware", "h800")),
        workload=WorkloadSpec(source="synthetic", agents=args.agents, mal=final, mal_label=str(final)),
        systems=(dualpath,),
        sim=SimSpec(progress=False, prefill_batch_tokens=args.append),
        tracking=TrackingSpec(wandb=False),
        backend="real",
    )
    spec = TestbedSpec(model=args.model, n_layers=args.layers, dtype=args.dtype, moe_backend=args.moe_backend, tokens_per_block=args.bt, max_prefill_batch=1,
                       max_decode_batch=args.agents, max_context=final, keep_logits=True, processes=2)  # fmt: skip
    runs, turns = {}, {}
    with MPHost(cfg, spec, agents) as host:
        start_s = time.perf_counter() - t_start
        for k, side in enumerate(("de", "pe")):
            host.spec = replace(spec, force_read_side=side)
            with MPSystemRun(host, dualpath, k) as run:
                runs[side] = run.serve()
                turns[side] = list(run.finished)
        prompts = sorted({(t.agent, t.input) for t in turns["de"]})
        ref = dict(zip(prompts, host.recompute(prompts)))
        mcfg, kvb, attn = host.mcfg, host.kvb, host.attn_impl
    diff = {side: max(float(np.abs(t.first_logits - ref[(t.agent, t.input)]).max()) for t in ts) for side, ts in turns.items()}  # fmt: skip
    per, rate = hop_rates(runs["de"])
    plat = os.environ.get("JAX_PLATFORMS", "")
    precision = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION", "")  # the node processes inherit it
    lines = [
        f"testbed across 2 processes (1P1D, jax.experimental.transfer), {plat or 'default'} on {machine()}",
        f"model {mcfg.name} ({mcfg.n_layers} layers, {mcfg.dtype}, MoE {mcfg.moe_backend} at capacity factor "
        f"{mcfg.capacity_factor}, {kvb} KV bytes/token, attention {attn}); {args.agents} agents x "
        f"{args.turns} turns, preload {args.preload}, append {args.append}, gen {args.gen}, blocks of {args.bt}; "
        f"matmul precision {precision or 'default'}",
        f"start-up (processes, weights, handshake) {start_s:.1f} s",
    ]
    for side, m in runs.items():
        lines.append(
            f"hits through the {side.upper()} node: JCT {m.jct_s:.3f} s, {m.turns} turns, first-token logits max |diff| "
            f"vs recompute {diff[side]:.2e}"
        )
        cells = [f"{link} {m.link_bytes.get(link, 0) / 1e6:.3f}/{m.plan_bytes.get(p, 0) / 1e6:.3f}" for link, p in PLAN.items()]  # fmt: skip
        lines.append("  bytes per link, measured/plan (MB): " + ", ".join(cells))
    lines.append(
        f"DE->PE hops (the DE-path run): {sum(n for n, _, _ in per.values())} hops, {rate / 1e9:.3f} GB/s overall"
    )
    for size, (n, s, r) in sorted(per.items()):
        lines.append(f"  {size:>10d} B x {n:4d}: {s * 1e3 / n:8.3f} ms per hop, {r / 1e9:.3f} GB/s")
    doc = {
        "machine": machine(),
        "platform": plat,
        "matmul_precision": precision or "default",
        "args": vars(args),
        "testbed": to_dict(spec),
        "cluster": to_dict(cluster),
        "model": {
            "name": mcfg.name,
            "layers": mcfg.n_layers,
            "dtype": mcfg.dtype,
            "kv_bytes_per_token": kvb,
            "attn_impl": attn,
        },
        "startup_s": start_s,
        "logits_max_abs_diff": diff,
        "hops": {"per_size": {str(k): v for k, v in per.items()}, "bytes_per_s": rate},
        "runs": {side: m.as_dict() for side, m in runs.items()},
        "wall_s": time.perf_counter() - t_start,
        "code": code,
    }
    lines.append(f"wall {doc['wall_s']:.1f} s")
    write_report(args.out, f"multiprocess_{args.tag}", doc, lines, sort_keys=True, default=float)


if __name__ == "__main__":
    main()

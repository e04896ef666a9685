"""Run metrics: JCT, latencies, utilizations, bytes per link, Max/Avg balance ratios.

Pure functions over what a run recorded; the simulator and (later) the testbed both call them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def max_avg(values) -> float:
    """Max/Avg ratio: 1.0 is perfect balance."""
    v = np.asarray(list(values), dtype=float)
    return float(v.max() / v.mean()) if v.size and v.mean() > 0 else 1.0


def percentiles(values, qs=(50, 90, 99)) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    out = {"mean": float(v.mean()) if v.size else 0.0}
    out.update({f"p{q}": float(np.percentile(v, q)) if v.size else 0.0 for q in qs})
    return out


@dataclass(frozen=True)
class SystemMetrics:
    jct_s: float
    turns: int
    agents: int
    prefill_gpu_util: float  # share of time prefill GPUs spend computing
    prefill_barrier_idle: float  # share of time prefill GPUs wait at the DP-attention barrier
    prefill_layer_ms: float  # mean prefill step time per layer
    attn_max_avg: float  # Max/Avg of attention time across prefill GPUs
    decode_gpu_busy: float  # share of time decode GPUs hold a non-empty batch
    decode_batch_mean: float  # time-averaged decode batch per GPU
    snic_util_pe: float  # read-direction utilization, averaged over PE nodes
    snic_util_de: float  # same over DE nodes
    snic_read_max_avg: float  # Max/Avg of bytes read per node (all nodes)
    bytes_read: float  # from storage, all nodes
    bytes_read_pe_nodes: float
    bytes_read_de_nodes: float
    bytes_written: float
    tier_hit_bytes: float  # served by a DRAM store tier instead of storage (SGL(MC))
    hit_bytes: float  # sum over turns of cached tokens * KV bytes per token
    tokens_prefilled: int  # new (computed) prompt tokens
    tokens_cached: int
    tokens_generated: int
    ttft_s: dict
    tpot_s: dict
    io_bound_s: float  # storage bytes read / usable SNIC bandwidth: no run can finish faster
    compute_bound_s: float  # prefill compute / prefill GPUs: no run can finish faster
    events: int

    def as_dict(self) -> dict:
        return asdict(self)


# The SNIC balance over time uses windows this long: short next to a run (the main cell's JCT is
# ~1,500 s), long next to one turn's read (~0.1 s at 64K), so a window's bytes are many turns'.
WINDOW_S = 10.0


def windowed_max_avg(links, span_s: float, window_s: float = WINDOW_S) -> dict:
    """Max/Avg across `links` (`LoggedLink`s) of the bytes each moved in every `window_s` window of
    [0, span_s], over the windows where any moved: mean, P90 and max."""
    edges = np.arange(0.0, span_s + window_s, window_s)
    per_link = np.array([link.bytes_by_window(edges) for link in links])  # links x windows
    mean = per_link.mean(axis=0)
    ratio = per_link.max(axis=0)[mean > 0] / mean[mean > 0]
    if not ratio.size:
        return {"window_s": window_s, "mean": 1.0, "p90": 1.0, "max": 1.0}
    return {
        "window_s": window_s,
        "mean": float(ratio.mean()),
        "p90": float(np.percentile(ratio, 90)),
        "max": float(ratio.max()),
    }


def v2_metrics(sim) -> dict:
    """Cost model v2's metrics beside the paper's (docs/costmodel.md, "Metrics"): Max/Avg of the
    bytes read per node in each time window (the paper's load-balance figure is over time; the
    whole-run `snic_read_max_avg` hides a node that is busy early and idle late), the TTFT's mean
    stages (scheduling wait, KV read, PE queue, prefill), and the DRAM buffer's stalls."""
    jct = max(sim.agent_done) if sim.agent_done else 0.0
    turns = max(sim.turns, 1)
    buf = sim.buffers
    return {
        "snic_read_max_avg_windowed": windowed_max_avg(sim.snic_read, jct),
        "ttft_stages_s": dict(zip(("sched", "read", "pe_queue", "prefill"), (s / turns for s in sim.ttft_stages))),
        "dram_buffer": {
            "stalled_reads": buf.stalled if buf else 0,
            "stall_s_mean": buf.stall_s / buf.stalled if buf and buf.stalled else 0.0,
            "peak_gb": buf.peak / 1e9 if buf else 0.0,
        },
    }


def summarize(sim) -> SystemMetrics:
    """Collect a finished Simulation's metrics."""
    spec, topo = sim.cfg.cluster, sim.topo
    jct = max(sim.agent_done) if sim.agent_done else 0.0
    span = jct if jct > 0 else 1.0
    pe_nodes = [n for n in range(topo.nodes) if topo.node_role(n) == "prefill"]
    de_nodes = [n for n in range(topo.nodes) if topo.node_role(n) == "decode"]
    read = [link.bytes for link in sim.snic_read]
    snic_bw = spec.snic_bytes_per_s
    usable_bw = snic_bw * sim.cost.storage_efficiency  # v1: the line rate
    n_pe, n_de = spec.prefill_gpus, spec.decode_gpus
    usable_nodes = spec.prefill_nodes + (spec.decode_nodes if sim.system.dual_path else 0)
    nodes = sim.pe_nodes.values()
    compute = sum(n.busy_s for n in nodes)
    steps = sum(n.steps for n in nodes)
    return SystemMetrics(
        jct_s=jct,
        turns=sim.turns,
        agents=len(sim.agents),
        prefill_gpu_util=compute / (n_pe * span),
        prefill_barrier_idle=sum(n.bubble_s for n in nodes) / (n_pe * span),
        prefill_layer_ms=1e3 * sum(n.step_s for n in nodes) / max(steps, 1) / sim.cost.model.layers,
        attn_max_avg=max_avg(a for n in nodes for a in n.attn_s.values()),
        decode_gpu_busy=sum(e.busy_s for e in sim.decoders) / (n_de * span),
        decode_batch_mean=sum(e.batch_area for e in sim.decoders) / (n_de * span),
        snic_util_pe=sum(read[n] for n in pe_nodes) / (len(pe_nodes) * snic_bw * span),
        snic_util_de=sum(read[n] for n in de_nodes) / (len(de_nodes) * snic_bw * span),
        snic_read_max_avg=max_avg(read),
        bytes_read=float(sum(read)),
        bytes_read_pe_nodes=float(sum(read[n] for n in pe_nodes)),
        bytes_read_de_nodes=float(sum(read[n] for n in de_nodes)),
        bytes_written=float(sum(link.bytes for link in sim.snic_write)),
        tier_hit_bytes=float(sim.tier.hit_bytes if sim.tier is not None else 0.0),
        hit_bytes=float(sim.tokens_cached * sim.kvb),
        tokens_prefilled=sim.tokens_new,
        tokens_cached=sim.tokens_cached,
        tokens_generated=sim.tokens_out,
        ttft_s=percentiles(sim.ttft),
        tpot_s=percentiles(sim.tpot),
        io_bound_s=float(sum(read)) / (usable_nodes * usable_bw),
        compute_bound_s=compute / n_pe,
        events=sim.loop.events,
    )

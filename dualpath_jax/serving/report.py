"""Testbed metrics: the simulator's SystemMetrics fields, measured, plus per-engine GPU busy
fractions, bytes per link (measured and as the data-path plan predicts) and DRAM buffer peaks."""

from __future__ import annotations

from dataclasses import dataclass

from ..metrics import SystemMetrics, max_avg, percentiles


@dataclass(frozen=True)
class TestbedMetrics(SystemMetrics):
    wall_s: float  # the whole run, start to the last persisted turn
    gpu_busy: dict  # "pe<e>"/"de<e>" -> busy fraction of jct_s
    link_bytes: dict  # link name -> bytes moved (measured)
    plan_bytes: dict  # link name -> bytes plan_turn predicts for the same placements
    link_seconds: dict  # link name -> seconds spent in its timed transfers (DE->PE hops)
    hop_sizes: dict  # DE->PE hop bytes (str) -> [count, seconds]: to compare with a plain D2D copy
    dram_peak_bytes: dict  # node -> peak bytes held in its DRAM buffer
    # emulated NIC -> {transfers, late, late_s}: block transfers whose real store I/O outlasted the
    # NIC's link time, i.e. the store rather than the emulated NIC set the pace (Throttle.settle)
    nic_pace: dict
    prefill_tokens_per_s: float  # prompt tokens (cached + new) per PE busy second
    decode_step_ms: float  # mean decode step
    # mean seconds a turn spends in each stage of its life (STAGES), to see where TTFT and JCT go
    stages_s: dict
    # "pe<e>" -> seconds its thread spent: idle (no request queued), load (waiting for the loader
    # thread's next layer), inputs (waiting for a layer's inputs to be on the device), busy
    # (computing); and send: seconds its send threads spent copying KV out, summed over them
    pe_time_s: dict
    # one entry per turn: who served it, its path and its timestamps (seconds from the run's start)
    timeline: list
    __test__ = False


# stage name -> (from, to): TestbedTurn timestamps. `read` is 0 without a store read; `stage` is the
# DE path's staging (the PE path goes straight to the PE queue); `prefill` ends when the first token's
# logits are taken, after the batch's KV has been sent to the DE buffer.
STAGES = {
    "place": ("arrive", "placed"),
    "read": ("placed", "ready"),
    "stage": ("ready", "queued"),
    "pe_queue": ("queued", "prefill_start"),
    "prefill": ("prefill_start", "first_token"),
    "join": ("first_token", "joined"),
    "decode": ("joined", "finished"),
    "write": ("finished", "persisted"),
}


def stage_means(reqs) -> dict[str, float]:
    n = max(len(reqs), 1)
    return {name: sum(getattr(r, b) - getattr(r, a) for r in reqs) / n for name, (a, b) in STAGES.items()}


def timeline(reqs, t0: float) -> list[dict]:
    """Each turn's placement, path and timestamps (seconds from t0), in arrival order."""
    return [
        {
            "agent": r.agent,
            "turn": r.index,
            "pe": r.pe,
            "de": r.de,
            "read_on_de": bool(r.read_on_de),
            "de_hit": r.de_hit,
            "hit": r.hit,
            "new": r.new,
            "arrive": r.arrive - t0,
            **{b: getattr(r, b) - t0 for _, b in STAGES.values()},
        }
        for r in sorted(reqs, key=lambda r: r.rid)
    ]


def summarize(run, wall: float) -> TestbedMetrics:
    """The metrics of a finished `SystemRun` that took `wall` seconds."""
    cl, spec = run.cluster, run.cluster.spec
    reqs = run.finished
    jct = max(run.agent_done) if run.agent_done else wall
    span = jct if jct > 0 else 1.0
    links = dict(sorted(cl.links.bytes.items()))
    pe_nodes = [n.id for n in cl.nodes if n.role == "prefill"]
    de_nodes = [n.id for n in cl.nodes if n.role == "decode"]
    read = {n.id: links.get(f"snic_read[{n.id}]", 0.0) for n in cl.nodes}
    bw = spec.snic_bytes_per_s
    pes, des = run.pes.values(), run.des.values()
    pe_busy = sum(p.busy_s for p in pes)
    usable = spec.prefill_nodes + (spec.decode_nodes if run.system.dual_path else 0)
    ttft = [r.first_token - r.arrive for r in reqs]
    tpot = [(r.finished - r.joined) / (r.output - 1) for r in reqs if r.output > 1]
    batches = sum(p.batches for p in pes)
    steps = sum(d.steps for d in des)
    return TestbedMetrics(
        jct_s=jct,
        turns=len(reqs),
        agents=len(run.agent_done),
        prefill_gpu_util=pe_busy / (len(run.pes) * span),
        prefill_barrier_idle=0.0,  # one device per engine: no DP-attention barrier on the testbed
        prefill_layer_ms=1e3 * sum(p.layer_busy_s for p in pes) / max(batches, 1),
        attn_max_avg=max_avg(p.busy_s for p in pes),
        decode_gpu_busy=sum(d.busy_s for d in des) / (len(run.des) * span),
        decode_batch_mean=sum(d.batch_area for d in des) / (len(run.des) * span),
        snic_util_pe=sum(read[n] for n in pe_nodes) / (len(pe_nodes) * bw * span),
        snic_util_de=sum(read[n] for n in de_nodes) / (len(de_nodes) * bw * span),
        snic_read_max_avg=max_avg(read.values()),
        bytes_read=float(sum(read.values())),
        bytes_read_pe_nodes=float(sum(read[n] for n in pe_nodes)),
        bytes_read_de_nodes=float(sum(read[n] for n in de_nodes)),
        bytes_written=float(sum(v for k, v in links.items() if k.startswith("snic_write"))),
        tier_hit_bytes=0.0,
        hit_bytes=float(sum(r.hit_bytes for r in reqs)),
        tokens_prefilled=sum(r.new for r in reqs),
        tokens_cached=sum(r.hit for r in reqs),
        tokens_generated=sum(r.output for r in reqs),
        ttft_s=percentiles(ttft),
        tpot_s=percentiles(tpot),
        io_bound_s=float(sum(read.values())) / (usable * bw),
        compute_bound_s=pe_busy / len(run.pes),
        events=len(reqs),
        wall_s=wall,
        gpu_busy={**{f"pe{p.id}": p.busy_s / span for p in pes}, **{f"de{d.id}": d.busy_s / span for d in des}},
        link_bytes=links,
        plan_bytes=dict(sorted(run.plan_bytes.items())),
        link_seconds=dict(sorted(cl.link_s.bytes.items())),
        hop_sizes={k: [cl.hop_n.bytes[k], v] for k, v in sorted(cl.hop_s.bytes.items())},
        dram_peak_bytes={str(n.id): float(n.buffer.peak) for n in cl.nodes},
        nic_pace={
            t.name: {"transfers": t.transfers, "late": t.late, "late_s": t.late_s}
            for n in cl.nodes
            for t in (n.snic_read, n.snic_write)
        },
        prefill_tokens_per_s=sum(r.input for r in reqs) / pe_busy if pe_busy else 0.0,
        decode_step_ms=1e3 * sum(d.busy_s for d in des) / max(steps, 1),
        stages_s=stage_means(reqs),
        pe_time_s={f"pe{p.id}": dict(p.time_s) for p in pes},
        timeline=timeline(reqs, run.t0),
    )

"""Run the simulator on the testbed's own setup with the testbed's measured rates, so its JCTs can
be compared with the measured ones (the check that the two instruments agree).

Measured inputs: prefill efficiency (model FLOPs of every turn over the PE busy time of the
testbed run), decode step time (as the step overhead over the cost model's roofline terms),
the emulated SNIC cap, the DE->PE transfer rate (as the CNIC). Everything else is the cost model.
"""

from __future__ import annotations

from dataclasses import replace

from ..config import GPUSpec, ModelSpec
from ..costmodel import CostModel
from ..costmodel.analytic import Efficiency
from ..costmodel.counts import ModelCounts
from ..metrics import SystemMetrics
from ..model import ModelConfig
from ..sim import Simulation


def model_spec(m: ModelConfig) -> ModelSpec:
    """The Flax config as the cost model's ModelSpec (stored KV = the model dtype; a DSA model's
    indexer keys are the `indexer` part)."""
    b = 2 if m.dtype == "bfloat16" else 4
    fmt = "bf16" if b == 2 else "fp32"
    return ModelSpec(
        name=m.name,
        layers=m.n_layers,
        d_model=m.d_model,
        heads=m.n_heads,
        vocab=m.vocab_size,
        attention="mla_dsa" if m.is_dsa else "mla",
        q_lora=m.q_lora_rank,
        kv_lora=m.kv_lora_rank,
        qk_nope=m.qk_nope_dim,
        qk_rope=m.qk_rope_dim,
        v_head=m.v_head_dim,
        dsa_topk=m.index_topk,
        indexer_heads=m.index_n_heads,
        indexer_dim=m.index_head_dim,
        dense_layers=m.first_k_dense,
        dense_ffn=m.dense_ffn,
        routed_experts=m.n_routed_experts,
        top_k=m.top_k,
        shared_experts=m.n_shared_experts,
        expert_ffn=m.expert_ffn,
        weight_bytes=b,
        compute_dtype="bf16",
        kv_format=fmt,
        kv_bytes_per_token_layer={fmt: {"main": m.kv_width * b, "indexer": (m.cache_width - m.kv_width) * b}},
        expert_shard="node",
    )


def simulate(
    cfg, tb, measured: dict[str, SystemMetrics], cnic_bytes_per_s: float, hbm_gb: float = 141.0
) -> dict[str, dict]:
    """Simulate each system measured on `tb`; returns {system: {sim_jct_s, testbed_jct_s, error}}."""
    spec = model_spec(tb.mcfg)
    counts = ModelCounts(spec)
    cluster = replace(cfg.cluster, cnic_gbps=cnic_bytes_per_s * 8 / 1e9, dram_gbps=1e6, activation_reserve_gb=8.0)
    ref = measured.get("oracle") or next(iter(measured.values()))
    bt = tb.spec.tokens_per_block
    hits = [(t.cached // bt * bt, t.input) for a in tb.agents for t in a.turns]  # whole blocks hit
    flops = sum(counts.prefill_flops(hit, n - hit) for hit, n in hits)
    peak = cfg.hardware.gpu.peak_tflops["bf16"] * 1e12
    e_p = flops / (peak * ref.compute_bound_s * len(tb.pe_ids))
    gpu = GPUSpec(
        name="testbed",
        hbm_gb=hbm_gb,
        hbm_tbps=cfg.hardware.gpu.hbm_tbps,
        peak_tflops=dict(cfg.hardware.gpu.peak_tflops),
    )
    hw = replace(cfg.hardware, gpu=gpu)
    cost0 = CostModel(spec, cluster, hw, Efficiency(e_p, 1.0))
    batch = max(1, round(ref.decode_batch_mean / max(ref.decode_gpu_busy, 1e-9)))
    ctx = sum(t.input + t.output / 2 for a in tb.agents for t in a.turns) / sum(len(a.turns) for a in tb.agents)
    keys = counts.decode_keys(int(ctx))
    roof = cost0.decode_step_time(batch, batch * keys, batch * ctx) - cost0._step_overhead
    over_ms = max(0.0, ref.decode_step_ms - 1e3 * roof)
    hw = replace(hw, calibration=replace(hw.calibration, decode_step_overhead_ms=over_ms))
    cost = CostModel(spec, cluster, hw, Efficiency(e_p, 1.0))
    sim_cfg = replace(
        cfg,
        cluster=cluster,
        model=spec,
        hardware=hw,
        sim=replace(cfg.sim, progress=False, record_turns=False, prefill_batch_tokens=cfg.sim.prefill_batch_tokens),
    )
    out = {}
    for system in cfg.systems:
        if system.name not in measured:
            continue
        m = Simulation(sim_cfg, system, tb.agents, cost).run()
        t = measured[system.name].jct_s
        out[system.name] = {
            "sim_jct_s": m.jct_s,
            "testbed_jct_s": t,
            "error": m.jct_s / t - 1.0,
            "sim_prefill_gpu_util": m.prefill_gpu_util,
            "testbed_prefill_gpu_util": measured[system.name].prefill_gpu_util,
            # where the simulated reads went (the SNIC balance the testbed's counters show too)
            "sim_bytes_read_pe_nodes": m.bytes_read_pe_nodes,
            "sim_bytes_read_de_nodes": m.bytes_read_de_nodes,
            "sim_snic_util_pe": m.snic_util_pe,
            "sim_snic_util_de": m.snic_util_de,
            "sim_snic_read_max_avg": m.snic_read_max_avg,
        }
    out["_inputs"] = {
        "prefill_efficiency": e_p,
        "decode_step_overhead_ms": over_ms,
        "cnic_gbps": cluster.cnic_gbps,
        "snic_gbps": cluster.snic_gbps,
    }
    return out

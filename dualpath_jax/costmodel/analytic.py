"""The cost model: roofline times from FLOP and byte counts, with efficiency factors fixed by anchors.

v1 (`costmodel=v1`):
- Prefill: time = FLOPs / (peak[compute dtype] * prefill_efficiency).
- Decode step on one GPU: time = (local weight bytes + KV bytes read) / (HBM * hbm_efficiency)
  + FLOPs / (peak * decode_efficiency) + a fixed per-step overhead.
v2 (`costmodel=v2`) adds, each from a published source (docs/costmodel.md, "v2 terms"): bounded EP
groups; a decode step no shorter than its MoE layers' all-to-all latency (`ep.py`); a prefill step
no shorter than one read of the GPU's weights, plus a fixed latency per MoE layer; a storage NIC
that delivers `storage_efficiency` of its line rate, and a latency per read; per-turn fixed costs
(the scheduler's period, the P->D handoff, the DE's allocation); a DRAM buffer per node that a read
needs room in; write-back through DRAM; DE CNIC traffic; lockstep decode across an EP group.
The two compute efficiencies are solved from DeepSeek's published H800 per-node throughput for
DeepSeek-V3 (configs/hardware/h800.yaml, calibration:), with the same terms the version uses,
independent of the DualPath paper, and then applied unchanged to every model. Nothing here looks at
the paper's JCT figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import ClusterSpec, CostModelSpec, HardwareSpec, ModelSpec
from .counts import ModelCounts
from .ep import ep_group, ep_layer_latency_s


@dataclass(frozen=True)
class Efficiency:
    prefill: float
    decode: float

    def as_dict(self) -> dict:
        return {"prefill": self.prefill, "decode": self.decode}


def calibrate(
    anchor: ModelSpec, hw: HardwareSpec, gpus_per_node: int = 8, terms: CostModelSpec = CostModelSpec()
) -> Efficiency:
    """Solve the compute efficiencies that reproduce the anchor throughputs on the anchor model.
    `costmodel=profiled` measures its times instead: no efficiency (0, 0), nothing solved."""
    if terms.version == "profiled":
        return Efficiency(prefill=0.0, decode=0.0)
    cal, gpu = hw.calibration, hw.gpu
    counts = ModelCounts(anchor)
    peak = gpu.peak_tflops[anchor.compute_dtype] * 1e12
    g = gpus_per_node
    v2 = terms.version == "v2"
    # Prefill: the anchor counts cache hits as input tokens; only misses are computed.
    prompt = cal.prefill_prompt_tokens
    cached = round(prompt * cal.prefill_hit_ratio)
    flops_per_prompt = counts.prefill_flops(cached, prompt - cached)
    prompts_per_s_gpu = cal.prefill_tokens_per_s_node / g / prompt
    prefill = prompts_per_s_gpu * flops_per_prompt / peak
    if v2:  # a step of the anchor's batch pays the fixed terms; its compute is what is left
        ep = terms.anchor_ep_prefill  # the anchor's deployment (DeepSeek's prefill EP)
        step = terms.prefill_anchor_batch_tokens / (prompt - cached) / prompts_per_s_gpu
        fixed = _all_to_all_s(counts, terms, ep) * terms.prefill_layer_latency_scale
        floor = _prefill_weight_floor_s(counts, terms, ep, g, gpu.hbm_tbps * 1e12 * cal.hbm_efficiency)
        compute = step - fixed
        if compute <= floor:
            raise ValueError(
                f"calibration: anchor prefill step {step * 1e3:.1f} ms leaves {compute * 1e3:.1f} ms of "
                f"compute after its fixed costs, below its weight-read floor {floor * 1e3:.1f} ms; "
                f"check costmodel.prefill_anchor_batch_tokens"
            )
        prefill *= step / compute
    # Decode: a step yields one token per request in the batch.
    # The batch per GPU follows from node throughput over per-request speed.
    b = cal.decode_tokens_per_s_node / g / cal.decode_tokens_per_s_request
    ctx = cal.decode_context_tokens
    step = 1.0 / cal.decode_tokens_per_s_request
    keys = counts.decode_keys(ctx)
    ep = ep_group(cal.decode_gpus, terms.anchor_ep_decode) if v2 else cal.decode_gpus
    mem_bytes = counts.weight_bytes_per_gpu(ep, g) + b * counts.decode_kv_read_bytes(keys, ctx)
    mem_time = mem_bytes / (gpu.hbm_tbps * 1e12 * cal.hbm_efficiency)
    compute_time = step - mem_time - cal.decode_step_overhead_ms / 1e3
    serial = ""
    if v2:
        floor = _all_to_all_s(counts, terms, ep)
        if terms.decode_ep_overlap and floor >= step:
            raise ValueError(
                f"calibration: anchor decode step {step * 1e3:.1f} ms is not above its EP all-to-all "
                f"floor {floor * 1e3:.1f} ms; check costmodel.ep_*"
            )
        if not terms.decode_ep_overlap:
            compute_time -= floor
            serial = f" plus the EP all-to-all floor {floor * 1e3:.1f} ms (costmodel.decode_ep_overlap=false)"
    if compute_time <= 0:
        raise ValueError(
            f"calibration: anchor decode step {step * 1e3:.1f} ms is shorter than its "
            f"memory time {mem_time * 1e3:.1f} ms plus overhead{serial}; check calibration.*"
        )
    decode = b * counts.decode_flops(keys, ctx) / (compute_time * peak)
    for name, eff in (("prefill", prefill), ("decode", decode)):
        if not 0 < eff <= 1:
            raise ValueError(f"calibration: {name} efficiency {eff:.3f} is outside (0, 1]")
    return Efficiency(prefill=prefill, decode=decode)


def _all_to_all_s(counts: ModelCounts, terms: CostModelSpec, ep: int) -> float:
    """v2: one dispatch+combine latency per MoE layer over an EP group of `ep` (DeepEP's table):
    a decode step's floor, and (x `prefill_layer_latency_scale`) a prefill step's fixed latency."""
    moe = counts.moe_layers if counts.spec.routed_experts else 0
    return moe * ep_layer_latency_s(terms, ep)


def _prefill_weight_floor_s(counts: ModelCounts, terms: CostModelSpec, ep: int, g: int, hbm: float) -> float:
    """v2: a prefill step reads each of the GPU's weights at least once."""
    return counts.weight_bytes_per_gpu(ep, g) / hbm if terms.prefill_weight_roofline else 0.0


@dataclass
class CostModel:
    model: ModelSpec
    cluster: ClusterSpec
    hardware: HardwareSpec
    eff: Efficiency
    terms: CostModelSpec = field(default_factory=CostModelSpec)

    def __post_init__(self):
        self.counts = ModelCounts(self.model)
        gpu = self.hardware.gpu
        self.peak = gpu.peak_tflops[self.model.compute_dtype] * 1e12
        self.hbm = gpu.hbm_tbps * 1e12 * self.hardware.calibration.hbm_efficiency
        self.kv_bytes_per_token = self.counts.kv_bytes_per_token
        g, cl, t = self.cluster.gpus_per_node, self.cluster, self.terms
        self.v2 = t.version != "v1"  # profiled keeps v2's storage, per-turn and buffer terms (profiled.py)
        # EP group per role: v1 spans the role; v2 is bounded (ep_max_*)
        self.prefill_ep = ep_group(cl.prefill_gpus, t.ep_max_prefill) if self.v2 else cl.prefill_gpus
        self.decode_ep = ep_group(cl.decode_gpus, t.ep_max_decode) if self.v2 else cl.decode_gpus
        # nodes one EP group spans: the share of the all-to-all that crosses the CNICs
        self.prefill_ep_nodes = math.ceil(self.prefill_ep / g) if self.v2 else cl.prefill_nodes
        self.decode_ep_nodes = math.ceil(self.decode_ep / g) if self.v2 else cl.decode_nodes
        self.prefill_weights = self.counts.weight_bytes_per_gpu(self.prefill_ep, g)
        self.decode_weights = self.counts.weight_bytes_per_gpu(self.decode_ep, g)
        # v2's step terms and storage (v1: none)
        self.decode_ep_floor_s = _all_to_all_s(self.counts, t, self.decode_ep) if self.v2 else 0.0
        self.decode_ep_overlap = t.decode_ep_overlap
        self.prefill_fixed_s = (
            _all_to_all_s(self.counts, t, self.prefill_ep) * t.prefill_layer_latency_scale if self.v2 else 0.0
        )
        self.prefill_weight_floor_s = (
            _prefill_weight_floor_s(self.counts, t, self.prefill_ep, g, self.hbm) if self.v2 else 0.0
        )
        self.storage_efficiency = t.storage_efficiency if self.v2 else 1.0
        self.storage_read_latency_s = t.storage_read_latency_ms / 1e3 if self.v2 else 0.0
        # v2's per-turn fixed costs and resources (v1: none of them)
        self.scheduler_period_s = t.scheduler_period_ms / 1e3 if self.v2 else 0.0
        self.handoff_s = (t.handoff_ms + t.de_alloc_ms) / 1e3 if self.v2 else 0.0  # both before the H2D
        self.dram_buffer_bytes = t.dram_buffer_gb * 1e9 if self.v2 else math.inf
        self.writeback_via_dram = self.v2 and t.writeback_via_dram
        self.de_cnic_charging = self.v2 and t.de_cnic_charging
        self.decode_lockstep = self.v2 and t.decode_lockstep
        self._step_overhead = self.hardware.calibration.decode_step_overhead_ms / 1e3
        self.prefill_max_batch = math.inf  # turns per prefill batch: bounded by tokens or the quota only
        if not self.eff.decode:  # profiled: no calibration, its table gives the decode step
            self.decode_coef = None
            return
        # The decode step time is linear in (batch, keys, context): keep its coefficients (fixed, per
        # request, per key, per context token), which the simulator's decode engines read directly.
        c, rate = self.counts, self.peak * self.eff.decode
        per_key = c.decode_kv_read_bytes(1, 0) / self.hbm + (c.decode_flops(1, 0) - c.decode_flops(0, 0)) / rate
        per_ctx = c.decode_kv_read_bytes(0, 1) / self.hbm + (c.decode_flops(0, 1) - c.decode_flops(0, 0)) / rate
        self.decode_coef = (
            self.decode_weights / self.hbm + self._step_overhead,
            2.0 * c.active_params / rate,
            per_key,
            per_ctx,
        )

    def kv_room_bytes(self, role: str) -> float:
        """HBM left for KV on one GPU of `role` after weights and the activation reserve."""
        weights = self.prefill_weights if role == "prefill" else self.decode_weights
        room = (self.hardware.gpu.hbm_gb - self.cluster.activation_reserve_gb) * 1e9 - weights
        if room <= 0:
            raise ValueError(
                f"{self.model.name} on {self.cluster.name}: {role} weights "
                f"({weights / 1e9:.1f} GB per GPU) leave no HBM for KV"
            )
        return room

    def prefill_time(self, flops: float) -> float:
        return flops / (self.peak * self.eff.prefill)

    def turn_prefill_s(self, cached: int, new: int) -> float:
        """Seconds to prefill one turn alone on one GPU."""
        return self.prefill_time(self.counts.prefill_flops(cached, new))

    def prefill_split(self, cached: int, new: int) -> tuple[float, float]:
        """(attention seconds, linear seconds) to prefill `new` tokens after `cached`."""
        rate = self.peak * self.eff.prefill
        return (self.counts.prefill_attn_flops(cached, new) / rate, 2.0 * self.counts.active_params * new / rate)

    def decode_step_time(self, batch: int, keys: float, context: float) -> float:
        """One step for `batch` requests attending `keys` keys and spanning `context` tokens in all."""
        if batch == 0:
            return 0.0
        fixed, per_request, per_key, per_ctx = self.decode_coef
        return self.with_ep_floor(fixed + batch * per_request + keys * per_key + context * per_ctx)

    def with_ep_floor(self, step: float) -> float:
        """v2: the step no shorter than its all-to-all latency (overlapped) or plus it (v1: as is)."""
        if not self.decode_ep_floor_s:
            return step
        return max(step, self.decode_ep_floor_s) if self.decode_ep_overlap else step + self.decode_ep_floor_s

    def prefill_step(self, compute: float, comm: float) -> float:
        """A prefill step's critical path from its compute and EP all-to-all seconds: v2 adds the
        weight-read floor and the per-layer fixed latency (v1: the larger of the two)."""
        if self.v2:
            return max(compute, comm, self.prefill_weight_floor_s) + self.prefill_fixed_s
        return max(compute, comm)

    def decode_comm_time(self, batch: int) -> float:
        """EP all-to-all seconds per decode step at full CNIC bandwidth (inside the calibrated step
        time; the traffic manager adds to it only when KV traffic takes part of the CNIC)."""
        per_token = self.counts.ep_bytes_per_token(self.decode_ep_nodes)
        return batch * per_token / self.cluster.cnic_bytes_per_s

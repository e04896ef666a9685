"""Cost model v1: roofline times from FLOP and byte counts, with efficiency factors fixed by anchors.

- Prefill: time = FLOPs / (peak[compute dtype] * prefill_efficiency).
- Decode step on one GPU: time = (local weight bytes + KV bytes read) / (HBM * hbm_efficiency)
  + FLOPs / (peak * decode_efficiency) + a fixed per-step overhead.
The two compute efficiencies are solved from DeepSeek's published H800 per-node throughput for
DeepSeek-V3 (see configs/cluster/*.yaml, calibration:) — independent of the DualPath paper — and then
applied unchanged to every model. Nothing here looks at the paper's JCT figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ClusterSpec, HardwareSpec, ModelSpec
from .counts import ModelCounts


@dataclass(frozen=True)
class Efficiency:
    prefill: float
    decode: float

    def as_dict(self) -> dict:
        return {"prefill": self.prefill, "decode": self.decode}


def calibrate(anchor: ModelSpec, hw: HardwareSpec, gpus_per_node: int = 8) -> Efficiency:
    """Solve the compute efficiencies that reproduce the anchor throughputs on the anchor model."""
    cal, gpu = hw.calibration, hw.gpu
    counts = ModelCounts(anchor)
    peak = gpu.peak_tflops[anchor.compute_dtype] * 1e12
    g = gpus_per_node
    # Prefill: the anchor counts cache hits as input tokens; only misses are computed.
    prompt = cal.prefill_prompt_tokens
    cached = round(prompt * cal.prefill_hit_ratio)
    flops_per_prompt = counts.prefill_flops(cached, prompt - cached)
    prompts_per_s_gpu = cal.prefill_tokens_per_s_node / g / prompt
    prefill = prompts_per_s_gpu * flops_per_prompt / peak
    # Decode: a step yields one token per request in the batch.
    # The batch per GPU follows from node throughput over per-request speed.
    b = cal.decode_tokens_per_s_node / g / cal.decode_tokens_per_s_request
    ctx = cal.decode_context_tokens
    step = 1.0 / cal.decode_tokens_per_s_request
    keys = counts.decode_keys(ctx)
    mem_bytes = counts.weight_bytes_per_gpu(cal.decode_gpus, g) + b * counts.decode_kv_read_bytes(keys, ctx)
    mem_time = mem_bytes / (gpu.hbm_tbps * 1e12 * cal.hbm_efficiency)
    compute_time = step - mem_time - cal.decode_step_overhead_ms / 1e3
    if compute_time <= 0:
        raise ValueError(
            f"calibration: anchor decode step {step * 1e3:.1f} ms is shorter than its "
            f"memory time {mem_time * 1e3:.1f} ms plus overhead; check calibration.*"
        )
    decode = b * counts.decode_flops(keys, ctx) / (compute_time * peak)
    for name, eff in (("prefill", prefill), ("decode", decode)):
        if not 0 < eff <= 1:
            raise ValueError(f"calibration: {name} efficiency {eff:.3f} is outside (0, 1]")
    return Efficiency(prefill=prefill, decode=decode)


@dataclass
class CostModel:
    model: ModelSpec
    cluster: ClusterSpec
    hardware: HardwareSpec
    eff: Efficiency

    def __post_init__(self):
        self.counts = ModelCounts(self.model)
        gpu = self.hardware.gpu
        self.peak = gpu.peak_tflops[self.model.compute_dtype] * 1e12
        self.hbm = gpu.hbm_tbps * 1e12 * self.hardware.calibration.hbm_efficiency
        self.kv_bytes_per_token = self.counts.kv_bytes_per_token
        g = self.cluster.gpus_per_node
        self.prefill_weights = self.counts.weight_bytes_per_gpu(self.cluster.prefill_gpus, g)
        self.decode_weights = self.counts.weight_bytes_per_gpu(self.cluster.decode_gpus, g)
        self._step_overhead = self.hardware.calibration.decode_step_overhead_ms / 1e3
        # The decode step time is linear in (batch, keys, context): keep its coefficients.
        c, rate = self.counts, self.peak * self.eff.decode
        per_key = c.decode_kv_read_bytes(1, 0) / self.hbm + (c.decode_flops(1, 0) - c.decode_flops(0, 0)) / rate
        per_ctx = c.decode_kv_read_bytes(0, 1) / self.hbm + (c.decode_flops(0, 1) - c.decode_flops(0, 0)) / rate
        self._decode_coef = (
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

    def prefill_split(self, cached: int, new: int) -> tuple[float, float]:
        """(attention seconds, linear seconds) to prefill `new` tokens after `cached`."""
        rate = self.peak * self.eff.prefill
        return (self.counts.prefill_attn_flops(cached, new) / rate, 2.0 * self.counts.active_params * new / rate)

    def decode_step_time(self, batch: int, keys: float, context: float) -> float:
        """One step for `batch` requests attending `keys` keys and spanning `context` tokens in all."""
        if batch == 0:
            return 0.0
        fixed, per_request, per_key, per_ctx = self._decode_coef
        return fixed + batch * per_request + keys * per_key + context * per_ctx

    def decode_step_coefficients(self) -> tuple[float, float, float, float]:
        """(fixed, per request, per key, per context token) seconds: a step of a non-empty batch is
        their sum weighted by (1, batch, keys, context), as `decode_step_time` computes it."""
        return self._decode_coef

    def decode_comm_time(self, batch: int) -> float:
        """EP all-to-all seconds per decode step at full CNIC bandwidth (inside the calibrated step
        time; the traffic manager adds to it only when KV traffic takes part of the CNIC)."""
        per_token = self.counts.ep_bytes_per_token(self.cluster.decode_nodes)
        return batch * per_token / self.cluster.cnic_bytes_per_s

"""Frozen dataclass schemas for every experiment input.

Hydra composes YAML at the entry point; `from_dict` converts it here once, checking every field, so
nothing below the entry point sees a DictConfig. Errors name the section and field at fault, as the
user writes it on the command line (`config.sim.prefill_batch_tokens: must be >= 1, got 0`).

What is checked, and where:
- the type of every field (its annotation), by `_convert`;
- string choices: a `Literal[...]` annotation; the message lists the allowed values;
- ranges: `Annotated[int, AtLeast(1)]`, `Annotated[float, Above(0)]`, `Between(...)` metadata
  (aliases below: PosInt, NonNegInt, PosFloat, NonNegFloat, Fraction, Seed); every float must be
  finite and every integer within +-2**53 (exact in floats and in the results JSON);
- cross-field rules: a section's `_validate(where)` method, which `from_dict` calls after building
  it (dataclasses built directly in code are not checked); `ExperimentConfig._validate` holds the
  rules across sections (and the model's kv_format, see `check_kv_format`);
- rules against the code that runs (the synthetic generator's MAL range, the cost model's
  calibration, HBM room) and settings that would change nothing: `experiment.build_config`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Mapping


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names the field."""


# ---- declarative ranges -------------------------------------------------------------------------
MAX_INT = 2**53  # integers beyond this are not exact as floats (cost model) nor in JSON readers


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


@dataclass(frozen=True)
class Bound:
    """Range metadata on a numeric annotation: `Annotated[float, Bound(0, 1, lo_open=True)]`."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"

    def check(self, value: float, where: str) -> None:
        lo_ok = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        hi_ok = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        if not (lo_ok and hi_ok):
            raise ConfigError(f"{where}: must be {self.describe()}, got {value!r}")


def AtLeast(x: float) -> Bound:
    return Bound(lo=x)


def Above(x: float) -> Bound:
    return Bound(lo=x, lo_open=True)


def Between(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Bound:
    return Bound(lo, hi, lo_open, hi_open)


PosInt = Annotated[int, AtLeast(1)]
NonNegInt = Annotated[int, AtLeast(0)]
PosFloat = Annotated[float, Above(0)]
NonNegFloat = Annotated[float, AtLeast(0)]
Fraction = Annotated[float, Between(0, 1, lo_open=True)]  # (0, 1]
Seed = Annotated[int, Between(0, 2**32 - 1)]  # numpy's and JAX's seeds are unsigned 32-bit here


def _fail(where: str, what: str) -> typing.NoReturn:
    raise ConfigError(f"{where}: {what}")


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        _fail(where, what)


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_assumed(obj: Any, where: str) -> None:
    """`assumed` lists the names of fields that are our assumptions: they must be fields."""
    names = {f.name for f in dataclasses.fields(obj)} - {"assumed"}
    for i, name in enumerate(obj.assumed):
        _need(
            name in names,
            f"{where}.assumed[{i}]",
            f"{name!r} is not a field of this section; known: {', '.join(sorted(names))}",
        )


# ---- string choices (the code compares these fields with exactly these values) -----------------
Attention = Literal["mla", "mla_dsa", "gqa"]  # costmodel/counts.py
ComputeDtype = Literal["fp8", "bf16"]  # a key of hardware.gpu.peak_tflops as well
ExpertShard = Literal["role", "node"]  # costmodel/counts.py
Source = Literal["synthetic", "jsonl", "mooncake"]  # workload/agents.py SOURCES
Scheduler = Literal["least_loaded", "round_robin", "dualpath"]  # scheduling SCHEDULERS
Batching = Literal["tokens", "quota"]  # sim/engines.py
Arrivals = Literal["poisson", "trace"]  # online/run.py
ThinkKind = Literal["none", "fixed", "exponential", "lognormal", "trace"]  # online/think.py
WandbMode = Literal["online", "offline", "disabled", "shared"]  # wandb.init(mode=...)
Backend = Literal["sim", "real"]
TestbedModel = Literal[
    "tiny", "tiny_dsa", "ds16b", "dsv3", "dsv3_e32", "dsv32", "dsv32_e32"
]  # model/config.py known_configs()
TestbedDtype = Literal["", "float32", "bfloat16", "float16"]  # "": the model config's own
MoeBackend = Literal["", "sort", "ragged", "dense"]  # model/config.py MOE_BACKENDS; "": its own
ReadSide = Literal["", "pe", "de"]  # serving/server.py
CostVersion = Literal["v1", "v2", "profiled"]  # costmodel/analytic.py, costmodel/profiled.py


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a served model, enough to count its FLOPs, weight bytes and KV bytes."""

    name: str
    layers: PosInt
    d_model: PosInt
    heads: PosInt
    vocab: PosInt
    attention: Attention  # "mla" (DeepSeek MLA), "mla_dsa" (MLA + DeepSeek Sparse Attention), "gqa"
    # MLA
    q_lora: NonNegInt = 0  # 0: no query compression
    kv_lora: NonNegInt = 0
    qk_nope: NonNegInt = 0
    qk_rope: NonNegInt = 0
    v_head: NonNegInt = 0
    # DSA indexer (mla_dsa only)
    dsa_topk: NonNegInt = 0
    indexer_heads: NonNegInt = 0
    indexer_dim: NonNegInt = 0
    # GQA
    kv_heads: NonNegInt = 0
    head_dim: NonNegInt = 0
    # FFN / MoE
    dense_layers: NonNegInt = 0  # first-k dense layers (all layers for a dense model)
    dense_ffn: NonNegInt = 0
    routed_experts: NonNegInt = 0
    top_k: NonNegInt = 0
    shared_experts: NonNegInt = 0
    expert_ffn: NonNegInt = 0
    # Bytes
    weight_bytes: PosFloat = 1.0  # per parameter (FP8 = 1, BF16 = 2)
    compute_dtype: ComputeDtype = "fp8"  # which peak rate the matmuls run at: fp8 | bf16
    kv_format: str = "fp8_indexer"  # a key of kv_bytes_per_token_layer (checked by check_kv_format)
    # storage format -> {"main": bytes, "indexer": bytes} per token per layer
    kv_bytes_per_token_layer: Mapping[str, Mapping[str, NonNegInt]] = field(default_factory=dict)
    # Weight placement: routed experts sharded over all GPUs of a role ("role", EP) or of a node
    # ("node"); dense FFN tensor-parallel over `dense_ffn_tp` GPUs; attention always replicated.
    expert_shard: ExpertShard = "role"
    dense_ffn_tp: PosInt = 1
    paper_cluster: str = ""  # the cluster the paper runs this model on (cluster=paper picks it)
    assumed: tuple[str, ...] = ()  # names of fields that are our assumptions, not the paper's

    def _validate(self, where: str) -> None:
        _check_assumed(self, where)
        att = f"attention={self.attention}"
        if self.attention in ("mla", "mla_dsa"):
            for name in ("kv_lora", "v_head"):
                _need(getattr(self, name) >= 1, f"{where}.{name}", f"{att} needs >= 1, got {getattr(self, name)}")
            _need(
                self.qk_nope + self.qk_rope >= 1,
                f"{where}.qk_rope",
                f"{att} needs qk_nope + qk_rope >= 1, got {self.qk_nope} + {self.qk_rope}",
            )
        if self.attention == "mla_dsa":
            for name in ("dsa_topk", "indexer_heads", "indexer_dim"):
                _need(getattr(self, name) >= 1, f"{where}.{name}", f"{att} needs >= 1, got {getattr(self, name)}")
        if self.attention == "gqa":
            for name in ("kv_heads", "head_dim"):
                _need(getattr(self, name) >= 1, f"{where}.{name}", f"{att} needs >= 1, got {getattr(self, name)}")
            _need(
                self.heads % self.kv_heads == 0,
                f"{where}.kv_heads",
                f"must divide heads={self.heads}, got {self.kv_heads}",
            )
        _need(
            self.dense_layers <= self.layers,
            f"{where}.dense_layers",
            f"must be <= layers={self.layers}, got {self.dense_layers}",
        )
        if self.dense_layers:
            _need(
                self.dense_ffn >= 1,
                f"{where}.dense_ffn",
                f"dense_layers={self.dense_layers} needs a dense FFN width >= 1, got {self.dense_ffn}",
            )
        if self.routed_experts:
            _need(
                1 <= self.top_k <= self.routed_experts,
                f"{where}.top_k",
                f"must be in [1, routed_experts={self.routed_experts}], got {self.top_k}",
            )
            _need(
                self.expert_ffn >= 1,
                f"{where}.expert_ffn",
                f"routed_experts={self.routed_experts} needs an expert FFN width >= 1, got {self.expert_ffn}",
            )
        else:
            _need(
                self.top_k == 0,
                f"{where}.top_k",
                f"must be 0 without routed experts (routed_experts=0), got {self.top_k}",
            )
            _need(
                self.dense_layers == self.layers,
                f"{where}.dense_layers",
                f"a model without routed experts (routed_experts=0) is dense in every layer: must "
                f"equal layers={self.layers}, got {self.dense_layers}",
            )
        for fmt, parts in self.kv_bytes_per_token_layer.items():
            w = f"{where}.kv_bytes_per_token_layer.{fmt}"
            extra = sorted(set(parts) - {"main", "indexer"})
            _need(not extra, w, f"unknown part(s) {extra}; known: main, indexer")
            _need(parts.get("main", 0) >= 1, f"{w}.main", f"must be >= 1 bytes, got {parts.get('main')!r}")


def check_kv_format(model: ModelSpec, where: str) -> None:
    """`kv_format` must name one of the model's `kv_bytes_per_token_layer` formats. (A check across
    two fields of the model, made where a whole experiment is built: `from_dict(ModelSpec, ...)`
    alone still accepts another format, as tests of the cost model's own error rely on.)"""
    known = sorted(model.kv_bytes_per_token_layer)
    _need(
        model.kv_format in model.kv_bytes_per_token_layer,
        f"{where}.kv_format",
        f"must be one of {' | '.join(known) or '(none)'} (the keys of {where}.kv_bytes_per_token_layer), "
        f"got {model.kv_format!r}",
    )


@dataclass(frozen=True)
class GPUSpec:
    name: str
    hbm_gb: PosFloat
    hbm_tbps: PosFloat  # TB/s
    peak_tflops: Mapping[str, PosFloat]  # dense peak per dtype

    def _validate(self, where: str) -> None:
        _need(bool(self.peak_tflops), f"{where}.peak_tflops", "needs a peak rate per compute dtype, e.g. {fp8: 1979}")


@dataclass(frozen=True)
class CalibrationSpec:
    """Independent anchors that fix the cost model's efficiency factors (never the paper's JCTs)."""

    anchor_model: str
    prefill_tokens_per_s_node: PosFloat
    prefill_hit_ratio: Annotated[float, Between(0, 1, hi_open=True)]  # all hits would compute nothing
    prefill_prompt_tokens: PosInt
    decode_tokens_per_s_node: PosFloat
    decode_tokens_per_s_request: PosFloat
    decode_context_tokens: PosInt
    decode_gpus: PosInt
    decode_step_overhead_ms: NonNegFloat
    hbm_efficiency: Fraction
    source: str = ""
    assumed: tuple[str, ...] = ()

    def _validate(self, where: str) -> None:
        _check_assumed(self, where)


@dataclass(frozen=True)
class CostModelSpec:
    """Which cost model times the simulation (docs/costmodel.md). v1 ignores every other field; v2
    adds expert-parallel latency floors, per-step prefill costs and a storage efficiency and
    latency. Every default has a published source or is listed in `assumed`."""

    version: CostVersion = "v1"
    # Expert-parallel groups are bounded: a role's GPUs form groups of at most this many.
    ep_max_prefill: PosInt = 32  # DeepSeek Day 6: prefill runs EP32
    ep_max_decode: PosInt = 144  # DeepSeek Day 6: decode runs EP144
    # The calibration anchor's own deployment (Day 6: EP32 prefill, EP144 decode), kept apart from
    # the simulated one above so that choosing another EP size does not re-fit the efficiencies.
    anchor_ep_prefill: PosInt = 32
    anchor_ep_decode: PosInt = 144
    # One MoE layer's dispatch and combine latency by EP size (DeepEP low-latency kernels, H800,
    # 128 tokens per GPU, FP8 dispatch / BF16 combine); interpolated linearly in log2(EP).
    ep_sizes: tuple[PosInt, ...] = (8, 16, 32, 64, 128, 256)
    ep_dispatch_us: tuple[NonNegFloat, ...] = (77.0, 118.0, 155.0, 173.0, 192.0, 194.0)
    ep_combine_us: tuple[NonNegFloat, ...] = (114.0, 195.0, 273.0, 314.0, 369.0, 360.0)
    ep_latency_scale: NonNegFloat = 1.0  # multiplies the table (other NICs, kernels, overlap)
    decode_ep_overlap: bool = True  # two micro-batches hide the all-to-all behind compute (Day 6)
    prefill_layer_latency_scale: NonNegFloat = 1.0  # prefill per-MoE-layer fixed cost, x the table
    prefill_weight_roofline: bool = True  # a prefill step streams the GPU's weights at least once
    prefill_anchor_batch_tokens: PosInt = 16384  # DeepSeek profile-data: 16K tokens per GPU step
    storage_efficiency: Fraction = 0.86  # 3FS: ~40 GiB/s peak per client on one 400 Gbps NIC
    storage_read_latency_ms: NonNegFloat = 0.5  # per turn's read before its first byte
    # Per-turn fixed costs of the design (none is published; docs/costmodel.md gives the ranges).
    scheduler_period_ms: NonNegFloat = 5.0  # the scheduler places turns in passes this far apart
    handoff_ms: NonNegFloat = 1.0  # PE -> DE: "prefill done" reaches the DE before its H2D starts
    de_alloc_ms: NonNegFloat = 0.1  # the DE allocates the turn's HBM blocks before its H2D
    # Resources the design has: a DRAM staging buffer per node, which a read needs room in.
    dram_buffer_gb: PosFloat = 256.0  # per node; 1/8 of a DGX H800's 2 TB host memory
    writeback_via_dram: bool = True  # decode's new KV is staged in the DE node's DRAM on its way out
    de_cnic_charging: bool = True  # DE-path reads leave, and the PE's KV arrives, by the DE GPU's CNIC
    decode_lockstep: bool = True  # the GPUs of one decode EP group step together (the slowest sets it)
    # profiled: the table of measured prefill and decode times (benchmarks/profile_costs.py)
    table: str = ""
    assumed: tuple[str, ...] = (
        "ep_latency_scale",
        "prefill_layer_latency_scale",
        "storage_read_latency_ms",
        "scheduler_period_ms",
        "handoff_ms",
        "de_alloc_ms",
        "dram_buffer_gb",
    )

    def _validate(self, where: str) -> None:
        _check_assumed(self, where)
        if self.version == "profiled":
            _need(
                self.table not in ("", "???"),
                f"{where}.table",
                "costmodel=profiled reads a profiled table: set costmodel.table=results/bench/<file>.json",
            )
        else:
            _need(
                not self.table, f"{where}.table", f"only costmodel=profiled reads a table, got version={self.version}"
            )
        n = len(self.ep_sizes)
        _need(n >= 1, f"{where}.ep_sizes", "needs at least one EP size")
        _need(
            list(self.ep_sizes) == sorted(set(self.ep_sizes)),
            f"{where}.ep_sizes",
            f"must be strictly increasing, got {list(self.ep_sizes)}",
        )
        for name in ("ep_dispatch_us", "ep_combine_us"):
            _need(
                len(getattr(self, name)) == n,
                f"{where}.{name}",
                f"needs one value per ep_sizes entry ({n}), got {len(getattr(self, name))}",
            )


@dataclass(frozen=True)
class HardwareSpec:
    gpu: GPUSpec
    calibration: CalibrationSpec


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    prefill_nodes: PosInt
    decode_nodes: PosInt
    gpus_per_node: PosInt = 8
    cnic_gbps: PosFloat = 400.0  # per GPU, compute network
    snic_gbps: PosFloat = 400.0  # per node, storage network
    snics_per_node: PosInt = 1
    dram_gbps: PosFloat = 500.0 * 8  # per node DRAM bandwidth, in Gbit/s (500 GB/s)
    activation_reserve_gb: NonNegFloat = 8.0  # HBM kept for activations and workspace per GPU
    assumed: tuple[str, ...] = ()

    def _validate(self, where: str) -> None:
        _check_assumed(self, where)

    @property
    def cnic_bytes_per_s(self) -> float:
        return self.cnic_gbps * 1e9 / 8

    @property
    def snic_bytes_per_s(self) -> float:
        return self.snic_gbps * 1e9 / 8 * self.snics_per_node

    @property
    def prefill_gpus(self) -> int:
        return self.prefill_nodes * self.gpus_per_node

    @property
    def decode_gpus(self) -> int:
        return self.decode_nodes * self.gpus_per_node


@dataclass(frozen=True)
class TraceStats:
    """Per-trajectory means of one trace set (PAPER.md section 4, Table 2)."""

    mal: PosInt
    turns: PosFloat
    append: PosFloat
    generated: PosFloat
    final_length: PosFloat
    prompt_context: PosFloat


@dataclass(frozen=True)
class WorkloadSpec:
    source: Source  # "synthetic" | "jsonl" | "mooncake"
    agents: NonNegInt  # +agents (offline); 0 online, where agents arrive at +aps
    mal: NonNegInt  # +len; 0 (and label "") when not given: trace workloads bring their own turns
    mal_label: str
    trajectories: PosInt = 500
    seed: Seed = 0
    path: str = ""  # jsonl / mooncake file
    table: tuple[TraceStats, ...] = ()  # synthetic: the published statistics per MAL
    # Gamma shape of per-turn append/gen sizes (assumption). Below ~1e-3 the gamma weights of a
    # trajectory underflow to 0 and its turn sizes become NaN; 0.1 keeps clear of that.
    turn_size_shape: Annotated[float, AtLeast(0.1)] = 2.0
    # Lognormal sigma of the first prompt (assumption). Wide spreads round the smallest first
    # prompts to 0 tokens (seen from sigma 2.5 with 500 trajectories); up to 1 stays clear.
    initial_prompt_sigma: Annotated[float, Between(0, 1)] = 0.5
    append_scale: PosFloat = 1.0  # multiply every turn's appended tokens (the paper's scaling study)
    gen_scale: PosFloat = 1.0  # multiply every turn's generated tokens
    # The turn-count tail (assumption): the lognormal sigma of turns per trajectory is derived from
    # the published means (0.73 at 64K: max ~1,000 turns for a mean of 157); this multiplies it.
    turns_sigma_scale: PosFloat = 1.0
    assumed: tuple[str, ...] = ()

    def _validate(self, where: str) -> None:
        _check_assumed(self, where)
        seen: set[int] = set()
        for i, row in enumerate(self.table):
            _need(row.mal not in seen, f"{where}.table[{i}].mal", f"MAL {row.mal} has two rows")
            seen.add(row.mal)
        if self.source == "synthetic":
            _need(
                bool(self.table),
                f"{where}.table",
                "the synthetic generator needs trace statistics: rows of {mal, turns, append, "
                "generated, final_length, prompt_context}",
            )


@dataclass(frozen=True)
class SystemSpec:
    name: str
    layerwise: bool  # layerwise prefill: only one layer's KV in HBM at a time
    dual_path: bool  # storage reads may go through the DE node's SNIC
    free_io: bool = False  # oracle: storage reads, H2D/D2H and P->D transfers cost nothing
    scheduler: Scheduler = "least_loaded"  # inter-engine: least_loaded | round_robin | dualpath
    batching: Batching = "tokens"  # intra-engine: tokens (FIFO token budget) | quota (compute quota + chunks)
    split_read: bool = False  # our extension: split one request's read across both sides
    qos: bool = True  # CNIC traffic manager: model collectives ahead of KV (else fair sharing)
    dram_tier_tb: NonNegFloat = 0.0  # SGL(MC): DRAM store tier per node in front of storage (TB)
    tp_dense: PosInt = 1  # GPUs per engine (tensor parallel) for dense models; MoE models keep DP+EP

    def _validate(self, where: str) -> None:
        _need(
            not self.split_read or self.dual_path,
            f"{where}.split_read",
            "splitting a read across the PE and DE sides needs dual_path=true",
        )


@dataclass(frozen=True)
class SimSpec:
    prefill_batch_tokens: PosInt = 16384  # new tokens per prefill batch, `tokens` batching (assumption)
    quota_ms: PosFloat = 300.0  # compute quota per prefill step, `quota` batching (paper)
    min_chunk_tokens: PosInt = 64  # smallest chunk worth splitting a request into (assumption)
    alpha_s: PosFloat = 3.0  # PE choice: a node whose read queue drains within alpha_s is preferred
    beta_s: PosFloat = 5.0  # PE choice: overloaded beyond beta_s of one GPU's prefill work
    qos_weight: Fraction = 0.99  # CNIC share of the high-priority (model) lane when KV is active
    record_turns: bool = False  # keep every finished turn (tests); off at scale
    progress: bool = True


# lognormal think time: the sigma of ln(think time). Assumed (the paper tested no think time): the
# gaps between an agent's turns in the Mooncake conversation trace have sigma 0.98 (online/think.py,
# trace_gaps; tests/test_intervals.py checks it), rounded.
THINK_SIGMA = 1.0
# trace think time: a Mooncake-format trace whose gaps between one agent's turns are drawn (rescaled)
THINK_TRACE = "dualpath_jax/workload/data/mooncake/conversation_trace.jsonl"


@dataclass(frozen=True)
class ThinkSpec:
    """Tool/think time between an agent's turns (the paper tested none). `sigma` shapes
    `lognormal` only and `trace` feeds `trace` only (online/think.py; docs/online.md)."""

    kind: ThinkKind = "none"  # none | fixed | exponential | lognormal | trace
    mean_s: NonNegFloat = 0.0
    sigma: PosFloat = THINK_SIGMA
    trace: str = THINK_TRACE

    def _validate(self, where: str) -> None:
        if self.kind == "none":
            _need(
                self.mean_s == 0,
                f"{where}.mean_s",
                f"{self.mean_s:g} s of think time has no effect "
                f"with {where}.kind=none; set {where}.kind=fixed, exponential, lognormal or trace",
            )
        else:
            _need(
                self.mean_s > 0,
                f"{where}.mean_s",
                f"{where}.kind={self.kind} needs a mean think time "
                f"> 0, got {self.mean_s:g} (no think time is {where}.kind=none)",
            )
        _need(
            self.kind == "lognormal" or self.sigma == THINK_SIGMA,
            f"{where}.sigma",
            f"{self.sigma:g} has no effect with {where}.kind={self.kind}; it shapes {where}.kind=lognormal only",
        )
        _need(
            self.kind == "trace" or self.trace == THINK_TRACE,
            f"{where}.trace",
            f"{self.trace!r} has no effect with {where}.kind={self.kind}; it is read by {where}.kind=trace only",
        )


@dataclass(frozen=True)
class SLOSpec:
    ttft_s: PosFloat = 4.0
    tpot_s: PosFloat = 0.050
    percentile: Annotated[float, Between(0, 100, lo_open=True)] = 90.0  # judged on this percentile


@dataclass(frozen=True)
class OnlineSpec:
    aps: NonNegFloat = 0.0  # agents per second (set by +aps on the command line)
    arrivals: Arrivals = "poisson"  # poisson | trace (the trajectories' first-turn timestamps)
    duration_s: PosFloat = 1800.0  # agents arrive during this window
    warmup_s: NonNegFloat = 300.0  # requests arriving earlier are not judged
    sample_s: PosFloat = 10.0  # working-set sampling interval
    think: ThinkSpec = ThinkSpec()
    slo: SLOSpec = SLOSpec()
    capacity_lo: PosFloat = 0.05  # capacity search: start of the APS bracket
    capacity_rel_tol: PosFloat = 0.05  # stop when the bracket is this tight
    capacity_max_probes: PosInt = 14

    def _validate(self, where: str) -> None:
        _need(
            self.warmup_s < self.duration_s,
            f"{where}.warmup_s",
            f"must be < {where}.duration_s={self.duration_s:g} (else no request is judged), got {self.warmup_s:g}",
        )


@dataclass(frozen=True)
class TestbedSpec:
    model: TestbedModel = "tiny"  # dualpath_jax.model.get_config name: tiny (CPU tests); dsv3_e32 on the GPU bench
    n_layers: NonNegInt = 0  # 0: the config's own; else a shorter slice of the model (e.g. ds16b, 8)
    dtype: TestbedDtype = ""  # "": the config's own (tiny float32, ds16b bfloat16)
    moe_backend: MoeBackend = ""  # "": the config's own
    store_path: str = ""  # "": TensorStore memory driver; else a directory (created if missing)
    tokens_per_block: PosInt = 16  # KV store Full Block tokens (256 in the GPU bench)
    capacity_blocks: PosInt = 65536  # KV store slots
    io_window: PosInt = 16  # KV store block I/Os in flight (kvstore's default 16)
    max_prefill_batch: PosInt = 4  # requests per prefill batch (same prefix length), at most
    max_decode_batch: PosInt = 8  # decode slots per decode engine (one KVCache of this batch)
    max_context: PosInt = 1024  # tokens per decode slot; longer turns are an error
    prefetch_layers: PosInt = 2  # layerwise: layers whose KV may be in flight ahead of compute
    # Threads per PE that copy finished layers' KV (already on its way to the host) into the DE
    # buffers. One was too few on the H200 host: the PE-path turns' sends fell behind the compute.
    send_threads: PosInt = 4
    max_turns: NonNegInt = 0  # 0: every turn of each trajectory; else only the first max_turns
    seed: Seed = 0  # weights and token streams
    keep_logits: bool = False  # keep each turn's first-token logits (tests)
    force_read_side: ReadSide = ""  # tests/diagnostics: "pe" or "de" overrides the scheduler's read side
    warmup: bool = True  # compile every prefill/decode shape before the timed run
    dram_buffer_gb: NonNegFloat = 0.0  # 0: unbounded; else per-node DRAM buffer cap (reported, checked)
    # Python's GIL switch interval during a run (CPython's default is 5 ms): an engine thread whose
    # GPU work just finished waits up to this long for the GIL while the store's I/O threads run,
    # and that wait is an idle GPU. Ours, not the paper's; 0 leaves Python's own.
    gil_switch_s: NonNegFloat = 0.0005
    verify_reads: bool = True  # check every read block's checksums (the store's default)
    # Across processes (serving/mp, docs/testbed.md "Across processes and hosts"): 0 runs every
    # engine in this process; N > 0 runs each emulated node as its own OS process of a
    # jax.distributed job (N must be the cluster's node count), the scheduler in this one.
    processes: NonNegInt = 0
    # "": start the node processes here, on this host; else the zmq address ("tcp://*:5555") where
    # this scheduler waits for node processes started elsewhere (SLURM, by hand)
    scheduler_bind: str = ""
    node_timeout_s: PosFloat = 10.0  # a node silent this long (no heartbeat) fails the run, named

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class TrackingSpec:
    wandb: bool = True
    project: str = "dualpath-jax"
    mode: WandbMode = "offline"


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelSpec | None  # the simulator's model; None with backend=real (it serves testbed.model)
    cluster: ClusterSpec
    hardware: HardwareSpec
    workload: WorkloadSpec
    systems: tuple[SystemSpec, ...]
    costmodel: CostModelSpec = CostModelSpec()
    system_set: str = "paper"  # which configs/system/ file the systems came from
    sim: SimSpec = SimSpec()
    online: OnlineSpec = OnlineSpec()
    testbed: TestbedSpec = TestbedSpec()
    tracking: TrackingSpec = TrackingSpec()
    backend: Backend = "sim"
    results_dir: str = "results"
    seed: Seed = 0

    def _validate(self, where: str) -> None:
        if self.model is None:
            _need(self.backend == "real", f"{where}.model", "the simulator needs a model (model=<name>)")
        else:
            check_kv_format(self.model, f"{where}.model")
            peaks = self.hardware.gpu.peak_tflops
            _need(
                self.model.compute_dtype in peaks,
                f"{where}.model.compute_dtype",
                f"{self.model.compute_dtype!r} has no peak rate in {where}.hardware.gpu.peak_tflops "
                f"(known: {', '.join(sorted(peaks))})",
            )
        _need(bool(self.systems), f"{where}.system", "needs at least one system")
        names = [s.name for s in self.systems]
        dup = sorted({n for n in names if names.count(n) > 1})
        _need(not dup, f"{where}.system", f"system name(s) {dup} appear twice")
        reserve, hbm = self.cluster.activation_reserve_gb, self.hardware.gpu.hbm_gb
        _need(
            reserve < hbm,
            f"{where}.cluster.activation_reserve_gb",
            f"must be < {where}.hardware.gpu.hbm_gb={hbm:g}, got {reserve:g}",
        )
        if self.backend == "sim" and self.model.routed_experts == 0:
            g = self.cluster.gpus_per_node
            for s in self.systems:  # dense models: an engine is tp_dense GPUs (costmodel.deploy.engine_view)
                _need(
                    g % s.tp_dense == 0,
                    f"{where}.system.{s.name}.tp_dense",
                    f"{s.tp_dense} does not divide {where}.cluster.gpus_per_node={g}",
                )
        if self.online.arrivals == "trace":
            _need(
                self.workload.source != "synthetic",
                f"{where}.online.arrivals",
                "trace replays the trajectories' first-turn timestamps, and workload=synthetic has "
                "none; use online.arrivals=poisson or a timestamped trace (workload=mooncake)",
            )


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _literal_text(value: Any) -> str:
    return '""' if value == "" else str(value)


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert a plain YAML value to `tp`, naming `where` on failure. `Annotated` metadata
    (`Bound`) is checked after the conversion; `Literal` values must be one of its arguments."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        value = _convert(value, args[0], where)
        for meta in tp.__metadata__:
            if isinstance(meta, Bound):
                meta.check(value, where)
        return value
    if origin is Literal:
        for choice in args:
            if type(value) is type(choice) and value == choice:
                return value
        _fail(where, f"must be one of {' | '.join(map(_literal_text, args))}, got {_show(value)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # already built and checked (build_config's systems)
            return value
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            _fail(where, f"expected a list, got {_show(value)}")
        item_tp = args[0] if args else Any
        return tuple(_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (collections.abc.Mapping, dict) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            _fail(where, f"expected a mapping, got {_show(value)}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        _fail(where, f"expected true/false, got {_show(value)}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, f"expected {'an integer' if tp is int else 'a number'}, got {_show(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            _fail(where, f"must be a finite number, got {value!r}")
        if abs(value) > MAX_INT:
            _fail(where, f"must be within +-2**53, got {_show(value)}")
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                _fail(where, f"expected an integer, got {value!r}")
            return int(value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(where, f"expected a string, got {_show(value)}")
        return value
    _fail(where, f"unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from a plain mapping; unknown or missing fields are errors. After
    building, the class's `_validate(where)` (if it has one) checks rules across its fields."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {_show(data)}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in data if k not in fields), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required field is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "_validate", None)
    if validate is not None:
        validate(where)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain JSON-able structure (for results files)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj

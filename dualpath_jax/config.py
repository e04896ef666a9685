"""Frozen dataclass schemas for every experiment input.

Hydra composes YAML at the entry point; `from_dict` converts it here once, checking every field, so
nothing below the entry point sees a DictConfig. Errors name the section and field at fault.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names the field."""


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a served model, enough to count its FLOPs, weight bytes and KV bytes."""

    name: str
    layers: int
    d_model: int
    heads: int
    vocab: int
    attention: str  # "mla" (DeepSeek MLA), "mla_dsa" (MLA + DeepSeek Sparse Attention), "gqa"
    # MLA
    q_lora: int = 0  # 0: no query compression
    kv_lora: int = 0
    qk_nope: int = 0
    qk_rope: int = 0
    v_head: int = 0
    # DSA indexer (mla_dsa only)
    dsa_topk: int = 0
    indexer_heads: int = 0
    indexer_dim: int = 0
    # GQA
    kv_heads: int = 0
    head_dim: int = 0
    # FFN / MoE
    dense_layers: int = 0  # first-k dense layers (all layers for a dense model)
    dense_ffn: int = 0
    routed_experts: int = 0
    top_k: int = 0
    shared_experts: int = 0
    expert_ffn: int = 0
    # Bytes
    weight_bytes: float = 1.0  # per parameter (FP8 = 1, BF16 = 2)
    compute_dtype: str = "fp8"  # which peak rate the matmuls run at: fp8 | bf16
    kv_format: str = "fp8_indexer"
    # storage format -> {"main": bytes, "indexer": bytes} per token per layer
    kv_bytes_per_token_layer: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # Weight placement: routed experts sharded over all GPUs of a role ("role", EP) or of a node
    # ("node"); dense FFN tensor-parallel over `dense_ffn_tp` GPUs; attention always replicated.
    expert_shard: str = "role"
    dense_ffn_tp: int = 1
    paper_cluster: str = ""  # the cluster the paper runs this model on (cluster=paper picks it)
    assumed: tuple[str, ...] = ()  # names of fields that are our assumptions, not the paper's


@dataclass(frozen=True)
class GPUSpec:
    name: str
    hbm_gb: float
    hbm_tbps: float  # TB/s
    peak_tflops: Mapping[str, float]  # dense peak per dtype


@dataclass(frozen=True)
class CalibrationSpec:
    """Independent anchors that fix the cost model's efficiency factors (never the paper's JCTs)."""

    anchor_model: str
    prefill_tokens_per_s_node: float
    prefill_hit_ratio: float
    prefill_prompt_tokens: int
    decode_tokens_per_s_node: float
    decode_tokens_per_s_request: float
    decode_context_tokens: int
    decode_gpus: int
    decode_step_overhead_ms: float
    hbm_efficiency: float
    source: str = ""
    assumed: tuple[str, ...] = ()


@dataclass(frozen=True)
class HardwareSpec:
    gpu: GPUSpec
    calibration: CalibrationSpec


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    prefill_nodes: int
    decode_nodes: int
    gpus_per_node: int = 8
    cnic_gbps: float = 400.0  # per GPU, compute network
    snic_gbps: float = 400.0  # per node, storage network
    snics_per_node: int = 1
    dram_gbps: float = 500.0 * 8  # per node DRAM bandwidth, in Gbit/s (500 GB/s)
    activation_reserve_gb: float = 8.0  # HBM kept for activations and workspace per GPU
    assumed: tuple[str, ...] = ()

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

    mal: int
    turns: float
    append: float
    generated: float
    final_length: float
    prompt_context: float


@dataclass(frozen=True)
class WorkloadSpec:
    source: str  # "synthetic" | "jsonl" | "mooncake"
    agents: int
    mal: int
    mal_label: str
    trajectories: int = 500
    seed: int = 0
    path: str = ""  # jsonl / mooncake file
    table: tuple[TraceStats, ...] = ()  # synthetic: the published statistics per MAL
    turn_size_shape: float = 2.0  # gamma shape of per-turn append/gen sizes (assumption)
    initial_prompt_sigma: float = 0.5  # lognormal sigma of the first prompt (assumption)
    append_scale: float = 1.0  # multiply every turn's appended tokens (the paper's scaling study)
    gen_scale: float = 1.0  # multiply every turn's generated tokens
    assumed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SystemSpec:
    name: str
    layerwise: bool  # layerwise prefill: only one layer's KV in HBM at a time
    dual_path: bool  # storage reads may go through the DE node's SNIC
    free_io: bool = False  # oracle: storage reads, H2D/D2H and P->D transfers cost nothing
    scheduler: str = "least_loaded"  # inter-engine: least_loaded | round_robin | dualpath
    batching: str = "tokens"  # intra-engine: tokens (FIFO token budget) | quota (compute quota + chunks)
    split_read: bool = False  # our extension: split one request's read across both sides
    qos: bool = True  # CNIC traffic manager: model collectives ahead of KV (else fair sharing)
    dram_tier_tb: float = 0.0  # SGL(MC): DRAM store tier per node in front of storage (TB)
    tp_dense: int = 1  # GPUs per engine (tensor parallel) for dense models; MoE models keep DP+EP


@dataclass(frozen=True)
class SimSpec:
    prefill_batch_tokens: int = 16384  # new tokens per prefill batch, `tokens` batching (assumption)
    quota_ms: float = 300.0  # compute quota per prefill step, `quota` batching (paper)
    min_chunk_tokens: int = 64  # smallest chunk worth splitting a request into (assumption)
    alpha_s: float = 3.0  # PE choice: a node whose read queue drains within alpha_s is preferred
    beta_s: float = 5.0  # PE choice: overloaded beyond beta_s of one GPU's prefill work
    qos_weight: float = 0.99  # CNIC share of the high-priority (model) lane when KV is active
    record_turns: bool = False  # keep every finished turn (tests); off at scale
    progress: bool = True


@dataclass(frozen=True)
class ThinkSpec:
    """Tool/think time between an agent's turns (the paper tested none)."""

    kind: str = "none"  # none | fixed | exponential
    mean_s: float = 0.0


@dataclass(frozen=True)
class SLOSpec:
    ttft_s: float = 4.0
    tpot_s: float = 0.050
    percentile: float = 90.0  # judged on this percentile of the measurement window's requests


@dataclass(frozen=True)
class OnlineSpec:
    aps: float = 0.0  # agents per second (set by +aps on the command line)
    arrivals: str = "poisson"  # poisson | trace (the trajectories' first-turn timestamps)
    duration_s: float = 1800.0  # agents arrive during this window
    warmup_s: float = 300.0  # requests arriving earlier are not judged
    sample_s: float = 10.0  # working-set sampling interval
    think: ThinkSpec = ThinkSpec()
    slo: SLOSpec = SLOSpec()
    capacity_lo: float = 0.05  # capacity search: start of the APS bracket
    capacity_rel_tol: float = 0.05  # stop when the bracket is this tight
    capacity_max_probes: int = 14


@dataclass(frozen=True)
class TestbedSpec:
    model: str = "tiny"  # dualpath_jax.model.get_config name: tiny (CPU tests); dsv3_e32 on the GPU bench
    n_layers: int = 0  # 0: the config's own; else a shorter slice of the model (e.g. ds16b, 8)
    dtype: str = ""  # "": the config's own (tiny float32, ds16b bfloat16)
    moe_backend: str = ""  # "": the config's own
    store_path: str = ""  # "": TensorStore memory driver; else a directory (created if missing)
    tokens_per_block: int = 16  # KV store Full Block tokens (256 in the GPU bench)
    capacity_blocks: int = 65536  # KV store slots
    io_window: int = 16  # KV store block I/Os in flight (kvstore's default 16)
    max_prefill_batch: int = 4  # requests per prefill batch (same prefix length), at most
    max_decode_batch: int = 8  # decode slots per decode engine (one KVCache of this batch)
    max_context: int = 1024  # tokens per decode slot; longer turns are an error
    prefetch_layers: int = 2  # layerwise: layers whose KV may be in flight ahead of compute
    # Threads per PE that copy finished layers' KV (already on its way to the host) into the DE
    # buffers. One was too few on the H200 host: the PE-path turns' sends fell behind the compute.
    send_threads: int = 4
    max_turns: int = 0  # 0: every turn of each trajectory; else only the first max_turns
    seed: int = 0  # weights and token streams
    keep_logits: bool = False  # keep each turn's first-token logits (tests)
    force_read_side: str = ""  # tests/diagnostics: "pe" or "de" overrides the scheduler's read side
    warmup: bool = True  # compile every prefill/decode shape before the timed run
    dram_buffer_gb: float = 0.0  # 0: unbounded; else per-node DRAM buffer cap (reported, checked)
    # Python's GIL switch interval during a run (CPython's default is 5 ms): an engine thread whose
    # GPU work just finished waits up to this long for the GIL while the store's I/O threads run,
    # and that wait is an idle GPU. Ours, not the paper's; 0 leaves Python's own.
    gil_switch_s: float = 0.0005
    verify_reads: bool = True  # check every read block's checksums (the store's default)

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class TrackingSpec:
    wandb: bool = True
    project: str = "dualpath-jax"
    mode: str = "offline"


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelSpec
    cluster: ClusterSpec
    hardware: HardwareSpec
    workload: WorkloadSpec
    systems: tuple[SystemSpec, ...]
    system_set: str = "paper"  # which configs/system/ file the systems came from
    sim: SimSpec = SimSpec()
    online: OnlineSpec = OnlineSpec()
    testbed: TestbedSpec = TestbedSpec()
    tracking: TrackingSpec = TrackingSpec()
    backend: str = "sim"
    results_dir: str = "results"
    seed: int = 0


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Convert a plain YAML value to `tp`, naming `where` on failure."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        return tuple(_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (collections.abc.Mapping, dict) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if tp is int and float(value) != int(value):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from a plain mapping; unknown or missing fields are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; "
                          f"known: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required field is missing")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain JSON-able structure (for results files)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj

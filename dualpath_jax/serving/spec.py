"""Testbed-only settings: which Flax model, which KV store, block and batch sizes.

`ExperimentConfig.testbed: TestbedSpec = TestbedSpec()` carries them; the cluster shape (nodes,
devices per node, the emulated storage NIC cap) comes from `ClusterSpec` as in the simulator.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestbedSpec:
    model: str = "tiny"  # dualpath_jax.model.get_config name: tiny (CPU tests) | ds16b (GPU)
    n_layers: int = 0  # 0: the config's own; else a shorter slice of the model (e.g. ds16b, 8)
    dtype: str = ""  # "": the config's own (tiny float32, ds16b bfloat16)
    moe_backend: str = ""  # "": the config's own
    store_path: str = ""  # "": TensorStore memory driver; else a directory (created if missing)
    tokens_per_block: int = 16  # KV store Full Block tokens (64 on the GPU host)
    capacity_blocks: int = 65536  # KV store slots
    max_prefill_batch: int = 4  # requests per prefill batch (same prefix length), at most
    max_decode_batch: int = 8  # decode slots per decode engine (one KVCache of this batch)
    max_context: int = 1024  # tokens per decode slot; longer turns are an error
    prefetch_layers: int = 2  # layerwise: layers whose KV may be in flight ahead of compute
    max_turns: int = 0  # 0: every turn of each trajectory; else only the first max_turns
    seed: int = 0  # weights and token streams
    keep_logits: bool = False  # keep each turn's first-token logits (tests)
    force_read_side: str = ""  # tests/diagnostics: "pe" or "de" overrides the scheduler's read side
    warmup: bool = True  # compile every prefill/decode shape before the timed run
    dram_buffer_gb: float = 0.0  # 0: unbounded; else per-node DRAM buffer cap (reported, checked)

    __test__ = False  # not a pytest class

"""What an engine of a run may see: a frozen view of the run's settings and shared parts, plus a
callback to report a failure. The run's mutable state (the dispatcher, the loads, the finished
turns) stays with `SystemRun`; engines hand turns back through the callbacks they are given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import SimSpec, SystemSpec, TestbedSpec
from ..model import ModelConfig
from .cluster import EmulatedCluster
from .kvsource import KVSource


@dataclass(frozen=True)
class EngineContext:
    mcfg: ModelConfig
    spec: TestbedSpec
    system: SystemSpec
    sim: SimSpec  # batching settings shared with the simulator (prefill_batch_tokens, quota_ms)
    cluster: EmulatedCluster  # devices, node buffers, link counters
    kv: KVSource
    fail: Callable[[BaseException], None]  # a worker thread's error ends the run (raised by serve)

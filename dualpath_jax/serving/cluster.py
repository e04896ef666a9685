"""Emulated nodes on one host: engines bound to JAX devices, per-node DRAM buffers and SNICs.

Engine ids and node roles come from `dualpath_jax.cluster.Topology` (the simulator's own):
prefill nodes first, `gpus_per_node` engines (devices) per node, engine id = node * g + i and
engine e runs on `jax.devices()[e]`. Each node's storage NIC is a `kvstore.Throttle` at
`cluster.snic_gbps`, one per direction, shared by every read (write) through that node.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import jax
import numpy as np

from ..cluster import Topology
from ..config import ClusterSpec
from ..kvstore import Throttle
from ..link import DrainSeconds, FluidLink
from ..scheduling import GroupLoad


class LinkBytes:
    """Thread-safe byte counters per link name (e.g. "snic_read[0]", "pe_cnic_in[0]")."""

    def __init__(self):
        self._lock = threading.Lock()
        self.bytes: dict[str, float] = defaultdict(float)

    def add(self, link: str, nbytes: float) -> None:
        with self._lock:
            self.bytes[link] += nbytes

    def total(self, prefix: str) -> float:
        with self._lock:
            return sum(v for k, v in self.bytes.items() if k.startswith(prefix))


class DramBuffer:
    """A node's host DRAM staging buffer: numpy arrays per request, with a byte count and peak."""

    def __init__(self, node: int, cap_bytes: float = 0.0):
        self.node, self.cap = node, cap_bytes
        self._lock = threading.Lock()
        self._arrays: dict = {}
        self.held = 0
        self.peak = 0

    def alloc(self, key, shape, dtype) -> np.ndarray:
        arr = np.empty(shape, dtype)
        with self._lock:
            self._arrays[key] = arr
            self.held += arr.nbytes
            self.peak = max(self.peak, self.held)
        return arr

    def get(self, key):
        return self._arrays[key]

    def free(self, key) -> None:
        with self._lock:
            arr = self._arrays.pop(key, None)
            if arr is not None:
                self.held -= arr.nbytes


@dataclass
class Node:
    id: int
    role: str  # "prefill" | "decode"
    devices: list
    snic_read: Throttle
    snic_write: Throttle
    buffer: DramBuffer
    read_queue: FluidLink  # the reads booked on the node at placement (the scheduler's read_q)
    engines: list[int] = field(default_factory=list)


class EmulatedCluster:
    def __init__(self, spec: ClusterSpec, dram_buffer_gb: float = 0.0, devices=None):
        self.spec = spec
        self.topo = Topology(spec)
        devices = list(devices if devices is not None else jax.devices())
        need = self.topo.nodes * spec.gpus_per_node
        if len(devices) < need:
            raise ValueError(
                f"cluster {spec.name}: {self.topo.nodes} nodes x {spec.gpus_per_node} "
                f"devices need {need} JAX devices, found {len(devices)} "
                f"({devices[0].platform}); on CPU set "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={need}"
            )
        g = spec.gpus_per_node
        rate = spec.snic_bytes_per_s
        self.nodes = [
            Node(
                n,
                self.topo.node_role(n),
                devices[n * g : (n + 1) * g],
                Throttle(rate, name=f"snic_read[{n}]"),
                Throttle(rate, name=f"snic_write[{n}]"),
                DramBuffer(n, dram_buffer_gb * 1e9),
                FluidLink(f"read_queue[{n}]", rate, time.perf_counter),
                engines=list(range(n * g, (n + 1) * g)),
            )
            for n in range(self.topo.nodes)
        ]
        self.devices = devices[:need]
        self.links = LinkBytes()
        self.link_s = LinkBytes()  # seconds spent in timed transfers, per link (DE->PE hops)
        self.hop_s = LinkBytes()  # DE->PE device-to-device hops: seconds per hop size (str bytes)
        self.hop_n = LinkBytes()  # ... and how many hops of that size
        self.read_queue_s = DrainSeconds([n.read_queue for n in self.nodes])

    def device(self, engine: int):
        return self.devices[engine]

    def node_of(self, engine: int) -> Node:
        return self.nodes[engine // self.spec.gpus_per_node]

    def book_read(self, node: int, nbytes: float) -> None:
        """Book a read on the node's queue (what the scheduler sees as its read queue)."""
        self.nodes[node].read_queue.transfer(nbytes)

    def load_groups(self, de_room_bytes: float) -> tuple[list[GroupLoad], list[GroupLoad]]:
        """The scheduler's view of the engines, one group per node; each DE has `de_room_bytes` for KV."""
        pes, des = self.topo.engines()
        for e in des:
            e.free_kv = de_room_bytes

        def groups(engines):
            by: dict[int, list] = {}
            for e in engines:
                by.setdefault(e.node, []).append(e)
            return [GroupLoad(node=n, engines=es, free_kv=sum(e.free_kv for e in es)) for n, es in sorted(by.items())]

        return groups(pes), groups(des)

"""`costmodel=profiled`: prefill and decode times from a table measured on one GPU
(benchmarks/profile_costs.py; profile_table.py reads and interpolates it), everything else as v2.

The table times one GPU that holds the whole model, as one testbed engine does: so one simulated
GPU is one engine, the cluster must have one GPU per node (cluster=testbed_1p1d), and there is no
expert parallelism: v2's EP terms (all-to-all floor and latency, the prefill weight floor, lockstep
decode across an EP group, the all-to-all's CNIC traffic) are absent, since the measured times
hold whatever the model's step costs on that GPU. Kept from v2: the storage efficiency and read
latency, the per-turn fixed costs, the DRAM buffer, write-back through DRAM and DE CNIC charging.
HBM per GPU is the profiled device's (the table's `device_memory_gb`) when the table has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .analytic import CostModel
from .profile_table import ProfileTable


@dataclass
class ProfiledCostModel(CostModel):
    table: ProfileTable | None = field(default=None, kw_only=True)

    def __post_init__(self):
        if self.table is None:
            raise ValueError("costmodel=profiled needs a table (costmodel.table)")
        if self.cluster.gpus_per_node != 1:
            raise ValueError(
                f"cluster.gpus_per_node={self.cluster.gpus_per_node}: costmodel=profiled times one GPU that "
                f"holds the whole model (a testbed engine); use a cluster of one GPU per node, e.g. "
                f"cluster=testbed_1p1d"
            )
        super().__post_init__()
        # one GPU holds every expert: no EP group, no all-to-all (its costs are inside the table)
        self.prefill_ep = self.decode_ep = 1
        self.prefill_ep_nodes = self.decode_ep_nodes = 1
        self.prefill_weights = self.decode_weights = self.counts.weight_bytes_per_gpu(1, 1)
        self.decode_ep_floor_s = self.prefill_fixed_s = self.prefill_weight_floor_s = 0.0
        self.decode_lockstep = False
        self.decode_coef = None  # not linear in the batch sums: the engines call decode_step_time
        # the testbed caps a prefill batch too (testbed.max_prefill_batch); here the table's largest
        self.prefill_max_batch = self.table.prefill_grid["batch"][-1]

    def prefill_time(self, flops: float) -> float:
        raise NotImplementedError("costmodel=profiled prices turns from its table, not FLOPs (turn_prefill_s)")

    def turn_prefill_s(self, cached: float, new: float) -> float:
        return self.table.prefill_time(cached, new, 1)

    def prefill_split(self, cached: int, new: int) -> tuple[float, float]:
        """The turn alone in a batch, all of it on its GPU (no share of MoE work on other GPUs)."""
        return self.table.prefill_time(cached, new, 1), 0.0

    def prefill_batch_time(self, shapes: list[tuple[int, int]]) -> float:
        """One GPU's prefill step of `shapes` [(cached, new)]: the table at the batch's mean shape
        (exact for the testbed's batches, which hold one shape)."""
        b = len(shapes)
        return self.table.prefill_time(sum(c for c, _ in shapes) / b, sum(n for _, n in shapes) / b, b)

    def decode_step_time(self, batch: int, keys: float, context: float) -> float:
        """The table at the batch's mean context (the attended keys are the model's own)."""
        if batch == 0:
            return 0.0
        return self.table.decode_time(batch, context / batch)

    def prefill_step(self, compute: float, comm: float) -> float:
        return max(compute, comm)

    def decode_comm_time(self, batch: int) -> float:
        return 0.0

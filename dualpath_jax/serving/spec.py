"""Testbed-only settings (defined with the other schemas in dualpath_jax/config.py): which Flax
model, which KV store, block and batch sizes.

`ExperimentConfig.testbed: TestbedSpec = TestbedSpec()` carries them; the cluster shape (nodes,
devices per node, the emulated storage NIC cap) comes from `ClusterSpec` as in the simulator.
"""

from ..config import TestbedSpec

__all__ = ["TestbedSpec"]

"""The real testbed: engines on JAX devices, real KV bytes from the TensorStore KV store, emulated
storage NICs. Entry point: `run_testbed(cfg)`. See docs/testbed.md."""

from ..config import TestbedSpec
from .report import TestbedMetrics
from .run import MeasuredRates, run_testbed
from .server import Testbed, model_config
from .system_run import SystemRun

__all__ = ["MeasuredRates", "SystemRun", "Testbed", "TestbedMetrics", "TestbedSpec", "model_config", "run_testbed"]

"""FLOP and byte counts per model, and the time model built on them."""

from .analytic import CostModel, Efficiency, calibrate
from .counts import ModelCounts, causal_keys

__all__ = ["CostModel", "Efficiency", "ModelCounts", "calibrate", "causal_keys"]

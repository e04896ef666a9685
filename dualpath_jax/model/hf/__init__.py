"""Hugging Face DeepSeek-V2 / V3 checkpoints (config.json + *.safetensors) into the NNX model,
without torch. See docs/model.md "Loading a Hugging Face checkpoint"."""

from .config import CheckpointError, HFConfig, read_config
from .weights import EP_AXIS, load_checkpoint, rope_pair_permutation

__all__ = ["CheckpointError", "EP_AXIS", "HFConfig", "load_checkpoint", "read_config", "rope_pair_permutation"]

"""Flax NNX DeepSeek-style MoE model (MLA with a latent cache, DeepSeekMoE). See docs/model.md."""

from .config import ModelConfig, get_config, known_configs
from .layerwise import LayerwisePrefill
from .model import (
    KVCache,
    Transformer,
    abstract_model,
    decode_step,
    insert_prefill,
    jit_decode_step,
    jit_prefill,
    make_model,
    make_model_fast,
    prefill,
)

__all__ = [
    "ModelConfig",
    "get_config",
    "known_configs",
    "KVCache",
    "Transformer",
    "abstract_model",
    "decode_step",
    "insert_prefill",
    "jit_decode_step",
    "jit_prefill",
    "make_model",
    "make_model_fast",
    "prefill",
    "LayerwisePrefill",
]

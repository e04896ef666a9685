"""Flax NNX DeepSeek-style MoE model (MLA with a joined latent+rope cache, DeepSeekMoE). See docs/model.md."""

from .attention import choose_attn_impl
from .cache import KVCache
from .config import ModelConfig, get_config, known_configs
from .layerwise import LayerwisePrefill
from .model import (
    PrefillOutput,
    Transformer,
    abstract_model,
    decode_step,
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
    "PrefillOutput",
    "Transformer",
    "abstract_model",
    "choose_attn_impl",
    "decode_step",
    "jit_decode_step",
    "jit_prefill",
    "make_model",
    "make_model_fast",
    "prefill",
    "LayerwisePrefill",
]

"""Text generation on a loaded checkpoint: tokenizer, sampling, jitted prefill + batched decode, and a
multi-turn chat whose prefix KV goes through the KV store. See docs/model.md "Text generation"."""

from .chat import ChatSession, TurnResult
from .engine import GenerateResult, Generation, Generator
from .prefix_store import LoadedPrefix, PrefixStore, checkpoint_namespace
from .sampling import SamplingParams, sample_next
from .stops import StopText
from .tokenizer import Tokenizer, stop_token_ids

__all__ = [
    "ChatSession",
    "Generation",
    "GenerateResult",
    "Generator",
    "LoadedPrefix",
    "PrefixStore",
    "SamplingParams",
    "StopText",
    "Tokenizer",
    "TurnResult",
    "checkpoint_namespace",
    "sample_next",
    "stop_token_ids",
]

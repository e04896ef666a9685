"""What the policy sees: plain, clock-free views of engines, nodes and requests.

Both worlds fill these in: the simulator from virtual-time state, the testbed from real engines.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineLoad:
    """One engine (one GPU, one DP rank) as the scheduler sees it."""

    id: int
    node: int
    role: str  # "prefill" | "decode"
    seq: int = 0  # unfinished requests assigned here
    tok: int = 0  # their total tokens
    free_kv: float = 0.0  # decode: HBM bytes free for KV (prefill: unused)


@dataclass(frozen=True)
class RequestView:
    """One turn waiting to be placed."""

    tokens: int  # prompt + generated tokens: what it will hold on the DE
    hit_tokens: int  # cached prefix to load from storage
    kv_bytes: float  # KV bytes it will hold on the DE (tokens * bytes per token)


@dataclass(frozen=True)
class Placement:
    pe: int  # engine id
    de: int  # engine id
    read_node: int  # node whose storage NIC reads the hit KV
    read_on_de: bool  # True: the DE read path (storage -> DE node -> PE GPU)

"""Which links a turn's KV bytes cross, per system: the data-path plan shared by sim and testbed.

PE read path: storage -> PE node SNIC -> PE DRAM; per layer PE DRAM -> PE GPU (H2D through the
PE GPU's CNIC), compute, then the layer's KV of all tokens PE GPU -> DE DRAM (CNIC out).
DE read path: storage -> DE node SNIC -> DE DRAM; per layer DE DRAM -> PE GPU over the compute
network (PE CNIC in), compute, only the new KV back to DE DRAM (PE CNIC out).
Both: once before decoding DE DRAM -> DE GPU (DE CNIC in); after decoding, the turn's new KV
(new prompt tokens + generated tokens) is persisted through the DE node's SNIC.
Oracle (free I/O): nothing crosses any link.

`TurnPlan` is the one source of a turn's bytes: per link (`bytes_on`, the names below, which the
simulator's links and the testbed's counters use), per node's DRAM, and per prefill chunk.
"""

from __future__ import annotations

from typing import NamedTuple

# Link names: where a transfer is charged.
SNIC_READ, SNIC_WRITE = "snic_read", "snic_write"  # a node's storage NIC, per direction
PE_CNIC_IN, PE_CNIC_OUT = "pe_cnic_in", "pe_cnic_out"  # the prefill GPU's compute NIC
DE_CNIC_IN = "de_cnic_in"  # the decode GPU's compute NIC (the H2D into the DE GPU)
DRAM = "dram"  # a node's host memory


class TurnPlan(NamedTuple):  # a tuple: built once per turn on the simulator's hot path
    de_read_fraction: float  # share of the storage read through the DE node (0: PE path, 1: DE path)
    read_pe_bytes: float  # hit KV through the PE node's SNIC
    read_de_bytes: float  # hit KV through the DE node's SNIC
    pe_in_bytes: float  # into the PE GPU during prefill (per layer when layerwise)
    pe_hit_out_bytes: float  # hit KV the DE buffer still needs from the PE (what the PE read)
    pe_out_bytes: float  # out of the PE GPU to the DE buffer during/after prefill
    de_h2d_bytes: float  # DE DRAM -> DE GPU before decoding
    write_bytes: float  # new KV persisted after decoding
    new_bytes: float = 0.0  # KV of the newly computed prompt tokens
    hit_tokens: int = 0  # cached prompt tokens the prefill reads
    kv_bytes_per_token: float = 0.0  # 0 when I/O is free (the oracle): every chunk moves nothing
    dram_pe_bytes: float = 0.0  # through the PE node's DRAM: what it read, in and out
    # through the DE node's DRAM: what it read (in and out), the PE's KV in, the DE GPU's H2D out
    dram_de_bytes: float = 0.0

    @property
    def read_bytes(self) -> float:
        return self.read_pe_bytes + self.read_de_bytes

    def bytes_on(self) -> dict[str, float]:
        return {
            SNIC_READ: self.read_bytes,
            PE_CNIC_IN: self.pe_in_bytes,
            PE_CNIC_OUT: self.pe_out_bytes,
            DE_CNIC_IN: self.de_h2d_bytes,
            SNIC_WRITE: self.write_bytes,
        }

    def chunk_in_bytes(self, done: int) -> float:
        """Into the PE GPU for a prefill chunk after `done` new tokens: the KV of all before it."""
        return (self.hit_tokens + done) * self.kv_bytes_per_token

    def chunk_out_bytes(self, done: int, tokens: int) -> float:
        """Out of the PE GPU for a chunk of `tokens`: their KV, and with the first chunk the hit KV
        the DE buffer needs from the PE."""
        return tokens * self.kv_bytes_per_token + (self.pe_hit_out_bytes if done == 0 else 0.0)


def plan_turn(
    *,
    cached: int,
    new: int,
    output: int,
    kv_bytes_per_token: float,
    de_read_fraction: float,
    free_io: bool,
    tier_hit_bytes: float = 0.0,
) -> TurnPlan:
    """The bytes of one turn on each link. A split read (0 < de_read_fraction < 1, our extension)
    reads that share through the DE node; `tier_hit_bytes` of the hit come from a DRAM tier
    instead of storage (they cross no SNIC, but still reach the PE GPU)."""
    if not 0.0 <= de_read_fraction <= 1.0:
        raise ValueError(f"de_read_fraction must be in [0, 1], got {de_read_fraction!r}")
    if free_io:
        return TurnPlan(de_read_fraction, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, hit_tokens=cached)
    f = de_read_fraction
    hit = cached * kv_bytes_per_token
    fresh = new * kv_bytes_per_token
    storage = hit - tier_hit_bytes
    pe_hit_out = (1.0 - f) * hit
    read_pe, read_de, h2d = (1.0 - f) * storage, f * storage, (cached + new) * kv_bytes_per_token
    return TurnPlan(
        de_read_fraction=f,
        read_pe_bytes=read_pe,
        read_de_bytes=read_de,
        pe_in_bytes=hit,
        pe_hit_out_bytes=pe_hit_out,
        pe_out_bytes=fresh + pe_hit_out,
        de_h2d_bytes=h2d,
        write_bytes=(new + output) * kv_bytes_per_token,
        new_bytes=fresh,
        hit_tokens=cached,
        kv_bytes_per_token=kv_bytes_per_token,
        dram_pe_bytes=2 * read_pe,
        dram_de_bytes=2 * read_de + fresh + pe_hit_out + h2d,  # this order since v1: the same floats
    )

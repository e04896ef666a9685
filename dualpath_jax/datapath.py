"""Which links a turn's KV bytes cross, per system: the data-path plan shared by sim and testbed.

PE read path: storage -> PE node SNIC -> PE DRAM; per layer PE DRAM -> PE GPU (H2D through the
PE GPU's CNIC), compute, then the layer's KV of all tokens PE GPU -> DE DRAM (CNIC out).
DE read path: storage -> DE node SNIC -> DE DRAM; per layer DE DRAM -> PE GPU over the compute
network (PE CNIC in), compute, only the new KV back to DE DRAM (PE CNIC out).
Both: once before decoding DE DRAM -> DE GPU (DE CNIC in); after decoding, the turn's new KV
(new prompt tokens + generated tokens) is persisted through the DE node's SNIC.
Oracle (free I/O): nothing crosses any link.
"""

from __future__ import annotations

from dataclasses import dataclass

# Link names: where a transfer is charged.
SNIC_READ, SNIC_WRITE = "snic_read", "snic_write"  # a node's storage NIC, per direction
PE_CNIC_IN, PE_CNIC_OUT = "pe_cnic_in", "pe_cnic_out"  # the prefill GPU's compute NIC
DE_CNIC_IN = "de_cnic_in"  # the decode GPU's compute NIC (the H2D into the DE GPU)


@dataclass(frozen=True)
class TurnPlan:
    de_read_fraction: float  # share of the storage read through the DE node (0: PE path, 1: DE path)
    read_pe_bytes: float  # hit KV through the PE node's SNIC
    read_de_bytes: float  # hit KV through the DE node's SNIC
    pe_in_bytes: float  # into the PE GPU during prefill (per layer when layerwise)
    pe_hit_out_bytes: float  # hit KV the DE buffer still needs from the PE (what the PE read)
    pe_out_bytes: float  # out of the PE GPU to the DE buffer during/after prefill
    de_h2d_bytes: float  # DE DRAM -> DE GPU before decoding
    write_bytes: float  # new KV persisted after decoding

    @property
    def read_on_de(self) -> bool:
        return self.de_read_fraction >= 0.5

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
        return TurnPlan(de_read_fraction, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    f = de_read_fraction
    hit = cached * kv_bytes_per_token
    fresh = new * kv_bytes_per_token
    storage = hit - tier_hit_bytes
    pe_hit_out = (1.0 - f) * hit
    return TurnPlan(
        de_read_fraction=f,
        read_pe_bytes=(1.0 - f) * storage,
        read_de_bytes=f * storage,
        pe_in_bytes=hit,
        pe_hit_out_bytes=pe_hit_out,
        pe_out_bytes=fresh + pe_hit_out,
        de_h2d_bytes=(cached + new) * kv_bytes_per_token,
        write_bytes=(new + output) * kv_bytes_per_token,
    )

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
    read_on_de: bool
    read_bytes: float  # hit KV through the read node's SNIC
    pe_in_bytes: float  # into the PE GPU during prefill (per layer when layerwise)
    pe_out_bytes: float  # out of the PE GPU to the DE buffer during/after prefill
    de_h2d_bytes: float  # DE DRAM -> DE GPU before decoding
    write_bytes: float  # new KV persisted after decoding

    def bytes_on(self) -> dict[str, float]:
        return {SNIC_READ: self.read_bytes, PE_CNIC_IN: self.pe_in_bytes,
                PE_CNIC_OUT: self.pe_out_bytes, DE_CNIC_IN: self.de_h2d_bytes,
                SNIC_WRITE: self.write_bytes}


def plan_turn(*, cached: int, new: int, output: int, kv_bytes_per_token: float,
              read_on_de: bool, free_io: bool) -> TurnPlan:
    if free_io:
        return TurnPlan(read_on_de, 0.0, 0.0, 0.0, 0.0, 0.0)
    hit = cached * kv_bytes_per_token
    fresh = new * kv_bytes_per_token
    return TurnPlan(
        read_on_de=read_on_de,
        read_bytes=hit,
        pe_in_bytes=hit,
        pe_out_bytes=fresh if read_on_de else hit + fresh,
        de_h2d_bytes=hit + fresh,
        write_bytes=(new + output) * kv_bytes_per_token,
    )

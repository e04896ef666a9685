"""Cluster topology (nodes, engines, link capacities) and the paper's P/D balance bound."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from .config import ClusterSpec
from .scheduling.state import EngineLoad


@dataclass(frozen=True)
class Topology:
    spec: ClusterSpec

    @property
    def nodes(self) -> int:
        return self.spec.prefill_nodes + self.spec.decode_nodes

    def node_role(self, node: int) -> str:
        return "prefill" if node < self.spec.prefill_nodes else "decode"

    def engines(self) -> tuple[list[EngineLoad], list[EngineLoad]]:
        """Fresh engine views: one engine per GPU, prefill nodes first. Ids are global."""
        g, pes, des = self.spec.gpus_per_node, [], []
        for node in range(self.nodes):
            role = self.node_role(node)
            for i in range(g):
                (pes if role == "prefill" else des).append(EngineLoad(id=node * g + i, node=node, role=role))
        return pes, des


def pd_bound_terms(spec: ClusterSpec) -> dict[str, float]:
    """Terms of  s/(g-s) <= P/D <= min{(g-2s)/s, (g-s)/(2s), (M/(B s) - 3)/2}  (PAPER.md section 5).

    s = per-node SNIC bandwidth in units of one CNIC's (B), M = per-node DRAM bandwidth.
    """
    g = spec.gpus_per_node
    s = spec.snic_bytes_per_s / spec.cnic_bytes_per_s
    m_over_b = spec.dram_gbps / spec.cnic_gbps
    return {
        "lower: s/(g-s) (PE CNICs absorb all SNIC reads)": s / (g - s),
        "upper: (g-2s)/s (DE CNICs carry DE-path reads)": (g - 2 * s) / s,
        "upper: (g-s)/(2s) (PE CNICs carry both paths)": (g - s) / (2 * s),
        "upper: (M/(B s) - 3)/2 (DE DRAM bandwidth)": (m_over_b / s - 3) / 2,
    }


def check_pd_ratio(spec: ClusterSpec, warn: bool = True) -> list[str]:
    """Legal either way; returns (and warns) which bound terms the P/D ratio breaks."""
    ratio = spec.prefill_nodes / spec.decode_nodes
    broken = []
    for name, value in pd_bound_terms(spec).items():
        if (name.startswith("lower") and ratio < value) or (name.startswith("upper") and ratio > value):
            broken.append(f"cluster {spec.name}: P/D = {ratio:.3f} breaks {name} = {value:.3f}")
    if warn:
        for msg in broken:
            warnings.warn(msg, stacklevel=2)
    return broken

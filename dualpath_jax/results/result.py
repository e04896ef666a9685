"""The result of an offline run: every system's metrics on the same agents, and the comparison."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ExperimentConfig
from ..costmodel import Efficiency
from ..metrics import SystemMetrics


@dataclass
class OfflineResult:
    cfg: ExperimentConfig
    efficiency: Efficiency
    systems: dict[str, SystemMetrics] = field(default_factory=dict)
    wall_s: float = 0.0
    # per system, which floor sets the JCT (`attribution.attribute`); cost model v2 runs only, so
    # that v1 results files keep their bytes
    attribution: dict[str, dict] = field(default_factory=dict)
    # per system, v2's metrics beside the paper's (`metrics.v2_metrics`): SNIC balance over time
    # windows, the TTFT's stages, DRAM buffer stalls; v2 runs only, for the same reason
    fidelity: dict[str, dict] = field(default_factory=dict)
    # per system, one record per turn (`results.turns`), with sim.record_turns only
    turns: dict[str, list[tuple]] = field(default_factory=dict)

    def comparison(self) -> dict[str, dict[str, float]]:
        base = self.systems["basic"].jct_s
        oracle = self.systems.get("oracle")
        out = {}
        for name, m in self.systems.items():
            row = {"speedup_vs_basic": base / m.jct_s}
            if oracle is not None:
                row["gap_to_oracle"] = m.jct_s / oracle.jct_s - 1.0
            out[name] = row
        return out

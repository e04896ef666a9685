"""The cluster simulation with agents arriving over time (online serving).

The offline `Simulation` with two of its arguments filled in: `TimedArrivals` starts each agent at
its arrival time and waits a tool/think time between its turns (or replays its trace timestamps),
and `OnlineRecorder` (a turn observer) keeps every finished turn's timeline and samples the working
set (KV bytes held in storage for live agents) over time. Nothing of the run itself changes.
"""

from __future__ import annotations

from array import array
from typing import Callable, Sequence

import numpy as np

from ..config import ExperimentConfig, SystemSpec
from ..costmodel import CostModel
from ..metrics import percentiles
from ..sim.simulator import Arrivals, Simulation, TurnObserver
from ..sim.turn import SimTurn
from ..workload.trace import Trajectory
from .latency import request_latencies, slo_met, summarize_latencies

FIELDS = ("arrive", "first", "second", "joined", "finished", "output", "sched", "alloc", "read", "pe_queue", "prefill",
          "queue_and_prefill")  # fmt: skip


class TimedArrivals(Arrivals):
    """Agent k starts at `starts[k]`; its next turn comes `think()` seconds after the last ends, or,
    replaying a trace, at its timestamp (relative to the agent's first turn) if that is later."""

    def __init__(self, agents: list[Trajectory], starts: Sequence[float], think: Callable[[], float], replay: bool):
        self.agents, self.starts, self.think, self.replay = agents, list(starts), think, replay

    def start(self, agent: int) -> float:
        return self.starts[agent]

    def gap(self, agent: int, index: int, now: float) -> float:
        turns = self.agents[agent].turns
        if self.replay and turns[index].t is not None:
            return max(0.0, turns[index].t - turns[0].t + self.starts[agent] - now)
        return self.think()


class OnlineRecorder(TurnObserver):
    """Every finished turn's timeline, and the working set sampled every `online.sample_s`."""

    def __init__(self, agents: int, kv_bytes_per_token: float, sample_s: float):
        self.kvb, self.sample_s = kv_bytes_per_token, sample_s
        self.rec = {k: array("d") for k in FIELDS}
        self.working_set = 0.0
        self.agent_bytes = [0.0] * agents
        self.series: list[tuple[float, float]] = []
        self.active = agents

    def attach(self, sim: Simulation) -> None:
        sim.loop.at(0.0, self._sample, sim.loop)

    def _sample(self, loop) -> None:
        self.series.append((loop.now, self.working_set))
        if self.active > 0:
            loop.allow(1)  # a sample advances time by sample_s > 0: outside the turns' budget
            loop.at(loop.now + self.sample_s, self._sample, loop)

    def scheduled(self, sim: Simulation) -> None:
        """Note when the head of the queue starts waiting for decode HBM (the TTFT breakdown's
        allocation wait)."""
        if sim.waiting:
            head = sim.waiting[0]
            if head.waits_hbm < 0 and not any(
                e.free_kv >= head.kv_bytes
                for g in sim.dispatcher.de_groups
                if g.free_kv >= head.kv_bytes
                for e in g.engines
            ):
                head.waits_hbm = sim.loop.now

    def turn_done(self, sim: Simulation, turn: SimTurn) -> None:
        r = self.rec
        alloc = turn.placed - turn.waits_hbm if turn.waits_hbm >= 0 else 0.0
        for key, value in (
            ("arrive", turn.arrive),
            ("first", turn.first_token),
            ("second", turn.second_token),
            ("joined", turn.joined),
            ("finished", turn.finished),
            ("output", turn.output),
            ("sched", turn.placed - turn.arrive - alloc),
            ("alloc", alloc),
            ("read", turn.ready - turn.placed),
            ("pe_queue", turn.started - turn.ready),
            ("prefill", turn.first_token - turn.started),
            ("queue_and_prefill", turn.first_token - turn.ready),  # v1's "prefill"
        ):
            r[key].append(value)
        grown = (turn.new + turn.output) * self.kvb  # KV this turn adds to the agent's stored context
        self.working_set += grown
        self.agent_bytes[turn.agent] += grown

    def agent_done(self, sim: Simulation, agent: int) -> None:
        self.active -= 1
        self.working_set -= self.agent_bytes[agent]  # a finished agent's KV is dropped
        self.agent_bytes[agent] = 0.0


class OnlineSimulation(Simulation):
    def __init__(
        self,
        cfg: ExperimentConfig,
        system: SystemSpec,
        agents: list[Trajectory],
        cost: CostModel,
        starts: Sequence[float],
        think: Callable[[], float],
        replay_timestamps: bool = False,
        on_turn: Callable[[], None] | None = None,
    ):
        self.starts = list(starts)
        self.recorder = OnlineRecorder(len(agents), cost.kv_bytes_per_token, cfg.online.sample_s)
        arrivals = TimedArrivals(agents, starts, think, replay_timestamps)
        super().__init__(cfg, system, agents, cost, on_turn, arrivals=arrivals, observer=self.recorder)

    def _breakdown(self, sel: dict) -> dict:
        """Mean TTFT stages. v2 splits the PE queue out of "prefill"; v1 files keep its old
        definition (PE queue + compute), so that they keep their bytes."""
        mean = {k: float(v.mean()) if v.size else 0.0 for k, v in sel.items()}
        if self.cost.v2:
            return {k: mean[k] for k in ("sched", "alloc", "read", "pe_queue", "prefill")}
        return {
            "sched": mean["sched"],
            "alloc": mean["alloc"],
            "read": mean["read"],
            "prefill": mean["queue_and_prefill"],
        }

    def summary(self) -> dict:
        """Online metrics over the requests that arrived inside the measurement window."""
        o, rec = self.cfg.online, self.recorder
        rec = {k: np.frombuffer(v, dtype=float) if len(v) else np.zeros(0) for k, v in rec.rec.items()}
        window = (rec["arrive"] >= o.warmup_s) & (rec["arrive"] < o.duration_s)
        sel = {k: v[window] for k, v in rec.items()}
        lat = request_latencies(
            sel["arrive"], sel["first"], sel["second"], sel["finished"], sel["joined"], sel["output"]
        )
        met, ttft_q, tpot_q = slo_met(lat, o.slo)
        starts = np.asarray(self.starts)
        done = np.asarray(self.agent_done)
        judged = (starts >= o.warmup_s) & (starts < o.duration_s)
        series = self.recorder.series
        step = max(1, len(series) // 200)
        ws = np.array([b for _, b in series]) if series else np.zeros(1)
        return {
            "agents": len(self.starts),
            "turns": self.turns,
            "window_requests": int(window.sum()),
            "latency": summarize_latencies(lat),
            "slo_met": bool(met),
            "slo_ttft_s": ttft_q,
            "slo_tpot_s": tpot_q,
            "agent_jct_s": percentiles(done[judged] - starts[judged]) if judged.any() else {},
            "ttft_breakdown_s": self._breakdown(sel),
            "working_set_bytes": {
                "mean": float(ws.mean()),
                "max": float(ws.max()),
                "series": [[t, b] for t, b in series[::step]],
            },
            "makespan_s": float(done.max()) if done.size else 0.0,
        }

"""The cluster simulation with agents arriving over time (online serving).

Extends the offline simulation: agents start at given times, an agent waits a tool/think time between
turns (or replays its trace timestamps), every finished turn leaves a timeline record, and the
working set (KV bytes held in storage for live agents) is sampled over time.
"""

from __future__ import annotations

from array import array
from typing import Callable, Sequence

import numpy as np

from ..config import ExperimentConfig, SystemSpec
from ..costmodel import CostModel
from ..metrics import percentiles
from ..sim.simulator import Request, Simulation
from ..workload.trace import Trajectory
from .latency import request_latencies, slo_met, summarize_latencies

FIELDS = ("arrive", "first", "second", "joined", "finished", "output", "sched", "alloc", "read", "prefill")


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
        super().__init__(cfg, system, agents, cost, on_turn)
        self.starts, self.think, self.replay = list(starts), think, replay_timestamps
        self.rec = {k: array("d") for k in FIELDS}
        self.working_set = 0.0
        self.agent_bytes = [0.0] * len(agents)
        self.ws_series: list[tuple[float, float]] = []
        self.active = 0

    def _start_agents(self) -> None:
        for a, t in enumerate(self.starts):
            self.loop.at(t, self._arrive, a, 0)
        self.active = len(self.starts)
        self.loop.at(0.0, self._sample)

    def _sample(self) -> None:
        self.ws_series.append((self.loop.now, self.working_set))
        if self.active > 0:
            self.loop.allow(1)  # a sample advances time by sample_s > 0: outside the turns' budget
            self.loop.at(self.loop.now + self.cfg.online.sample_s, self._sample)

    def _schedule(self) -> None:
        super()._schedule()
        if self.waiting:  # note when the head starts waiting for decode HBM (allocation)
            head = self.waiting[0]
            if head.alloc_since < 0 and not any(
                e.free_kv >= head.kv_bytes for g in self.de_groups if g.free_kv >= head.kv_bytes for e in g.engines
            ):
                head.alloc_since = self.loop.now

    def _persisted(self, req: Request) -> None:
        r = self.rec
        alloc = req.placed - req.alloc_since if req.alloc_since >= 0 else 0.0
        for key, value in (
            ("arrive", req.arrive),
            ("first", req.first_token),
            ("second", req.second_token),
            ("joined", req.joined),
            ("finished", req.finished),
            ("output", req.output),
            ("sched", req.placed - req.arrive - alloc),
            ("alloc", alloc),
            ("read", req.ready - req.placed),
            ("prefill", req.first_token - req.ready),
        ):
            r[key].append(value)
        grown = (req.new + req.output) * self.kvb  # KV this turn adds to the agent's stored context
        self.working_set += grown
        self.agent_bytes[req.agent] += grown
        super()._persisted(req)

    def _next_turn(self, req: Request) -> None:
        turns = self.agents[req.agent].turns
        if req.index + 1 < len(turns):
            nxt = turns[req.index + 1]
            if self.replay and nxt.t is not None:
                delay = max(0.0, nxt.t - turns[0].t + self.starts[req.agent] - self.loop.now)
            else:
                delay = self.think()
            if delay > 0:
                self.loop.at(self.loop.now + delay, self._arrive, req.agent, req.index + 1)
            else:
                self._arrive(req.agent, req.index + 1)
        else:
            self.agent_done[req.agent] = self.loop.now
            self.active -= 1
            self.working_set -= self.agent_bytes[req.agent]  # a finished agent's KV is dropped
            self.agent_bytes[req.agent] = 0.0

    def summary(self) -> dict:
        """Online metrics over the requests that arrived inside the measurement window."""
        o = self.cfg.online
        rec = {k: np.frombuffer(v, dtype=float) if len(v) else np.zeros(0) for k, v in self.rec.items()}
        window = (rec["arrive"] >= o.warmup_s) & (rec["arrive"] < o.duration_s)
        sel = {k: v[window] for k, v in rec.items()}
        lat = request_latencies(
            sel["arrive"], sel["first"], sel["second"], sel["finished"], sel["joined"], sel["output"]
        )
        met, ttft_q, tpot_q = slo_met(lat, o.slo)
        starts = np.asarray(self.starts)
        done = np.asarray(self.agent_done)
        judged = (starts >= o.warmup_s) & (starts < o.duration_s)
        series = self.ws_series
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
            "ttft_breakdown_s": {
                k: float(sel[k].mean()) if sel[k].size else 0.0 for k in ("sched", "alloc", "read", "prefill")
            },
            "working_set_bytes": {
                "mean": float(ws.mean()),
                "max": float(ws.max()),
                "series": [[t, b] for t, b in series[::step]],
            },
            "makespan_s": float(done.max()) if done.size else 0.0,
        }

"""The offline cluster simulation of one system: agents, scheduler, links and engines in virtual time.

A turn's life (`_arrive` -> `_schedule` -> `_placed` -> the PE -> `_prefilled` -> the DE ->
`_decoded` -> `_persisted`) is told once, for this world and the testbed, in docs/simulator.md
("A turn's life"); the placement itself is applied by the shared `scheduling.dispatch.Dispatcher`."""

from __future__ import annotations

import gc
import math
from array import array
from functools import partial
from typing import Callable

from ..cluster import Topology
from ..config import ExperimentConfig, SystemSpec
from ..costmodel import CostModel
from ..link import DrainSeconds, FluidLink, LoggedLink
from ..metrics import SystemMetrics, summarize
from ..scheduling import GroupLoad, SchedContext, make_scheduler
from ..scheduling.dispatch import Dispatcher
from ..workload.trace import Trajectory
from .buffer import DramBuffers
from .engines import DecodeEngine, LockstepDecode, PrefillNode
from .events import EventLoop
from .tier import DramTier
from .turn import SimTurn

# Liveness bounds (sim/events.py): far above what a run needs, far below an endless loop.
EVENTS_PER_TURN = 64
EVENT_SLACK = 100_000


class Arrivals:
    """When turns arrive. Offline (this class): every agent starts at time 0 and runs its turns
    back to back. The online experiment passes its own (arrival times, think time)."""

    def start(self, agent: int) -> float:
        return 0.0

    def gap(self, agent: int, index: int, now: float) -> float:
        """Seconds from the end of turn index-1 of `agent` until turn `index` arrives."""
        return 0.0


class TurnObserver:
    """Watches a run (no effect on it): the online experiment records timelines through one."""

    def attach(self, sim: "Simulation") -> None:
        """Called once before the run starts (e.g. to schedule periodic samples)."""

    def scheduled(self, sim: "Simulation") -> None:
        """After each scheduling pass."""

    def turn_done(self, sim: "Simulation", turn: SimTurn) -> None:
        """A turn's last token is out (before its agent's next turn is asked for)."""

    def agent_done(self, sim: "Simulation", agent: int) -> None:
        """An agent's last turn is done."""


class Simulation:
    def __init__(
        self,
        cfg: ExperimentConfig,
        system: SystemSpec,
        agents: list[Trajectory],
        cost: CostModel,
        on_turn: Callable[[], None] | None = None,
        arrivals: Arrivals | None = None,
        observer: TurnObserver | None = None,
    ):
        self.cfg, self.system, self.agents, self.cost = cfg, system, agents, cost
        # None: offline arrivals, no observer, no tick (the hot path skips the calls)
        self.on_turn, self.arrivals, self.observer = on_turn, arrivals, observer
        spec, sim = cfg.cluster, cfg.sim
        self.topo = Topology(spec)
        self.loop = loop = EventLoop(*self._event_budget(agents, sim.min_chunk_tokens))
        clock = partial(getattr, loop, "now")  # C-level: the schedulers read it on every placement
        self.kvb = cost.kv_bytes_per_token
        pes, des = self.topo.engines()
        de_room = cost.kv_room_bytes("decode")
        for e in des:
            e.free_kv = de_room
        nodes = range(self.topo.nodes)
        snic = spec.snic_bytes_per_s * cost.storage_efficiency  # v1: the line rate
        link = LoggedLink if cost.v2 else FluidLink  # v2 keeps each read's span (SNIC balance over time)
        self.snic_read = [link(f"snic_read[{n}]", snic, clock) for n in nodes]
        self.snic_write = [FluidLink(f"snic_write[{n}]", snic, clock) for n in nodes]
        self.read_latency = cost.storage_read_latency_s
        self.dram = [FluidLink(f"dram[{n}]", spec.dram_gbps * 1e9 / 8, clock) for n in nodes]
        self.de_h2d = {e.id: FluidLink(f"de_cnic_in[{e.id}]", spec.cnic_bytes_per_s, clock) for e in des}
        # v2: DE-path reads leave by the DE GPU's CNIC (v1: not charged)
        self.de_out = (
            {e.id: FluidLink(f"de_cnic_out[{e.id}]", spec.cnic_bytes_per_s, clock) for e in des}
            if cost.de_cnic_charging
            else {}
        )
        self.handoff_s, self.period = cost.handoff_s, cost.scheduler_period_s
        self._pass_pending = False
        # beta: the policy's overload threshold, in tokens of one PE GPU's beta_s of prefill work
        ctx = SchedContext(
            read_queue_s=DrainSeconds(self.snic_read),
            snic_bytes_per_s=snic,
            alpha_s=sim.alpha_s,
            beta_tokens=sim.beta_s * self._prefill_tokens_per_s(),
        )
        self.dispatcher = Dispatcher(
            make_scheduler(system.scheduler, system.dual_path, system.split_read),
            self._groups(pes),
            self._groups(des),
            ctx,
            kv_bytes_per_token=self.kvb,
            free_io=system.free_io,
            on_placed=self._placed,
            clock=clock,
        )
        loads = self.dispatcher.loads
        self.node = [loads[e].node for e in range(len(loads))]  # engine -> node (a hot lookup)
        room_pe = cost.kv_room_bytes("prefill")
        self.pe_nodes = {
            g.node: PrefillNode(
                g.node,
                [e.id for e in g.engines],
                loop,
                cost,
                system,
                sim,
                room_pe,
                spec.cnic_bytes_per_s,
                self._prefilled,
            )
            for g in self.dispatcher.pe_groups
        }
        self.de = {
            e.id: DecodeEngine(
                e.id,
                e.node,
                loop,
                cost,
                (self.de_h2d[e.id], self.de_out.get(e.id)),
                system.qos,
                sim.qos_weight,
                self._decoded,
            )
            for e in des
        }
        if cost.decode_lockstep:  # v2: the engines of one EP group step together
            ep = cost.decode_ep
            for first in range(0, len(des), ep):
                group = LockstepDecode([self.de[e.id] for e in des[first : first + ep]])
                self.de.update((e.id, group) for e in des[first : first + ep])
        self.decoders = list({id(d): d for d in self.de.values()}.values())  # each stepping unit once
        self.buffers = None  # v2: each node's DRAM buffer, which a read needs room in
        if math.isfinite(cost.dram_buffer_bytes) and not system.free_io:
            self.buffers = DramBuffers(cost.dram_buffer_bytes, self.topo.nodes, self.node, self._read)
        # v2: per-turn sums of the TTFT's stages (sched, read, pe_queue, prefill)
        self.ttft_stages = [0.0] * 4 if cost.v2 else None
        self.tier = DramTier(system.dram_tier_tb * 1e12 * self.topo.nodes) if system.dram_tier_tb else None
        self.record_turns = cfg.sim.record_turns
        self.finished: list[SimTurn] = []  # only with sim.record_turns
        self.ttft, self.tpot = array("d"), array("d")
        self.turns = self.tokens_new = self.tokens_cached = self.tokens_out = 0
        self.agent_done = [0.0] * len(agents)
        self.persisted_at = [0.0] * len(agents)  # when each agent's latest KV is in storage
        self._keys = {}
        largest = max(t.input + t.output for a in agents for t in a.turns) * self.kvb
        if largest > de_room:
            raise ValueError(
                f"a turn needs {largest / 1e9:.1f} GB of KV but a decode GPU has "
                f"{de_room / 1e9:.1f} GB for KV ({cfg.model.name} on {spec.name})"
            )
        if self.buffers is not None:  # v2: a read larger than a node's buffer would wait forever
            read = max(t.cached for a in agents for t in a.turns) * self.kvb
            if read > cost.dram_buffer_bytes:
                raise ValueError(
                    f"costmodel.dram_buffer_gb: a turn reads {read / 1e9:.1f} GB of KV, more than a node's "
                    f"{cost.dram_buffer_bytes / 1e9:.1f} GB DRAM buffer can stage"
                )

    @property
    def waiting(self):
        return self.dispatcher.waiting

    @staticmethod
    def _event_budget(agents: list[Trajectory], min_chunk_tokens: int) -> tuple[int, int]:
        """(total, same-timestamp) event bounds of the liveness check. A turn takes about 4 events
        (measured: 3.3-4.0 on the paper's configs) and each prefill chunk one more; a chunk holds
        >= min_chunk_tokens new tokens but the last of a request. All agents may arrive at once."""
        turns = sum(len(a.turns) for a in agents)
        chunks = sum(t.new for a in agents for t in a.turns) // min_chunk_tokens
        return EVENTS_PER_TURN * (turns + chunks) + EVENT_SLACK, EVENTS_PER_TURN * len(agents) + EVENT_SLACK

    @staticmethod
    def _groups(engines) -> list[GroupLoad]:
        by_node: dict[int, list] = {}
        for e in engines:
            by_node.setdefault(e.node, []).append(e)
        return [GroupLoad(node=n, engines=es, free_kv=sum(e.free_kv for e in es)) for n, es in sorted(by_node.items())]

    def _prefill_tokens_per_s(self) -> float:
        """Prompt tokens (tok_e's unit) one PE GPU prefills per second on this workload's mean turn."""
        turns = [t for a in {id(a): a for a in self.agents}.values() for t in a.turns]
        cached = sum(t.cached for t in turns) / len(turns)
        new = sum(t.new for t in turns) / len(turns)
        return (cached + new) / self.cost.turn_prefill_s(round(cached), round(new))

    # ---- a turn's life (docs/simulator.md, "A turn's life") ---------------------------------------
    def _arrive(self, agent: int, index: int) -> None:
        turn = self.agents[agent].turns[index]
        keys = self._keys.get(turn.input)
        if keys is None:
            keys = self._keys[turn.input] = self.cost.counts.decode_keys(turn.input)
        self.dispatcher.enqueue(SimTurn(agent, index, turn, self.loop.now, self.kvb, keys))
        self._schedule()

    def _schedule(self) -> None:
        """A scheduling pass, at once (v1) or at the scheduler's next period (v2, `_bind_hot_path`)."""
        self._pass()

    def _pass(self) -> None:
        self.dispatcher.schedule()
        if self.observer is not None:
            self.observer.scheduled(self)

    def _next_pass(self) -> None:
        """v2: the scheduler runs every `scheduler_period_ms`; ask for the next pass."""
        if not self._pass_pending:
            self._pass_pending = True
            self.loop.at((math.floor(self.loop.now / self.period) + 1) * self.period, self._periodic_pass)

    def _periodic_pass(self) -> None:
        self._pass_pending = False
        self._pass()

    def _bind_hot_path(self) -> None:
        """Without an observer a pass is only the dispatcher's: call it directly (one call less
        per arrival and per completion)."""
        if self.observer is None:
            self._pass = self.dispatcher.schedule
        self._schedule = self._next_pass if self.period else self._pass

    def _placed(self, turn: SimTurn) -> None:
        """The dispatcher placed `turn` (loads applied): book its reads, then it joins its PE's queue."""
        if self.system.free_io:
            self.dispatcher.plan(turn)
            turn.ready = self.loop.now
            self.loop.at(turn.ready, self.pe_nodes[self.node[turn.pe]].submit, turn)
            return
        tier = self.tier.lookup(turn.agent, turn.hit_bytes) if self.tier is not None else 0.0
        self.dispatcher.plan(turn, tier)
        if self.buffers is None or self.buffers.admit(turn):
            self._read(turn)  # else the buffer starts it once it has room

    def _read(self, turn: SimTurn) -> None:
        """Book `turn`'s storage read and DRAM traffic; when its KV is in, it joins its PE's queue."""
        now, plan = self.loop.now, turn.plan
        pe, de = self.node[turn.pe], self.node[turn.de]
        start = max(now, self.persisted_at[turn.agent])  # read what the last turn wrote
        ready = max(
            self.snic_read[pe].transfer(plan.read_pe_bytes, start),
            self.snic_read[de].transfer(plan.read_de_bytes, start),
            self.dram[pe].transfer(plan.dram_pe_bytes, now),
            self.dram[de].transfer(plan.dram_de_bytes, now),
        )
        if self.read_latency and plan.read_pe_bytes + plan.read_de_bytes > 0:
            ready += self.read_latency  # v2: a read's first byte comes one storage latency late
        if self.de_out:  # v2: from the read's end, the DE GPU's CNIC sends its read and takes the PE's KV
            self.de_out[turn.de].transfer(plan.read_de_bytes, ready)
            self.de_h2d[turn.de].transfer(plan.pe_out_bytes, ready)
        turn.ready = ready
        self.loop.at(ready, self.pe_nodes[pe].submit, turn)

    def _prefilled(self, turn: SimTurn) -> None:
        self.dispatcher.prefill_done(turn)
        turn.first_token = now = self.loop.now
        if self.buffers is not None:
            self.buffers.release(turn, now)
        # v2: the DE hears of the turn and allocates its HBM before the H2D starts (v1: at once)
        end = self.de_h2d[turn.de].transfer(turn.plan.de_h2d_bytes, now + self.handoff_s)
        self.loop.at(end, self.de[turn.de].join, turn)

    def _decoded(self, turn: SimTurn) -> None:
        self.dispatcher.decode_done(turn)
        turn.finished = now = self.loop.now
        # The new KV is written in the background; the agent's next turn may be placed at once,
        # but its storage read starts only once this write is done (see _placed).
        de, write = self.node[turn.de], turn.plan.write_bytes
        self.persisted_at[turn.agent] = self.snic_write[de].transfer(write, now)
        if self.cost.writeback_via_dram:  # v2: staged in the DE node's DRAM, in and out
            self.persisted_at[turn.agent] = max(self.persisted_at[turn.agent], self.dram[de].transfer(2 * write, now))
        if self.tier is not None:
            self.tier.store(turn.agent, turn.kv_bytes)
        self._persisted(turn)
        self._schedule()

    def _persisted(self, turn: SimTurn) -> None:
        """The turn is done (its last token is out); account it and ask for the agent's next turn."""
        self.turns += 1
        self.tokens_new += turn.new
        self.tokens_cached += turn.hit
        self.tokens_out += turn.output
        arrive, placed, ready, started, first = turn.arrive, turn.placed, turn.ready, turn.started, turn.first_token
        self.ttft.append(first - arrive)
        if turn.output > 1:
            self.tpot.append((turn.finished - turn.joined) / (turn.output - 1))
        if self.record_turns:
            self.finished.append(turn)
        s = self.ttft_stages
        if s is not None:
            s[0] += placed - arrive
            s[1] += ready - placed
            s[2] += started - ready
            s[3] += first - started
        if self.observer is not None:
            self.observer.turn_done(self, turn)
        if self.on_turn is not None:
            self.on_turn()
        agent, nxt = turn.agent, turn.index + 1
        if nxt < len(self.agents[agent].turns):
            gap = 0.0 if self.arrivals is None else self.arrivals.gap(agent, nxt, self.loop.now)
            if gap > 0:
                self.loop.at(self.loop.now + gap, self._arrive, agent, nxt)
            else:
                self._arrive(agent, nxt)
        else:
            self.agent_done[agent] = self.loop.now
            if self.observer is not None:
                self.observer.agent_done(self, agent)

    # ---- run -------------------------------------------------------------------------------------
    def simulate(self) -> None:
        arrivals = self.arrivals or Arrivals()
        for a in range(len(self.agents)):
            self.loop.at(arrivals.start(a), self._arrive, a, 0)
        if self.observer is not None:
            self.observer.attach(self)
        self._bind_hot_path()
        # The run allocates millions of short-lived acyclic objects; the cyclic collector would
        # rescan every live one over and over, at a cost that grows with the agents alive.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self.loop.run()
        finally:
            if enabled:
                gc.enable()
        if self.waiting:
            raise RuntimeError(f"{len(self.waiting)} turns never got a decode engine")

    def run(self) -> SystemMetrics:
        self.simulate()
        return summarize(self)

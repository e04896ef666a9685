"""The offline cluster simulation of one system: agents, scheduler, links and engines in virtual time.

A turn's life: arrives (the agent's previous turn is done) -> waits until the scheduler places it
(a DE with HBM room, a PE, a read side) -> its hit KV crosses the read node's SNIC (and DRAM), once
the previous turn's KV is written -> prefill on the PE node (with the data path's CNIC traffic) ->
H2D into the DE GPU -> decode in the DE's continuous batch -> done: its new KV is written through
the DE node's SNIC in the background, and the next turn arrives.
"""

from __future__ import annotations

import gc
from array import array
from collections import deque
from collections.abc import Mapping
from typing import Callable

from ..cluster import Topology
from ..config import ExperimentConfig, SystemSpec
from ..costmodel import CostModel
from ..datapath import plan_turn
from ..metrics import SystemMetrics, summarize
from ..scheduling import GroupLoad, SchedContext, make_scheduler
from ..workload.trace import Trajectory
from .engines import DecodeEngine, PrefillNode
from .events import EventLoop
from .links import FifoLink
from .tier import DramTier

# Liveness bounds (sim/events.py): far above what a run needs, far below an endless loop.
EVENTS_PER_TURN = 64
EVENT_SLACK = 100_000


class Request:
    """One turn of one agent in flight; also the scheduler's RequestView (same attribute names)."""

    __slots__ = (
        "agent",
        "index",
        "input",
        "cached",
        "new",
        "output",
        "tokens",
        "hit_tokens",
        "kv_bytes",
        "hit_bytes",
        "decode_keys",
        "arrive",
        "pe",
        "de",
        "pe_hit_out",
        "h2d_bytes",
        "write_bytes",
        "done",
        "placed",
        "ready",
        "first_token",
        "joined",
        "second_token",
        "finished",
        "alloc_since",
    )

    def __init__(self, agent: int, index: int, turn, arrive: float, kvb: float, decode_keys: int):
        self.agent, self.index, self.arrive = agent, index, arrive
        self.input, self.cached, self.output = turn.input, turn.cached, turn.output
        self.new = turn.input - turn.cached
        self.tokens = turn.input + turn.output
        self.hit_tokens = turn.cached
        self.kv_bytes = self.tokens * kvb
        self.hit_bytes = turn.cached * kvb
        self.decode_keys = decode_keys
        self.pe = self.de = -1
        self.pe_hit_out = self.h2d_bytes = self.write_bytes = 0.0
        self.done = 0
        self.placed = self.ready = self.first_token = self.joined = self.second_token = -1.0
        self.finished = self.alloc_since = -1.0


class _ReadQueueSeconds(Mapping):
    """Seconds until each node's SNIC drains its read queue, evaluated lazily at the current time."""

    def __init__(self, links: list[FifoLink], loop: EventLoop):
        self._links, self._loop = links, loop

    def __getitem__(self, node: int) -> float:
        return max(0.0, self._links[node].free_at - self._loop.now)

    def __iter__(self):
        return iter(range(len(self._links)))

    def __len__(self) -> int:
        return len(self._links)


class Simulation:
    def __init__(
        self,
        cfg: ExperimentConfig,
        system: SystemSpec,
        agents: list[Trajectory],
        cost: CostModel,
        on_turn: Callable[[], None] | None = None,
    ):
        self.cfg, self.system, self.agents, self.cost = cfg, system, agents, cost
        self.on_turn = on_turn or (lambda: None)
        spec, sim = cfg.cluster, cfg.sim
        self.topo = Topology(spec)
        self.loop = loop = EventLoop(*self._event_budget(agents, sim.min_chunk_tokens))
        self.kvb = cost.kv_bytes_per_token
        pes, des = self.topo.engines()
        self.loads = {e.id: e for e in pes + des}
        de_room = cost.kv_room_bytes("decode")
        for e in des:
            e.free_kv = de_room
        self.pe_groups = self._groups(pes)
        self.de_groups = self._groups(des)
        self.group_of = {e.id: g for g in self.pe_groups + self.de_groups for e in g.engines}
        nodes = range(self.topo.nodes)
        self.snic_read = [FifoLink(f"snic_read[{n}]", spec.snic_bytes_per_s) for n in nodes]
        self.snic_write = [FifoLink(f"snic_write[{n}]", spec.snic_bytes_per_s) for n in nodes]
        self.dram = [FifoLink(f"dram[{n}]", spec.dram_gbps * 1e9 / 8) for n in nodes]
        self.de_h2d = {e.id: FifoLink(f"de_cnic_in[{e.id}]", spec.cnic_bytes_per_s) for e in des}
        self.ctx = SchedContext(
            read_queue_s=_ReadQueueSeconds(self.snic_read, loop),
            snic_bytes_per_s=spec.snic_bytes_per_s,
            alpha_s=sim.alpha_s,
            beta_tokens=sim.beta_s * self._prefill_tokens_per_s(),
        )
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
            for g in self.pe_groups
        }
        self.de = {
            e.id: DecodeEngine(e.id, e.node, loop, cost, self.de_h2d[e.id], system.qos, sim.qos_weight, self._decoded)
            for e in des
        }
        self.scheduler = make_scheduler(system.scheduler, system.dual_path, system.split_read)
        self.tier = DramTier(system.dram_tier_tb * 1e12 * self.topo.nodes) if system.dram_tier_tb else None
        self.waiting: deque[Request] = deque()
        self.finished: list[Request] = []  # only with sim.record_turns
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
        return (cached + new) / self.cost.prefill_time(self.cost.counts.prefill_flops(round(cached), round(new)))

    # ---- a turn's life -------------------------------------------------------------------------
    def _arrive(self, agent: int, index: int) -> None:
        turn = self.agents[agent].turns[index]
        keys = self._keys.get(turn.input)
        if keys is None:
            keys = self._keys[turn.input] = self.cost.counts.decode_keys(turn.input)
        self.waiting.append(Request(agent, index, turn, self.loop.now, self.kvb, keys))
        self._schedule()

    def _schedule(self) -> None:
        if not self.waiting:
            return
        placed = 0
        for p in self.scheduler.place(self.waiting, self.pe_groups, self.de_groups, self.ctx):
            self._dispatch(self.waiting[placed], p)
            placed += 1
        for _ in range(placed):
            self.waiting.popleft()

    def _dispatch(self, req: Request, p) -> None:
        now, free_io = self.loop.now, self.system.free_io
        req.pe, req.de, req.placed = p.pe, p.de, now
        de, pe = self.loads[p.de], self.loads[p.pe]
        self.group_of[p.de].add(de, req.tokens, req.kv_bytes)
        self.group_of[p.pe].add(pe, req.input)
        ready = now
        if not free_io:
            tier = self.tier.lookup(req.agent, req.hit_bytes) if self.tier is not None else 0.0
            plan = plan_turn(
                cached=req.cached,
                new=req.new,
                output=req.output,
                kv_bytes_per_token=self.kvb,
                de_read_fraction=p.de_read_fraction,
                free_io=False,
                tier_hit_bytes=tier,
            )
            req.pe_hit_out, req.h2d_bytes, req.write_bytes = plan.pe_hit_out_bytes, plan.de_h2d_bytes, plan.write_bytes
            start = max(now, self.persisted_at[req.agent])  # read what the last turn wrote
            # DRAM: what the reading node stages (in and out); the DE buffer receives the PE's KV and
            # feeds the DE GPU. (Summed term by term as before plan_turn existed: same floats, same results.)
            de_dram = 2 * plan.read_de_bytes + req.new * self.kvb + plan.pe_hit_out_bytes + plan.de_h2d_bytes
            ready = max(
                self.snic_read[pe.node].transfer(start, plan.read_pe_bytes),
                self.snic_read[de.node].transfer(start, plan.read_de_bytes),
                self.dram[pe.node].transfer(now, 2 * plan.read_pe_bytes),
                self.dram[de.node].transfer(now, de_dram),
            )
        req.ready = ready
        self.loop.at(ready, self.pe_nodes[pe.node].submit, req)

    def _prefilled(self, req: Request) -> None:
        self.group_of[req.pe].add(self.loads[req.pe], -req.input, requests=-1)
        req.first_token = self.loop.now
        end = self.de_h2d[req.de].transfer(self.loop.now, req.h2d_bytes)
        self.loop.at(end, self.de[req.de].join, req)

    def _decoded(self, req: Request) -> None:
        de = self.loads[req.de]
        self.group_of[req.de].add(de, -req.tokens, -req.kv_bytes, requests=-1)
        req.finished = self.loop.now
        # The new KV is written in the background; the agent's next turn may be placed at once,
        # but its storage read starts only once this write is done (see _dispatch).
        self.persisted_at[req.agent] = self.snic_write[de.node].transfer(self.loop.now, req.write_bytes)
        if self.tier is not None:
            self.tier.store(req.agent, req.kv_bytes)
        self._persisted(req)
        self._schedule()

    def _persisted(self, req: Request) -> None:
        """The turn is done (its last token is out); account it and start the agent's next turn."""
        self.turns += 1
        self.tokens_new += req.new
        self.tokens_cached += req.cached
        self.tokens_out += req.output
        self.ttft.append(req.first_token - req.arrive)
        if req.output > 1:
            self.tpot.append((req.finished - req.joined) / (req.output - 1))
        if self.cfg.sim.record_turns:
            self.finished.append(req)
        self.on_turn()
        self._next_turn(req)

    def _next_turn(self, req: Request) -> None:
        """Offline: the agent's next turn starts at once (no tool time between turns)."""
        if req.index + 1 < len(self.agents[req.agent].turns):
            self._arrive(req.agent, req.index + 1)
        else:
            self.agent_done[req.agent] = self.loop.now

    # ---- run -------------------------------------------------------------------------------------
    def _start_agents(self) -> None:
        """Offline: every agent starts at time 0."""
        for a in range(len(self.agents)):
            self.loop.at(0.0, self._arrive, a, 0)

    def simulate(self) -> None:
        self._start_agents()
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

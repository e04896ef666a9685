"""The offline cluster simulation of one system: agents, scheduler, links and engines in virtual time.

A turn's life: arrives (the agent's previous turn is persisted) -> waits until the scheduler places
it (a DE with HBM room, a PE, a read side) -> its hit KV crosses the read node's SNIC -> prefill on
the PE (with the data path's CNIC traffic) -> H2D into the DE GPU -> decode in the DE's continuous
batch -> its new KV is written through the DE node's SNIC -> the agent's next turn arrives.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Callable

from ..cluster import Topology
from ..config import ExperimentConfig, SystemSpec
from ..costmodel import CostModel
from ..datapath import TurnPlan, plan_turn
from ..metrics import SystemMetrics, summarize
from ..scheduling import RequestView, make_scheduler
from ..workload.trace import Trajectory, Turn
from .engines import DecodeEngine, PrefillEngine
from .events import EventLoop
from .links import FifoLink


class Request:
    """One turn of one agent in flight."""

    __slots__ = ("agent", "index", "turn", "arrive", "pe", "de", "plan", "flops", "kv_bytes",
                 "first_token", "decode_keys", "finished")

    def __init__(self, agent: int, index: int, turn: Turn, arrive: float, flops: float, kv_bytes: float):
        self.agent, self.index, self.turn, self.arrive = agent, index, turn, arrive
        self.flops, self.kv_bytes = flops, kv_bytes
        self.pe = self.de = -1
        self.plan: TurnPlan | None = None
        self.first_token = self.finished = -1.0
        self.decode_keys = 0


class _Backlogs(Mapping):
    """Storage read queue per node, in bytes, evaluated lazily at the current time."""

    def __init__(self, links: list[FifoLink], loop: EventLoop):
        self._links, self._loop = links, loop

    def __getitem__(self, node: int) -> float:
        return self._links[node].backlog(self._loop.now)

    def __iter__(self):
        return iter(range(len(self._links)))

    def __len__(self) -> int:
        return len(self._links)


class Simulation:
    def __init__(self, cfg: ExperimentConfig, system: SystemSpec, agents: list[Trajectory],
                 cost: CostModel, on_turn: Callable[[], None] | None = None):
        self.cfg, self.system, self.agents, self.cost = cfg, system, agents, cost
        self.on_turn = on_turn or (lambda: None)
        spec = cfg.cluster
        self.topo = Topology(spec)
        self.loop = loop = EventLoop()
        self.pe_loads, self.de_loads = self.topo.engines()
        self.loads = {e.id: e for e in self.pe_loads + self.de_loads}
        de_room = cost.kv_room_bytes("decode")
        for e in self.de_loads:
            e.free_kv = de_room
        nodes = range(self.topo.nodes)
        self.snic_read = [FifoLink(f"snic_read[{n}]", spec.snic_bytes_per_s) for n in nodes]
        self.snic_write = [FifoLink(f"snic_write[{n}]", spec.snic_bytes_per_s) for n in nodes]
        self.de_h2d = {e.id: FifoLink(f"de_cnic_in[{e.id}]", spec.cnic_bytes_per_s) for e in self.de_loads}
        self.read_queue = _Backlogs(self.snic_read, loop)
        self.pe = {e.id: PrefillEngine(e.id, e.node, loop, cost, layerwise=system.layerwise,
                                       free_io=system.free_io, batch_tokens=cfg.sim.prefill_batch_tokens,
                                       kv_room=cost.kv_room_bytes("prefill"),
                                       cnic_bw=spec.cnic_bytes_per_s, on_done=self._prefilled)
                   for e in self.pe_loads}
        self.de = {e.id: DecodeEngine(e.id, e.node, loop, cost, on_done=self._decoded)
                   for e in self.de_loads}
        self.scheduler = make_scheduler(system.scheduler, system.dual_path)
        self.waiting: deque[Request] = deque()
        self.finished: list[Request] = []
        self.agent_done = [0.0] * len(agents)
        self.largest_kv = max(t.input + t.output for a in agents for t in a.turns) * cost.kv_bytes_per_token
        if self.largest_kv > de_room:
            raise ValueError(f"a turn needs {self.largest_kv / 1e9:.1f} GB of KV but a decode GPU has "
                             f"{de_room / 1e9:.1f} GB for KV ({cfg.model.name} on {spec.name})")

    # ---- a turn's life -------------------------------------------------------------------------
    def _arrive(self, agent: int, index: int) -> None:
        turn = self.agents[agent].turns[index]
        kvb = self.cost.kv_bytes_per_token
        req = Request(agent, index, turn, self.loop.now, self.cost.counts.prefill_flops(turn.cached, turn.new),
                      (turn.input + turn.output) * kvb)
        self.waiting.append(req)
        self._schedule()

    def _schedule(self) -> None:
        while self.waiting:
            req = self.waiting[0]
            t = req.turn
            view = RequestView(tokens=t.input + t.output, hit_tokens=t.cached, kv_bytes=req.kv_bytes)
            placed = self.scheduler.place(view, self.pe_loads, self.de_loads, self.read_queue)
            if placed is None:
                return  # head of line waits for decode HBM
            self.waiting.popleft()
            self._dispatch(req, placed)

    def _dispatch(self, req: Request, placed) -> None:
        t, now = req.turn, self.loop.now
        req.pe, req.de = placed.pe, placed.de
        de, pe = self.loads[placed.de], self.loads[placed.pe]
        de.free_kv -= req.kv_bytes
        de.tok += t.input + t.output
        de.seq += 1
        pe.tok += t.input
        pe.seq += 1
        req.plan = plan_turn(cached=t.cached, new=t.new, output=t.output,
                             kv_bytes_per_token=self.cost.kv_bytes_per_token,
                             read_on_de=placed.read_on_de, free_io=self.system.free_io)
        end = self.snic_read[placed.read_node].transfer(now, req.plan.read_bytes)
        self.loop.at(end, self.pe[placed.pe].submit, req)

    def _prefilled(self, req: Request) -> None:
        pe = self.loads[req.pe]
        pe.tok -= req.turn.input
        pe.seq -= 1
        req.first_token = self.loop.now
        end = self.de_h2d[req.de].transfer(self.loop.now, req.plan.de_h2d_bytes)
        self.loop.at(end, self.de[req.de].join, req)

    def _decoded(self, req: Request) -> None:
        de = self.loads[req.de]
        de.free_kv += req.kv_bytes
        de.tok -= req.turn.input + req.turn.output
        de.seq -= 1
        req.finished = self.loop.now
        end = self.snic_write[de.node].transfer(self.loop.now, req.plan.write_bytes)
        self.loop.at(end, self._persisted, req)
        self._schedule()

    def _persisted(self, req: Request) -> None:
        self.finished.append(req)
        self.on_turn()
        if req.index + 1 < len(self.agents[req.agent].turns):
            self._arrive(req.agent, req.index + 1)
        else:
            self.agent_done[req.agent] = self.loop.now

    # ---- run -------------------------------------------------------------------------------------
    def run(self) -> SystemMetrics:
        for a in range(len(self.agents)):
            self.loop.at(0.0, self._arrive, a, 0)
        self.loop.run()
        if self.waiting:
            raise RuntimeError(f"{len(self.waiting)} turns never got a decode engine")
        return summarize(self)

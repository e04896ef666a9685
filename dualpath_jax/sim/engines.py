"""Prefill and decode engines in virtual time.

Prefill: batches run one after another; a batch's time comes from its FLOPs and the bytes its data
path moves through the PE GPU's CNIC. Layerwise prefill overlaps each layer's transfer with compute
(the slower of the two dominates, plus one layer of pipeline fill); without it the whole hit KV is
loaded before compute and the whole KV sent to the DE after it.

Decode: a continuous batch advanced analytically. All requests of an engine gain one token per step,
so the engine keeps one step counter; a request finishes when the counter reaches its target. The
step time is recomputed only when the batch changes: events scale with joins and leaves, never
with decode iterations.
"""
from __future__ import annotations

import heapq
from collections import deque
from typing import TYPE_CHECKING, Callable

from ..costmodel import CostModel

if TYPE_CHECKING:
    from .simulator import Request
    from .events import EventLoop


class PrefillEngine:
    def __init__(self, eid: int, node: int, loop: "EventLoop", cost: CostModel, *, layerwise: bool,
                 free_io: bool, batch_tokens: int, kv_room: float, cnic_bw: float,
                 on_done: Callable[["Request"], None]):
        self.id, self.node, self.loop, self.cost = eid, node, loop, cost
        self.layerwise, self.free_io = layerwise, free_io
        self.batch_tokens, self.kv_room, self.cnic_bw = batch_tokens, kv_room, cnic_bw
        self.on_done = on_done
        self.ready: deque["Request"] = deque()
        self.running = False
        self.compute_s = 0.0  # time spent computing (GPU busy)
        self.batches = 0

    def submit(self, req: "Request") -> None:
        self.ready.append(req)
        if not self.running:
            self._start()

    def _take_batch(self) -> list["Request"]:
        batch, new, kv = [], 0, 0.0
        while self.ready:
            r = self.ready[0]
            r_kv = r.turn.input * self.cost.kv_bytes_per_token
            over_tokens = new + r.turn.new > self.batch_tokens
            over_hbm = not self.layerwise and kv + r_kv > self.kv_room
            if batch and (over_tokens or over_hbm):
                break
            batch.append(self.ready.popleft())
            new += r.turn.new
            kv += r_kv
        return batch

    def _start(self) -> None:
        batch = self._take_batch()
        if not batch:
            self.running = False
            return
        self.running = True
        compute = sum(self.cost.prefill_time(r.flops) for r in batch)
        if self.free_io:
            t = compute
        else:
            t_in = sum(r.plan.pe_in_bytes for r in batch) / self.cnic_bw
            t_out = sum(r.plan.pe_out_bytes for r in batch) / self.cnic_bw
            if self.layerwise:
                io = max(t_in, t_out)
                t = max(compute, io) + min(compute, io) / self.cost.model.layers
            else:
                t = t_in + compute + t_out
        self.compute_s += compute
        self.batches += 1
        self.loop.at(self.loop.now + t, self._finish, batch)

    def _finish(self, batch: list["Request"]) -> None:
        for r in batch:
            self.on_done(r)
        self._start()


class DecodeEngine:
    def __init__(self, eid: int, node: int, loop: "EventLoop", cost: CostModel,
                 on_done: Callable[["Request"], None]):
        self.id, self.node, self.loop, self.cost = eid, node, loop, cost
        self.on_done = on_done
        self.steps = 0.0  # steps every request in the batch has taken since time 0
        self.t_last = 0.0
        self.step_time = 0.0
        self.keys = 0.0  # sum of attended keys of the batch
        self.context = 0.0  # sum of context lengths of the batch
        self.due: list = []  # heap of (target step count, seq, request)
        self._seq = 0
        self._version = 0
        self.busy_s = 0.0  # time with a non-empty batch
        self.batch_area = 0.0  # integral of batch size over time

    @property
    def batch(self) -> int:
        return len(self.due)

    def _advance(self) -> None:
        now = self.loop.now
        if self.due and self.step_time > 0:
            dt = now - self.t_last
            self.steps += dt / self.step_time
            self.busy_s += dt
            self.batch_area += dt * len(self.due)
        self.t_last = now

    def join(self, req: "Request") -> None:
        self._advance()
        ctx = req.turn.input
        req.decode_keys = self.cost.counts.decode_keys(ctx)
        self.keys += req.decode_keys
        self.context += ctx
        heapq.heappush(self.due, (self.steps + req.turn.output - 1, self._seq, req))
        self._seq += 1
        self._reschedule()

    def _reschedule(self) -> None:
        self._version += 1
        if not self.due:
            self.step_time = 0.0
            return
        self.step_time = self.cost.decode_step_time(len(self.due), self.keys, self.context)
        remaining = max(0.0, self.due[0][0] - self.steps)
        self.loop.at(self.loop.now + remaining * self.step_time, self._on_due, self._version)

    def _on_due(self, version: int) -> None:
        if version != self._version:
            return  # the batch changed since this was scheduled
        self._advance()
        done = []
        while self.due and self.due[0][0] <= self.steps + 1e-9:
            _, _, req = heapq.heappop(self.due)
            self.keys -= req.decode_keys
            self.context -= req.turn.input
            done.append(req)
        self._reschedule()
        for req in done:
            self.on_done(req)

"""Prefill nodes and decode engines in virtual time.

Prefill: data-parallel attention + expert-parallel MoE, so the 8 engines of a PE node step in
lockstep: every layer waits for the slowest GPU's attention (the DP-attention barrier) and the MoE
work is shared by all of the node's GPUs. Each engine packs its own batch from its ready queue
(`tokens`: FIFO up to a token budget; `quota`: FIFO up to a compute quota with the last request
chunked). A step's time combines compute, the EP all-to-all and the KV bytes its data path moves
through each GPU's CNIC:
- traffic manager on (QoS): model collectives keep `qos_weight` of the CNIC while KV is active,
  KV takes what is left (work-conserving); off: fair sharing (each class half while both are active);
- layerwise prefill overlaps each layer's KV transfer with compute (plus one layer of pipeline fill);
  without it the whole hit KV is loaded before compute and the whole KV sent to the DE after it.

Decode: a continuous batch advanced analytically. All requests of an engine gain one token per step,
so the engine keeps one step counter; a request finishes when the counter reaches its target. The
step time is recomputed only when the batch changes: events scale with joins and leaves, never with
decode iterations.
"""

from __future__ import annotations

import heapq
from collections import deque
from itertools import islice
from typing import Callable

from ..config import SimSpec, SystemSpec
from ..costmodel import CostModel
from ..link import FluidLink
from ..scheduling.intra import pack_quota
from .events import EventLoop
from .turn import SimTurn


def lane_share(kv_active: bool, qos: bool, weight: float) -> float:
    """Share of a CNIC the model collectives get."""
    if not kv_active:
        return 1.0
    return weight if qos else 0.5


class PrefillNode:
    def __init__(
        self,
        node: int,
        engine_ids: list[int],
        loop: "EventLoop",
        cost: CostModel,
        system: "SystemSpec",
        sim: "SimSpec",
        kv_room: float,
        cnic_bw: float,
        on_done: Callable[[SimTurn], None],
    ):
        self.node, self.loop, self.cost, self.system, self.sim = node, loop, cost, system, sim
        self.kv_room, self.bw, self.on_done = kv_room, cnic_bw, on_done
        self.queues: dict[int, deque] = {e: deque() for e in engine_ids}
        self.running = False
        self.kvb = cost.kv_bytes_per_token
        self.layers = cost.model.layers
        self.ep_bytes = cost.counts.ep_bytes_per_token(cost.prefill_ep_nodes)
        self.quota = sim.quota_ms / 1e3
        self.max_batch = cost.prefill_max_batch  # profiled: the table's largest batch (else unbounded)
        # profiled: the table prices a GPU's whole batch (its mean shape at its size), else None
        self.batch_time = getattr(cost, "prefill_batch_time", None)
        self._split: dict = {}  # (cached, new) -> (attention s, linear s): packing asks repeatedly
        # accounting
        self.attn_s = {e: 0.0 for e in engine_ids}  # attention seconds per engine
        self.busy_s = 0.0  # GPU-seconds of compute over the node's engines
        self.bubble_s = 0.0  # GPU-seconds waiting at the DP-attention barrier
        self.step_s = 0.0
        self.steps = 0

    def submit(self, req: SimTurn) -> None:
        self.queues[req.pe].append(req)
        if not self.running:
            self._start()

    # ---- batch formation -------------------------------------------------------------------
    def _times(self, cached: int, new: int) -> tuple[float, float]:
        hit = self._split.get((cached, new))
        if hit is None:
            if len(self._split) > 65536:
                self._split.clear()
            hit = self._split[(cached, new)] = self.cost.prefill_split(cached, new)
        return hit

    def _predict(self, cached: int, new: int) -> float:
        hit = self._split.get((cached, new)) or self._times(cached, new)  # the hit, inlined: packing's inner loop
        return hit[0] + hit[1]

    def pack(self, queue: deque) -> list[tuple[SimTurn, int]]:
        """The next batch an engine forms from its ready queue: (turn, new tokens to prefill)."""
        if self.system.batching == "quota":
            # lazily, and at most 65: quota packing stops at the first turn that does not fit
            items = ((r.hit + r.done, r.new - r.done) for r in islice(queue, min(65, self.max_batch)))
            chunks = pack_quota(items, self.quota, self._predict, self.sim.min_chunk_tokens)
            return [(queue[i], k) for i, k in enumerate(chunks)]
        out, new, kv = [], 0, 0.0
        for r in queue:
            r_kv = r.input * self.kvb
            if out and (
                len(out) >= self.max_batch
                or new + r.new > self.sim.prefill_batch_tokens
                or (not self.system.layerwise and kv + r_kv > self.kv_room)
            ):
                break
            out.append((r, r.new))
            new += r.new
            kv += r_kv
        return out

    # ---- one lockstep step over the node's engines ------------------------------------------
    def _start(self) -> None:
        batches = {e: self.pack(q) for e, q in self.queues.items() if q}
        if not batches:
            self.running = False
            return
        self.running = True
        free_io, split = self.system.free_io, self._split
        attn, lin_total, io_in, io_out, model = {}, 0.0, {}, {}, {}
        for e, batch in batches.items():
            a = tok = b_in = b_out = 0.0
            for r, k in batch:
                if r.started < 0:
                    r.started = self.loop.now
                c = r.hit + r.done
                ra, rl = split.get((c, k)) or self._times(c, k)  # the cache hit, inlined
                a += ra
                lin_total += rl
                tok += k
                if not free_io:
                    b_in += r.plan.chunk_in_bytes(r.done)
                    b_out += r.plan.chunk_out_bytes(r.done, k)
            if self.batch_time is not None:  # profiled: the batch's measured time, on this GPU alone
                a = self.batch_time([(r.hit + r.done, k) for r, k in batch])
            attn[e], io_in[e], io_out[e], model[e] = a, b_in, b_out, tok * self.ep_bytes
        n = len(self.queues)
        lin = lin_total / n  # the MoE work is shared by every GPU of the node (EP)
        a_max = max(attn.values())
        compute = a_max + lin
        w, qos = self.sim.qos_weight, self.system.qos
        comm = max(model[e] / (self.bw * lane_share(io_in[e] + io_out[e] > 0, qos, w)) for e in batches)
        critical = self.cost.prefill_step(compute, comm)
        if free_io:
            t = critical
        else:
            io = max(max(io_in[e], io_out[e]) for e in batches) / self.bw
            if self.system.layerwise:
                cnic = max(model[e] + max(io_in[e], io_out[e]) for e in batches) / self.bw
                t = max(critical, cnic) + min(compute, io) / self.layers
            else:
                t = max(io_in.values()) / self.bw + critical + max(io_out.values()) / self.bw
        for e, a in attn.items():
            self.attn_s[e] += a
        self.busy_s += sum(attn.values()) + n * lin
        self.bubble_s += sum(a_max - attn.get(e, 0.0) for e in self.queues)
        self.step_s += t
        self.steps += 1
        self.loop.at(self.loop.now + t, self._finish, batches)

    def _finish(self, batches: dict) -> None:
        done = []
        for e, batch in batches.items():
            q = self.queues[e]
            for r, k in batch:
                r.done += k
                if r.done >= r.new:
                    q.remove(r) if q[0] is not r else q.popleft()
                    done.append(r)
        for r in done:
            self.on_done(r)
        self._start()


class DecodeEngine:
    def __init__(
        self,
        eid: int,
        node: int,
        loop: "EventLoop",
        cost: CostModel,
        cnic: "tuple[FluidLink, FluidLink | None]",
        qos: bool,
        qos_weight: float,
        on_done: Callable[[SimTurn], None],
    ):
        self.id, self.node, self.loop, self.cost = eid, node, loop, cost
        self.h2d, self.out = cnic  # the GPU's CNIC, in (and, v2, out: DE-path reads leaving)
        self.qos, self.qos_weight = qos, qos_weight
        self.on_done = on_done
        self.coef = cost.decode_coef
        self.ep_floor, self.ep_overlap = cost.decode_ep_floor_s, cost.decode_ep_overlap
        self.steps = 0.0  # steps every request in the batch has taken since time 0
        self.t_last = 0.0
        self.step_time = 0.0
        self.keys = 0.0  # sum of attended keys of the batch
        self.context = 0.0  # sum of context lengths of the batch
        # the batch by the step count at which each request is done: a heap of the distinct
        # targets and, per target, its requests in join order (floats compare faster than tuples)
        self.due: list[float] = []
        self.due_at: dict[float, list[SimTurn]] = {}
        self.batch = 0  # requests in the batch
        self._version = 0
        self._event_at = None  # time of the pending completion check, if any
        self.busy_s = 0.0  # time with a non-empty batch
        self.batch_area = 0.0  # integral of batch size over time

    def _advance(self) -> None:
        now = self.loop.now
        if self.batch and self.step_time > 0:
            dt = now - self.t_last
            self.steps += dt / self.step_time
            self.busy_s += dt
            self.batch_area += dt * self.batch
        self.t_last = now

    def join(self, req: SimTurn) -> None:
        self._advance()
        req.joined = self.loop.now
        self._add(req, 1)
        target = self.steps + req.output - 1
        reqs = self.due_at.get(target)
        if reqs is None:
            self.due_at[target] = [req]
            heapq.heappush(self.due, target)
        else:
            reqs.append(req)
        self.batch += 1
        self._reschedule()
        if req.output > 1:
            req.second_token = self.loop.now + self.step_time

    def _reschedule(self) -> None:
        if not self.batch:
            self.step_time = 0.0
            self._version += 1  # nothing left to finish: drop any pending check
            self._event_at = None
            return
        t = self.step_time = self._step_time()
        left = self.due[0] - self.steps
        at = self.loop.now + (left if left > 0.0 else 0.0) * t  # max(0.0, left) without the call
        # A pending check that fires early only re-checks, so keep it unless this one is earlier.
        if self._event_at is None or at < self._event_at:
            self._version += 1
            self._event_at = at
            self.loop.at(at, self._on_due, self._version)

    def _on_due(self, version: int) -> None:
        if version != self._version:
            return  # superseded by an earlier check
        self._event_at = None
        self._advance()
        done, due, due_at, add = [], self.due, self.due_at, self._add
        reached = self.steps + 1e-9
        while due and due[0] <= reached:
            for req in due_at.pop(heapq.heappop(due)):
                add(req, -1)
                done.append(req)
        self.batch -= len(done)
        self._reschedule()
        for req in done:
            self.on_done(req)

    def _add(self, req: SimTurn, sign: int) -> None:
        """`req` joins (+1) or leaves (-1) the batch."""
        self.keys += sign * req.decode_keys
        self.context += sign * req.input

    def _step_time(self) -> float:
        return self.gpu_step_time(self.batch, self.keys, self.context, self.h2d, self.out)

    def gpu_step_time(self, b: int, keys: float, context: float, h2d: FluidLink, out: FluidLink | None) -> float:
        """One GPU's decode step for its batch (`CostModel.decode_step_time`, inlined), slowed while KV
        crosses its CNIC."""
        if self.coef is None:  # profiled: the table's step (costmodel/profiled.py), no EP floor
            t = self.cost.decode_step_time(b, keys, context)
        else:
            fixed, per_request, per_key, per_ctx = self.coef
            t = fixed + b * per_request + keys * per_key + context * per_ctx
        floor = self.ep_floor
        if floor:  # cost model v2 (`CostModel.with_ep_floor`, inlined)
            t = (t if t >= floor else floor) if self.ep_overlap else t + floor
        now = self.loop.now
        if h2d.free_at > now or (out is not None and out.free_at > now):  # KV slows the all-to-all
            share = lane_share(True, self.qos, self.qos_weight)
            t += self.cost.decode_comm_time(b) * (1.0 / share - 1.0)
        return t


class LockstepDecode(DecodeEngine):
    """v2 (`costmodel.decode_lockstep`): the decode GPUs of one EP group step together, since every
    MoE layer's all-to-all waits for all of them. One step counter and one batch heap for the group;
    a step takes as long as its slowest GPU's. Each GPU keeps its own batch sums; `busy_s` and
    `batch_area` add up over the GPUs, as they would over separate engines."""

    def __init__(self, engines: list[DecodeEngine]):
        e = engines[0]
        super().__init__(-1, e.node, e.loop, e.cost, (e.h2d, e.out), e.qos, e.qos_weight, e.on_done)
        self.slot = {g.id: i for i, g in enumerate(engines)}
        self.links = [(g.h2d, g.out) for g in engines]
        n = len(engines)
        self.count, self.gpu_keys, self.gpu_context = [0] * n, [0.0] * n, [0.0] * n
        self.raw, self.gpu_t = [0.0] * n, [0.0] * n
        self.slowest = 0  # the GPU whose step is longest

    def _advance(self) -> None:
        now = self.loop.now
        if self.batch and self.step_time > 0:
            self.steps += (now - self.t_last) / self.step_time
        self.t_last = now

    def _add(self, req: SimTurn, sign: int) -> None:
        i, now = self.slot[req.de], self.loop.now
        gpu_t, count, raw = self.gpu_t, self.count, self.raw
        dt, b = now - gpu_t[i], count[i]
        if b:  # this GPU's accounting up to now, before its batch changes
            self.busy_s += dt
            self.batch_area += dt * b
        gpu_t[i] = now
        b = count[i] = b + sign
        keys = self.gpu_keys[i] = self.gpu_keys[i] + sign * req.decode_keys
        context = self.gpu_context[i] = self.gpu_context[i] + sign * req.input
        longest = raw[self.slowest]
        t = raw[i] = self.gpu_step_time(b, keys, context, *self.links[i]) if b else 0.0
        if t >= longest:
            self.slowest = i
        elif i == self.slowest:  # the slowest got faster: find the new slowest
            self.slowest = raw.index(max(raw))  # the first of the longest, as max(key=) would give

    def _step_time(self) -> float:
        return self.raw[self.slowest]

"""The testbed's serving loop: agents' turns placed by the shared scheduler onto real engines.

A turn's life (wall clock): arrives (its agent's previous turn is persisted) -> the scheduler
(`dualpath_jax.scheduling`, the simulator's own) places it: a DE, a PE and a read side -> its hit
Full Blocks are read from the TensorStore KV store into the read node's DRAM buffer through that
node's throttled SNIC -> the PE prefills it (loaders.py moves the KV per layer) -> the DE buffer
holds its whole KV -> one H2D into the DE GPU -> decode in the DE's continuous batch -> its new KV
is written to the store through the DE node's SNIC -> the agent's next turn arrives.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from ..config import ConfigError, ExperimentConfig, SystemSpec
from ..datapath import plan_turn
from ..kvstore import KVStore
from ..model import LayerwisePrefill, get_config, jit_decode_step, make_model_fast
from ..scheduling import SchedContext, make_scheduler
from ..workload.trace import Trajectory
from . import kvcodec
from .cluster import EmulatedCluster
from .decode import DecodeEngine
from .prefill import PrefillEngine
from .report import TestbedMetrics, summarize
from .requests import TurnRequest, token_stream
from .spec import TestbedSpec


def model_config(spec: TestbedSpec):
    over = {}
    if spec.n_layers:
        over["n_layers"] = spec.n_layers
    if spec.dtype:
        over["dtype"] = spec.dtype
    if spec.moe_backend:
        over["moe_backend"] = spec.moe_backend
    return get_config(spec.model, **over)


class Testbed:
    """Model weights on every engine's device, token streams and compiled shapes, shared by the
    systems run on it; `run_system` serves the whole workload once for one system."""

    __test__ = False

    def __init__(self, cfg: ExperimentConfig, spec: TestbedSpec, agents: list[Trajectory]):
        for name in (
            "tokens_per_block",
            "io_window",
            "max_prefill_batch",
            "max_decode_batch",
            "prefetch_layers",
            "send_threads",
        ):
            if getattr(spec, name) < 1:
                raise ConfigError(f"testbed.{name}: must be a positive integer, got {getattr(spec, name)!r}")
        self.cfg, self.spec = cfg, spec
        if spec.max_turns:
            agents = [Trajectory(a.id, a.turns[: spec.max_turns]) for a in agents]
        self.agents = agents
        self.mcfg = model_config(spec)
        self.kvb = kvcodec.bytes_per_token(self.mcfg)
        self.g = cfg.cluster.gpus_per_node
        cluster = EmulatedCluster(cfg.cluster, spec.dram_buffer_gb)
        self.devices = cluster.devices
        self.pe_ids = [e for n in cluster.nodes if n.role == "prefill" for e in n.engines]
        self.de_ids = [e for n in cluster.nodes if n.role == "decode" for e in n.engines]
        for a in agents:
            for t in a.turns:
                if t.input + t.output > spec.max_context:
                    raise ValueError(
                        f"agent {a.id}: a turn needs {t.input + t.output} tokens but "
                        f"testbed.max_context={spec.max_context}; raise it or use a "
                        f"shorter workload (testbed.max_turns, smaller +len)"
                    )
        self.ids = [token_stream(a, k, self.mcfg.vocab_size, spec.seed) for k, a in enumerate(agents)]
        t0 = time.perf_counter()
        model = make_model_fast(self.mcfg, spec.seed)
        graphdef, state = nnx.split(model)
        self.lw, self.state, self.step = {}, {}, {}
        for e in self.pe_ids + self.de_ids:
            st = jax.device_put(state, self.devices[e])
            if e in self.pe_ids:
                self.lw[e] = LayerwisePrefill(nnx.merge(graphdef, st))
            else:
                self.state[e], self.step[e] = st, jit_decode_step(graphdef)
        del model, state
        self.init_s = time.perf_counter() - t0
        self.full_kv: list[np.ndarray] | None = None  # per agent [Y, F, D] host (oracle, preload)
        self.oracle_kv: dict = {}
        self.warm_s = 0.0
        self._warm = False

    # ---- untimed preparation -------------------------------------------------------------------
    def _full_kv(self) -> list[np.ndarray]:
        """Each agent's KV for its whole token stream, by one prefill on the first PE (untimed)."""
        if self.full_kv is None:
            lw, dev = self.lw[self.pe_ids[0]], self.devices[self.pe_ids[0]]
            out = []
            for ids in self.ids:
                kv = np.stack([np.asarray(jax.device_get(k))[0] for k in lw(jax.device_put(ids[None], dev)).kv])
                out.append(kv)
            self.full_kv = out
        return self.full_kv

    def warmup(self) -> None:
        """Compile every prefill, insert, extract and decode shape of the workload (untimed)."""
        if self._warm or not self.spec.warmup:
            return
        t0 = time.perf_counter()
        bt = self.spec.tokens_per_block
        shapes, inputs, writes = set(), set(), set()
        for a in self.agents:
            for t in a.turns:
                hit = t.cached // bt * bt
                shapes.add((hit, t.input - hit))
                inputs.add(t.input)
                w = ((t.input + t.output) // bt - hit // bt) * bt
                if w > 0:
                    writes.add(w)
        y, d = self.mcfg.n_layers, kvcodec.kv_width(self.mcfg)
        for e in self.pe_ids:
            lw, dev = self.lw[e], self.devices[e]
            for hit, new in sorted(shapes):
                x = lw.embed(jax.device_put(np.zeros((1, new), np.int32), dev))
                prefix = jax.device_put(np.zeros((1, hit, d), self.mcfg.dtype), dev) if hit else None
                for i in range(y):
                    x, kv = lw.layer_kv(i, x, prefix)
                kv.block_until_ready()
                lw.head(x)[:, new - 1].block_until_ready()
        for e in self.de_ids:
            de = DecodeEngine(self, e, self.state[e], self.step[e])
            de.warmup(inputs, writes)
            # the DE path's staging (blocks -> [Y, hit, D] on the DE device) and per-layer slice
            for hit, _ in sorted(shapes):
                if hit:
                    blocks = np.zeros((hit // bt,) + kvcodec.block_layout(self.mcfg, bt).full_block_shape, np.uint8)
                    st = kvcodec.stage_blocks(jax.device_put(blocks, self.devices[e]), self.mcfg.dtype, d)
                    kvcodec.layer_of(st, np.int32(0)).block_until_ready()
                    del st
        self.warm_s = time.perf_counter() - t0
        self._warm = True

    # ---- one system ------------------------------------------------------------------------------
    def run_system(self, system: SystemSpec) -> TestbedMetrics:
        spec, bt = self.spec, self.spec.tokens_per_block
        self.system = system
        self.cluster = EmulatedCluster(self.cfg.cluster, spec.dram_buffer_gb, devices=self.devices)
        self.warmup()
        tmp = None
        if spec.store_path:
            Path(spec.store_path).mkdir(parents=True, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f"{system.name}-", dir=spec.store_path)
        self.store = KVStore.open(
            tmp,
            kvcodec.block_layout(self.mcfg, bt),
            capacity_blocks=spec.capacity_blocks,
            create=True,
            io_window=spec.io_window,
        )
        try:
            self._prepare(system)
            return self._serve(system)
        finally:
            self.store.close()
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            self.oracle_kv = {}

    def _prepare(self, system: SystemSpec) -> None:
        bt = self.spec.tokens_per_block
        pre = [a.turns[0].cached // bt * bt for a in self.agents]
        if system.free_io:
            full = self._full_kv()
            for k in range(len(self.agents)):
                self.oracle_kv[k] = {e: jax.device_put(full[k], self.devices[e]) for e in self.pe_ids + self.de_ids}
            # compile the staged-KV slices of this workload (untimed)
            for k, a in enumerate(self.agents):
                for t in a.turns:
                    for e in self.pe_ids:
                        kvcodec.layer_prefix(self.oracle_kv[k][e], 0, t.cached // bt * bt).block_until_ready()
                    for e in self.de_ids:
                        kvcodec.prefix(self.oracle_kv[k][e], t.input).block_until_ready()
        elif any(pre):
            full = self._full_kv()
            for k, n in enumerate(pre):
                if n:
                    self.store.write(self.ids[k][:n], kvcodec.blocks_of(full[k][:, :n], bt)).result()

    def _serve(self, system: SystemSpec) -> TestbedMetrics:
        cl = self.cluster
        de_room = self.spec.max_decode_batch * self.spec.max_context * self.kvb
        self.pe_groups, self.de_groups, self.loads = cl.load_groups(de_room)
        self.group_of = {e.id: g for g in self.pe_groups + self.de_groups for e in g.engines}
        self.ctx = SchedContext(
            read_queue_s=cl.read_queue_s,
            snic_bytes_per_s=cl.spec.snic_bytes_per_s,
            alpha_s=self.cfg.sim.alpha_s,
            beta_tokens=math.inf,
        )
        self.scheduler = make_scheduler(system.scheduler, system.dual_path, system.split_read)
        self.pes = {e: PrefillEngine(self, e, self.lw[e]) for e in self.pe_ids}
        self.des = {e: DecodeEngine(self, e, self.state[e], self.step[e]) for e in self.de_ids}
        self.stagers = {e: ThreadPoolExecutor(1, thread_name_prefix=f"de{e}-stage") for e in self.de_ids}
        self.lock = threading.RLock()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.waiting: list[TurnRequest] = []
        self.finished: list[TurnRequest] = []
        self.plan = defaultdict(float)
        self.agent_done = [0.0] * len(self.agents)
        self.left = len(self.agents)
        self._rid = 0
        switch = sys.getswitchinterval()
        if self.spec.gil_switch_s > 0:
            sys.setswitchinterval(self.spec.gil_switch_s)
        try:
            for eng in list(self.pes.values()) + list(self.des.values()):
                eng.start()
            self.t0 = time.perf_counter()
            with self.lock:
                for k in range(len(self.agents)):
                    self._arrive(k, 0)
            self.done.wait()
            wall = time.perf_counter() - self.t0
        finally:
            sys.setswitchinterval(switch)
        for eng in list(self.pes.values()) + list(self.des.values()):
            eng.stop()
        for st in self.stagers.values():
            st.shutdown()
        if self.error is not None:
            raise RuntimeError(f"testbed run of system {system.name!r} failed: {self.error!r}") from self.error
        return summarize(self, wall)

    def fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
        self.done.set()

    # ---- a turn's life ---------------------------------------------------------------------------
    def _arrive(self, agent: int, index: int) -> None:
        turn = self.agents[agent].turns[index]
        bt = self.spec.tokens_per_block
        want = turn.cached // bt
        ids = self.ids[agent]
        if self.system.free_io:  # the oracle's KV is staged on the devices: same hit, no store
            keys, pin, hit = [], None, want * bt
        else:
            pin = self.store.lookup(ids[: turn.input], pin=True)
            keys = pin.keys[:want]
            hit = len(keys) * bt
        req = TurnRequest(self._rid, agent, index, turn, ids, hit, keys, self.kvb, time.perf_counter())
        req.pin = pin
        self._rid += 1
        self.waiting.append(req)
        self._schedule()

    def _schedule(self) -> None:
        if not self.waiting or self.done.is_set():
            return
        placed = 0
        for p in self.scheduler.place(self.waiting, self.pe_groups, self.de_groups, self.ctx):
            self._dispatch(self.waiting[placed], p)
            placed += 1
        del self.waiting[:placed]

    def _dispatch(self, req: TurnRequest, p) -> None:
        cl, free_io = self.cluster, self.system.free_io
        req.pe, req.de = p.pe, p.de
        req.placed = req.read_done = time.perf_counter()  # read_done moves on if there is a read
        self.group_of[p.de].add(self.loads[p.de], req.tokens, req.kv_bytes)
        self.group_of[p.pe].add(self.loads[p.pe], req.input)
        req.read_on_de = p.read_on_de  # a split read goes whole to its larger side (see docs)
        if self.spec.force_read_side:
            req.read_on_de = self.spec.force_read_side == "de"
        req.read_node = cl.node_of(p.de if req.read_on_de else p.pe).id
        plan = plan_turn(
            cached=req.hit,
            new=req.new,
            output=req.output,
            kv_bytes_per_token=self.kvb,
            de_read_fraction=float(req.read_on_de),
            free_io=free_io,
        )
        role = "de" if req.read_on_de else "pe"
        for link, b in plan.bytes_on().items():
            self.plan[f"{link}_{role}_read" if link == "snic_read" else link] += b
        if not free_io:
            cl.node_of(p.de).buffer.alloc(
                ("kv", req.rid),
                (self.mcfg.n_layers, req.input, kvcodec.kv_width(self.mcfg)),
                kvcodec.np_dtype(self.mcfg),
            )
        if free_io or req.hit == 0:
            self.pes[p.pe].submit(req)
            return
        node = cl.nodes[req.read_node]
        cl.book_read(node.id, req.hit_bytes)
        buf = node.buffer.alloc(("blocks", req.rid), (len(req.keys),) + self.store.layout.full_block_shape, np.uint8)
        fut = self.store.read_blocks(req.keys, throttle=node.snic_read, out=buf, verify=self.spec.verify_reads)
        fut.add_done_callback(lambda f, req=req, node=node, buf=buf: self._read_done(req, node, buf, f))

    def _read_done(self, req, node, buf, fut) -> None:
        if fut.exception() is not None:
            self.fail(fut.exception())
            return
        self.cluster.links.add(f"snic_read[{node.id}]", buf.nbytes)
        req.read_done = time.perf_counter()
        if req.read_on_de:
            self.stagers[req.de].submit(self._stage, req, node, buf)
        else:
            self.pes[req.pe].submit(req)

    def _stage(self, req: TurnRequest, node, buf: np.ndarray) -> None:
        """DE path, once per request, off the PE's threads: one H2D of the read blocks onto the DE
        device, reordered there to [Y, hit, D] (the loader then moves each layer as one D2D copy),
        and the hit KV copied into the DE buffer (where the DE's join H2D takes it from)."""
        try:
            cl = self.cluster
            t0 = time.perf_counter()
            up = jax.device_put(buf, cl.device(req.de))
            staged = kvcodec.stage_blocks(up, self.mcfg.dtype, kvcodec.kv_width(self.mcfg))
            staged.block_until_ready()
            del up
            cl.links.add(f"de_h2d_stage[{req.de}]", buf.nbytes)
            cl.link_s.add(f"de_h2d_stage[{req.de}]", time.perf_counter() - t0)
            kvcodec.copy_hit_to_kv(node.buffer.get(("kv", req.rid)), buf, self.mcfg)
            req.staged = staged
            self.pes[req.pe].submit(req)
        except BaseException as e:
            self.fail(e)

    def prefilled(self, req: TurnRequest, now: float) -> None:
        with self.lock:
            self.group_of[req.pe].add(self.loads[req.pe], -req.input, requests=-1)
            req.first_token = now
            if req.read_node >= 0:
                self.cluster.nodes[req.read_node].buffer.free(("blocks", req.rid))
            self._schedule()
        self.des[req.de].join(req)

    def decoded(self, req: TurnRequest) -> None:
        with self.lock:
            self.group_of[req.de].add(self.loads[req.de], -req.tokens, -req.kv_bytes, requests=-1)
            self._schedule()

    def persisted(self, req: TurnRequest) -> None:
        with self.lock:
            req.persisted = time.perf_counter()
            if req.pin is not None:
                req.pin.release()
            self.finished.append(req)
            if req.index + 1 < len(self.agents[req.agent].turns):
                self._arrive(req.agent, req.index + 1)
            else:
                self.agent_done[req.agent] = req.persisted - self.t0
                self.left -= 1
                if self.left == 0:
                    self.done.set()

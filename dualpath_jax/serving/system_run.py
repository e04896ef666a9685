"""One system serving the whole workload once on a `Testbed`'s engines (wall clock).

A `SystemRun` owns everything of that one run: the emulated cluster (node buffers, SNICs, link
counters), the KV store in a fresh folder, the KV source (`StoredKV`, or the oracle's `StagedKV`),
the shared `Dispatcher` with the system's scheduler, the engines and the counters. Engines get a
frozen `EngineContext` and the callbacks below; turns go from stage to stage as `TestbedTurn`s.

Where the testbed differs from the simulator it says so to the `Dispatcher`: no PE overload
threshold (`beta_tokens=inf`: the testbed has no calibrated prefill rate to scale `sim.beta_s` by),
a split read's DE share in whole KV blocks (`read_block_tokens`: the store reads Full Blocks), and
`testbed.force_read_side`.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from ..config import SystemSpec
from ..kvstore import KVStore
from ..scheduling import SchedContext, make_scheduler
from ..scheduling.dispatch import Dispatcher
from . import kvcodec
from .cluster import EmulatedCluster
from .context import EngineContext
from .decode import DecodeEngine
from .kvsource import StagedKV, StoredKV
from .prefill import PrefillEngine
from .report import TestbedMetrics, summarize
from .requests import TestbedTurn


class SystemRun:
    def __init__(self, tb, system: SystemSpec):
        spec, bt = tb.spec, tb.spec.tokens_per_block
        self.tb, self.system = tb, system
        self.cluster = cl = EmulatedCluster(tb.cfg.cluster, spec.dram_buffer_gb, devices=tb.devices)
        self._folder = self.store = None
        if system.free_io:
            engines = tb.pe_ids + tb.de_ids
            self.kv = StagedKV(tb.whole_kv(), {e: tb.devices[e] for e in engines}, bt)
        else:
            if spec.store_path:
                Path(spec.store_path).mkdir(parents=True, exist_ok=True)
                self._folder = tempfile.mkdtemp(prefix=f"{system.name}-", dir=spec.store_path)
            layout = kvcodec.block_layout(tb.mcfg, bt)
            self.store = KVStore.open(
                self._folder, layout, capacity_blocks=spec.capacity_blocks, create=True, io_window=spec.io_window
            )
            self.kv = StoredKV(self.store, cl, tb.mcfg, spec, tb.de_ids)
        try:
            self._prepare()
        except BaseException:
            self.__exit__()  # the store and its folder are not left behind
            raise

    def _dispatcher(self) -> Dispatcher:
        """The shared policy, on this run's cluster, read queues and wall clock."""
        tb, system, spec, cl = self.tb, self.system, self.tb.spec, self.cluster
        pe_groups, de_groups = cl.load_groups(spec.max_decode_batch * spec.max_context * tb.kvb)
        sched = SchedContext(
            read_queue_s=cl.read_queue_s,
            snic_bytes_per_s=cl.spec.snic_bytes_per_s,
            alpha_s=tb.cfg.sim.alpha_s,
            beta_tokens=math.inf,
        )
        return Dispatcher(
            make_scheduler(system.scheduler, system.dual_path, system.split_read),
            pe_groups,
            de_groups,
            sched,
            kv_bytes_per_token=tb.kvb,
            free_io=system.free_io,
            on_placed=self._placed,
            clock=time.perf_counter,
            read_block_tokens=spec.tokens_per_block,
            read_side=spec.force_read_side,
        )

    def _prepare(self) -> None:
        """Warm-up and staging (untimed), then the dispatcher, the engines and the counters."""
        tb, system, spec, cl = self.tb, self.system, self.tb.spec, self.cluster
        bt = spec.tokens_per_block
        self.ctx = EngineContext(tb.mcfg, spec, system, tb.cfg.sim, cl, self.kv, self.fail)
        tb.warmup(self.ctx)
        if system.free_io:
            self.kv.warm(tb.agents, tb.pe_ids, tb.de_ids)
        elif any(a.turns[0].cached >= bt for a in tb.agents):
            whole = tb.whole_kv()
            for k, a in enumerate(tb.agents):
                self.kv.preload(tb.ids[k], whole[k], a.turns[0].cached // bt * bt)
        self.dispatcher = self._dispatcher()
        self.pes = {e: PrefillEngine(self.ctx, e, tb.lw[e], self._prefilled) for e in tb.pe_ids}
        self.des = {
            e: DecodeEngine(self.ctx, e, tb.state[e], tb.step[e], self._decoded, self._persisted) for e in tb.de_ids
        }
        self.lock = threading.RLock()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.finished: list[TestbedTurn] = []
        self.plan_bytes: dict[str, float] = defaultdict(float)  # link -> bytes the turns' plans put on it
        self.agent_done = [0.0] * len(tb.agents)
        self.left = len(tb.agents)
        self.t0 = 0.0
        self._rid = 0

    def __enter__(self) -> SystemRun:
        return self

    def __exit__(self, *exc) -> None:
        self.kv.close()
        if self.store is not None:
            self.store.close()
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)

    def serve(self) -> TestbedMetrics:
        """Start every agent's first turn at once and wait for the last turn to be persisted."""
        engines = list(self.pes.values()) + list(self.des.values())
        switch = sys.getswitchinterval()
        if self.tb.spec.gil_switch_s > 0:
            sys.setswitchinterval(self.tb.spec.gil_switch_s)
        try:
            for eng in engines:
                eng.start()
            self.t0 = time.perf_counter()
            with self.lock:
                for k in range(len(self.tb.agents)):
                    self._arrive(k, 0)
            self.done.wait()
            wall = time.perf_counter() - self.t0
        finally:
            sys.setswitchinterval(switch)
        for eng in engines:
            eng.stop()
        if self.error is not None:
            raise RuntimeError(f"testbed run of system {self.system.name!r} failed: {self.error!r}") from self.error
        return summarize(self, wall)

    def fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
        self.done.set()

    # ---- a turn's life (docs/simulator.md, "A turn's life") -----------------------------------
    def _arrive(self, agent: int, index: int) -> None:
        turn, ids = self.tb.agents[agent].turns[index], self.tb.ids[agent]
        hit, keys, pin = self.kv.lookup(ids, turn)
        t = TestbedTurn(self._rid, agent, index, turn, ids, hit, keys, pin, self.tb.kvb, time.perf_counter())
        self._rid += 1
        self.dispatcher.enqueue(t)
        self._schedule()

    def _schedule(self) -> None:
        if not self.done.is_set():
            self.dispatcher.schedule()

    def _placed(self, turn: TestbedTurn) -> None:
        turn.ready = turn.placed  # moves on when there is a read
        plan = self.dispatcher.plan(turn)
        for link, b in plan.bytes_on().items():
            if link != "snic_read":
                self.plan_bytes[link] += b
        # storage reads by the side whose SNIC carries them (both for a split read)
        self.plan_bytes["snic_read_pe_read"] += plan.read_pe_bytes
        self.plan_bytes["snic_read_de_read"] += plan.read_de_bytes
        self.kv.fetch(turn, self._to_pe, self.fail)

    def _to_pe(self, turn: TestbedTurn) -> None:
        self.pes[turn.pe].submit(turn)

    def _prefilled(self, turn: TestbedTurn, now: float) -> None:
        with self.lock:
            self.dispatcher.prefill_done(turn)
            turn.first_token = now
            self.kv.prefilled(turn)
            self._schedule()
        self.des[turn.de].join(turn)

    def _decoded(self, turn: TestbedTurn) -> None:
        with self.lock:
            self.dispatcher.decode_done(turn)
            self._schedule()

    def _persisted(self, turn: TestbedTurn) -> None:
        with self.lock:
            turn.persisted = time.perf_counter()
            self.finished.append(turn)
            if turn.index + 1 < len(self.tb.agents[turn.agent].turns):
                self._arrive(turn.agent, turn.index + 1)
            else:
                self.agent_done[turn.agent] = turn.persisted - self.t0
                self.left -= 1
                if self.left == 0:
                    self.done.set()

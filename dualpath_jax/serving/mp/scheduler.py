"""The scheduler process of a multi-process testbed run: the shared `Dispatcher`, the store's
owner (index, pins, journal: the only writer, so its commits stay consistent whichever node dies),
and a turn's life, driven by the node processes' records.

`MPSystemRun` is a `SystemRun` (system_run.py): the same `_arrive` -> `_placed` -> `_prefilled` ->
`_decoded` -> `_persisted`, with its engines and KV source standing in for the remote ones
(`_EngineProxy`, `OwnerKV`): a placement becomes "turn" records to the turn's PE and DE nodes,
"prefill" and "join" records go to the node that holds the engine, and the records coming back
move the turn on. One thread (the loop in `serve`) does all of it; the store's writes run on a
writer thread and come back as records too.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from ...config import SystemSpec, to_dict
from ...kvstore import KVStore
from .. import kvcodec
from ..cluster import EmulatedCluster
from ..kvsource import KVSource
from ..report import summarize
from ..system_run import SystemRun


class NodeFailure(RuntimeError):
    """A node process died, went silent or reported an error; the message names it."""


class _EngineProxy:
    """An engine in a node process, as the turn's life sees it; its counters arrive at the end."""

    def __init__(self, host, engine: int, op: str):
        self.host, self.id, self.op = host, engine, op
        self.busy_s = self.layer_busy_s = self.batch_area = 0.0
        self.batches = self.steps = 0
        self.time_s: dict = {}

    def submit(self, turn) -> None:
        self.host.send(self.host.node_of(self.id), "prefill", rid=turn.rid)

    def join(self, turn) -> None:
        self.host.send(self.host.node_of(self.id), "join", rid=turn.rid)


class OwnerKV(KVSource):
    """The scheduler's side of the data path: lookups and pins in the store it owns, the read
    queues booked at placement, and a placed turn announced to its two nodes with where its hit
    blocks are; the nodes read them themselves (remote_kv.py)."""

    def __init__(self, run, store: KVStore | None):
        self.run, self.store, self.bt = run, store, run.tb.spec.tokens_per_block
        self.waiting: dict[int, list] = {}  # rid -> [parts left, reads left, ready callback]

    def lookup(self, ids, turn):
        if self.store is None:  # the oracle: the same hit, nothing stored
            return turn.cached // self.bt * self.bt, [], None
        pin = self.store.lookup(ids[: turn.input], pin=True)
        keys = pin.keys[: turn.cached // self.bt]
        return len(keys) * self.bt, keys, pin

    def preload(self, ids, kv, tokens: int) -> None:
        if tokens:
            self.store.write(ids[:tokens], kvcodec.blocks_of(kv[:, :tokens], self.bt)).result()

    def fetch(self, turn, ready, fail):
        run, cl = self.run, self.run.cluster
        n = len(turn.keys)
        de_blocks = round(turn.de_read_fraction * n)
        turn.de_hit = de_blocks * self.bt
        pe_keys, de_keys = turn.keys[: n - de_blocks], turn.keys[n - de_blocks :]
        for engine, keys in ((turn.pe, pe_keys), (turn.de, de_keys)):
            if keys:
                cl.book_read(cl.node_of(engine).id, len(keys) * self.bt * run.tb.kvb)
        entries = self.store.entries if self.store is not None else (lambda keys: [])
        rec = dict(rid=turn.rid, agent=turn.agent, index=turn.index, hit=turn.hit, pe=turn.pe, de=turn.de,
                   de_hit=turn.de_hit, de_read_fraction=turn.de_read_fraction, arrive=turn.arrive,
                   pe_blocks=entries(pe_keys), de_blocks=entries(de_keys))  # fmt: skip
        pe_node, de_node = run.host.node_of(turn.pe), run.host.node_of(turn.de)
        run.host.send(pe_node, "turn", **rec)
        run.host.send(de_node, "turn", **rec)
        reads = bool(pe_keys) + bool(de_keys)
        parts = reads + bool(de_keys)  # every read, and the DE node's staging
        if parts == 0:
            ready(turn)
        else:
            self.waiting[turn.rid] = [parts, reads, ready]

    def tick(self, turn, read: bool, t: float) -> None:
        """A read or the staging of `turn` is done (at time t); the last one makes it ready."""
        w = self.waiting[turn.rid]
        w[0] -= 1
        if read:
            w[1] -= 1
            if w[1] == 0:
                turn.ready = t
        if w[0] == 0:
            del self.waiting[turn.rid]
            w[2](turn)


class MPSystemRun(SystemRun):
    def __init__(self, host, system: SystemSpec, index: int):
        tb, spec = host, host.spec
        self.tb, self.host, self.system, self.index = tb, host, system, index
        self.cluster = EmulatedCluster(tb.cfg.cluster, spec.dram_buffer_gb, devices=list(range(host.engines)))
        self._folder = self.store = None
        if not system.free_io:
            self._folder = tempfile.mkdtemp(prefix=f"{system.name}-", dir=host.store_root)
            layout = kvcodec.block_layout(tb.mcfg, spec.tokens_per_block)
            self.store = KVStore.open(
                self._folder, layout, capacity_blocks=spec.capacity_blocks, create=True, io_window=spec.io_window
            )
        self.kv = OwnerKV(self, self.store)
        try:
            self._prepare()
        except BaseException:
            self.__exit__()
            raise

    def _prepare(self) -> None:
        tb, system, spec, host = self.tb, self.system, self.tb.spec, self.host
        bt = spec.tokens_per_block
        if not system.free_io and any(a.turns[0].cached >= bt for a in tb.agents):
            whole = host.whole_kv()
            for k, a in enumerate(tb.agents):
                self.kv.preload(tb.ids[k], whole[k], a.turns[0].cached // bt * bt)
        whole = host.whole_kv() if system.free_io else None  # the oracle stages it on every node
        host.broadcast("system", index=self.index, system=to_dict(system), store=self._folder or "", whole_kv=whole)
        host.warm_s = max(r["warm_s"] for r in host.collect("system_ready").values())
        self.dispatcher = self._dispatcher()
        self.pes = {e: _EngineProxy(host, e, "prefill") for e in host.pe_ids}
        self.des = {e: _EngineProxy(host, e, "decode") for e in host.de_ids}
        self.lock = threading.RLock()
        self.done = threading.Event()
        self.error = None
        self.finished = []
        self.plan_bytes = defaultdict(float)
        self.agent_done = [0.0] * len(tb.agents)
        self.left = len(tb.agents)
        self.t0 = 0.0
        self._rid = 0
        self.by_rid: dict = {}
        self.halves: dict[int, list] = {}  # rid -> [prefilled at, KV received at] (the DE half: not for the oracle)
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="store-write")

    def __exit__(self, *exc) -> None:
        if getattr(self, "writer", None) is not None:
            self.writer.shutdown()
        if self.store is not None:
            self.store.close()
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)

    def _placed(self, turn) -> None:
        self.by_rid[turn.rid] = turn  # the records name turns by rid
        super()._placed(turn)

    # ---- the loop ------------------------------------------------------------------------------
    def serve(self):
        host = self.host
        switch = sys.getswitchinterval()
        host.broadcast("start")
        self.t0 = time.perf_counter()
        try:
            with self.lock:
                for k in range(len(self.tb.agents)):
                    self._arrive(k, 0)
            while not self.done.is_set():
                for rec in host.receive(0.05):
                    self._on(rec)
                host.check()
            wall = time.perf_counter() - self.t0
        finally:
            sys.setswitchinterval(switch)
        host.broadcast("stop")
        for stats in host.collect("stats").values():
            self._merge(stats)
        return summarize(self, wall)

    def fail(self, e: BaseException) -> None:
        raise e

    def _on(self, rec: dict) -> None:
        op = rec["op"]
        turn = self.by_rid.get(rec.get("rid"))
        off = self.host.offset(rec["node"])
        if op == "read":
            self.kv.tick(turn, True, rec["t"] + off)
        elif op == "staged":
            self.kv.tick(turn, False, rec["t"] + off)
        elif op == "prefilled":
            turn.queued, turn.prefill_start = rec["queued"] + off, rec["prefill_start"] + off
            turn.first_logits = rec["logits"]
            self._half(turn, 0, rec["t"] + off)
        elif op == "received":
            self._half(turn, 1, rec["t"] + off)
        elif op == "decoded":
            turn.joined, turn.finished = rec["joined"] + off, rec["finished"] + off
            self._decoded(turn)
        elif op == "write":
            self.writer.submit(self._write, turn, rec["first_block"], rec["blocks"])
        elif op == "persisted":
            self._persisted(turn)
        else:
            self.host.unexpected(rec)

    def _half(self, turn, k: int, t: float) -> None:
        h = self.halves.setdefault(turn.rid, [None, None if not self.system.free_io else 0.0])
        h[k] = t
        if None not in h:
            del self.halves[turn.rid]
            self._prefilled(turn, max(h))

    def _write(self, turn, first_block: int, blocks) -> None:
        """The writer thread: commit the turn's new whole blocks (already through the DE node's
        SNIC) to the store, release its pin, and hand it back to the loop."""
        try:
            if blocks is not None:
                w1 = first_block + len(blocks)
                self.store.write(
                    turn.ids[: w1 * self.tb.spec.tokens_per_block], blocks, first_block=first_block
                ).result()
            if turn.pin is not None:
                turn.pin.release()
            self.host.post("persisted", rid=turn.rid)
        except BaseException as e:
            self.host.post("error", message=f"store write of turn {turn.rid} failed: {e!r}")

    def _merge(self, stats: dict) -> None:
        cl = self.cluster
        for name, counter in (("links", cl.links), ("link_s", cl.link_s), ("hop_s", cl.hop_s), ("hop_n", cl.hop_n)):
            for k, v in stats[name].items():
                counter.add(k, v)
        node = cl.nodes[stats["node"]]
        node.buffer.peak = stats["dram_peak"]
        for t in (node.snic_read, node.snic_write):
            t.transfers, t.late, t.late_s = stats["nic_pace"][t.name]
        for p in stats["pes"]:
            proxy = self.pes[p["id"]]
            proxy.busy_s, proxy.layer_busy_s, proxy.batches, proxy.time_s = p["busy_s"], p["layer_busy_s"], p["batches"], p["time_s"]  # fmt: skip
        for d in stats["des"]:
            proxy = self.des[d["id"]]
            proxy.busy_s, proxy.batch_area, proxy.steps = d["busy_s"], d["batch_area"], d["steps"]

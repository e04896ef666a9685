"""A decode engine (DE) on one JAX device: one H2D of each joining request's KV (DE buffer ->
DE GPU), a continuous batch of `max_decode_batch` slots over one `KVCache`, and the turn's new KV
written back to the store through the DE node's SNIC once the request finishes.

Decode feeds the trace's tokens (see requests.py): `output` steps, the first fed token being the
one the prefill produced, so the cache ends holding KV for every prompt and generated token.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from ..model import KVCache
from . import kvcodec
from .hostcopy import start_to_host, to_numpy


class DecodeEngine:
    def __init__(self, tb, engine: int, state, step):
        self.tb, self.id = tb, engine
        self.dev = tb.cluster.device(engine)
        self.node = tb.cluster.node_of(engine)
        self.state, self.step = state, step  # model state on this device, jit_decode_step
        spec = tb.spec
        self.slots: list = [None] * spec.max_decode_batch
        self.left = np.zeros(spec.max_decode_batch, np.int64)  # decode steps left per slot
        self.lengths = np.zeros(spec.max_decode_batch, np.int32)
        with jax.default_device(self.dev):
            self.cache = KVCache.init(tb.mcfg, spec.max_decode_batch, spec.max_context)
        self.joins: queue.Queue = queue.Queue()
        self.h2d = ThreadPoolExecutor(1, thread_name_prefix=f"de{engine}-h2d")
        self.writer = ThreadPoolExecutor(2, thread_name_prefix=f"de{engine}-write")
        self.busy_s = 0.0  # time with a non-empty batch
        self.batch_area = 0.0  # integral of batch size over time
        self.steps = 0
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name=f"de{engine}", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self._stop = True
        self.joins.put(None)
        self.thread.join()
        self.h2d.shutdown()
        self.writer.shutdown()

    # ---- joining: one H2D of the request's whole KV ------------------------------------------
    def join(self, req) -> None:
        self.h2d.submit(self._guard, self._h2d, req)

    def _guard(self, fn, *a):
        try:
            fn(*a)
        except BaseException as e:
            self.tb.fail(e)

    def _h2d(self, req) -> None:
        if self.tb.system.free_io:
            kv = kvcodec.prefix(self.tb.oracle_kv[req.agent][self.id], req.input)
        else:
            buf = self.node.buffer
            host = buf.get(("kv", req.rid))
            kv = jax.device_put(host, self.dev)
            kv.block_until_ready()
            self.tb.cluster.links.add(f"de_cnic_in[{self.id}]", host.nbytes)
            buf.free(("kv", req.rid))
        req._kv = kv
        self.joins.put(req)

    # ---- the batch loop ----------------------------------------------------------------------
    def insert(self, s: int, kv) -> None:
        self.cache = self.cache.insert(np.int32(s), kv)

    def warmup(self, inputs, writes) -> None:
        """Compile the insert/extract shapes of this workload and one decode step (untimed)."""
        y, d = self.tb.mcfg.n_layers, kvcodec.kv_width(self.tb.mcfg)
        for n in sorted(inputs):  # committed, as the joins' device_put arrays are (a jit cache key)
            self.insert(0, jax.device_put(np.zeros((y, n, d), kvcodec.np_dtype(self.tb.mcfg)), self.dev))
        for n in sorted(writes):
            self.cache.extract(np.int32(0), np.int32(0), n).block_until_ready()
        cache = self.cache.with_lengths(jax.device_put(self.lengths, self.dev))
        logits, self.cache = self.step(self.state, jax.device_put(np.zeros(len(self.slots), np.int32), self.dev), cache)
        logits.block_until_ready()

    def _admit(self, req) -> None:
        s = self.slots.index(None)
        self.insert(s, req._kv)
        req._kv = None
        self.slots[s] = req
        self.lengths[s] = req.input
        self.left[s] = req.output
        req.joined = time.perf_counter()

    def _loop(self):
        try:
            self._run()
        except BaseException as e:
            self.tb.fail(e)

    def _run(self):
        while not self._stop:
            active = sum(s is not None for s in self.slots)
            block = active == 0
            while None in self.slots:
                try:
                    req = self.joins.get(block=block, timeout=None if block else 0)
                except queue.Empty:
                    break
                if req is None:
                    return
                self._admit(req)
                block = False
            active = [s for s, r in enumerate(self.slots) if r is not None]
            if not active:
                continue
            toks = np.zeros(len(self.slots), np.int32)
            for s in active:
                r = self.slots[s]
                toks[s] = r.ids[self.lengths[s]]
            cache = self.cache.with_lengths(jax.device_put(self.lengths, self.dev))
            t0 = time.perf_counter()
            logits, cache = self.step(self.state, jax.device_put(toks, self.dev), cache)
            logits.block_until_ready()
            dt = time.perf_counter() - t0
            self.cache = cache
            self.busy_s += dt
            self.batch_area += dt * len(active)
            self.steps += 1
            for s in active:
                self.lengths[s] += 1
                self.left[s] -= 1
                if self.left[s] == 0:
                    self._finish(s)

    def _finish(self, s: int) -> None:
        req = self.slots[s]
        self.slots[s] = None
        self.lengths[s] = 0
        req.finished = time.perf_counter()
        bt = self.tb.spec.tokens_per_block
        w0, w1 = req.hit // bt, (req.input + req.output) // bt
        kv = None
        if not self.tb.system.free_io and w1 > w0:
            kv = start_to_host(self.cache.extract(np.int32(s), np.int32(w0 * bt), (w1 - w0) * bt))
        self.tb.decoded(req)
        self.writer.submit(self._guard, self._write, req, kv, w0, w1)

    def _write(self, req, kv, w0: int, w1: int) -> None:
        if kv is not None:
            host = to_numpy(kv)
            self.tb.cluster.links.add(f"de_cnic_out[{self.id}]", host.nbytes)
            blocks = kvcodec.blocks_of(host, self.tb.spec.tokens_per_block)
            self.tb.store.write(
                req.ids[: w1 * self.tb.spec.tokens_per_block], blocks, first_block=w0, throttle=self.node.snic_write
            ).result()
            self.tb.cluster.links.add(f"snic_write[{self.node.id}]", blocks.nbytes)
        self.tb.persisted(req)

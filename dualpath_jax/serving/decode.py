"""A decode engine (DE) on one JAX device: each joining turn's KV onto the device (`KVSource.decode_in`:
one H2D from the DE buffer), a continuous batch of `max_decode_batch` slots over one `KVCache`, and
the turn's new KV written back once it finishes (`KVSource.decode_out` / `write_back`).

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
from .context import EngineContext


class DecodeEngine:
    def __init__(self, ctx: EngineContext, engine: int, state, step, on_decoded, on_persisted):
        self.ctx, self.id = ctx, engine
        self.dev = ctx.cluster.device(engine)
        self.state, self.step = state, step  # model state on this device, jit_decode_step
        self.on_decoded, self.on_persisted = on_decoded, on_persisted  # (turn): its last token; written back
        spec = ctx.spec
        self.slots: list = [None] * spec.max_decode_batch
        self.left = np.zeros(spec.max_decode_batch, np.int64)  # decode steps left per slot
        self.lengths = np.zeros(spec.max_decode_batch, np.int32)
        with jax.default_device(self.dev):
            # committed to the device, as every insert's result is: one jit cache key per insert
            # shape (an uncommitted first cache made the warm-up's first shape compile again)
            self.cache = jax.device_put(KVCache.init(ctx.mcfg, spec.max_decode_batch, spec.max_context), self.dev)
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
            self.ctx.fail(e)

    def _h2d(self, turn) -> None:
        turn.decode_kv = self.ctx.kv.decode_in(turn, self.id)
        self.joins.put(turn)

    # ---- the batch loop ----------------------------------------------------------------------
    def insert(self, s: int, kv) -> None:
        self.cache = self.cache.insert(np.int32(s), kv)

    def warmup(self, inputs, writes) -> None:
        """Compile the insert/extract shapes of this workload and one decode step (untimed)."""
        mcfg = self.ctx.mcfg
        y, d = mcfg.n_layers, mcfg.cache_width
        for n in sorted(inputs):  # committed, as the joins' device_put arrays are (a jit cache key)
            self.insert(0, jax.device_put(np.zeros((y, n, d), kvcodec.np_dtype(mcfg)), self.dev))
        for n in sorted(writes):
            self.cache.extract(np.int32(0), np.int32(0), n).block_until_ready()
        cache = self.cache.with_lengths(jax.device_put(self.lengths, self.dev))
        logits, self.cache = self.step(self.state, jax.device_put(np.zeros(len(self.slots), np.int32), self.dev), cache)
        logits.block_until_ready()

    def _admit(self, req) -> None:
        s = self.slots.index(None)
        self.insert(s, req.decode_kv)
        req.decode_kv = None
        self.slots[s] = req
        self.lengths[s] = req.input
        self.left[s] = req.output
        req.joined = time.perf_counter()

    def _loop(self):
        try:
            self._run()
        except BaseException as e:
            self.ctx.fail(e)

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
        turn = self.slots[s]
        self.slots[s] = None
        self.lengths[s] = 0
        turn.finished = time.perf_counter()
        kv_out = self.ctx.kv.decode_out(turn, self.cache, s)
        self.on_decoded(turn)
        self.writer.submit(self._guard, self._write, turn, kv_out)

    def _write(self, turn, kv_out) -> None:
        self.ctx.kv.write_back(turn, kv_out)
        self.on_persisted(turn)

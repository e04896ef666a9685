"""A prefill engine (PE) on one JAX device: batches its ready queue, runs layerwise (or whole)
prefill while a loader thread moves each layer's prefix KV in ahead of compute.

Overlap: a loader thread prepares layer i+1's transfer (and i+2, up to `prefetch_layers`) while
layer i computes, and the next batch's loads start while the current batch computes. A DE-path
layer's device-to-device hop is issued by this engine's thread just before it dispatches the layer
before it (loaders.py says why). As soon as a layer is done its outbound KV starts for the host
(into pinned host memory, hostcopy.py), and send threads (`send_threads`) copy it into the DE
buffers while the next layers compute; a completer thread waits for a batch's sends and hands it
on (`on_prefilled`), so the PE thread starts its next batch while the previous one's KV is still
being sent. Without layerwise prefill (Basic) every layer's prefix KV is loaded before compute
starts and all KV is sent after it ends.

GPU busy time: per layer, from the moment the layer is dispatched with its inputs ready until its
output is ready (layerwise), or from all inputs ready to the last layer done (whole prefill).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from ..model import LayerwisePrefill
from ..scheduling import pack_quota
from .context import EngineContext
from .hostcopy import start_to_host, to_numpy
from .loaders import LayerLoader

_NO_CHUNK = 1 << 60  # pack_quota's min_chunk: the testbed never splits a request


class PrefillEngine:
    def __init__(self, ctx: EngineContext, engine: int, lw: LayerwisePrefill, on_prefilled):
        self.ctx, self.id = ctx, engine
        self.on_prefilled = on_prefilled  # (turn, now): its KV is in the DE buffer, its first token out
        self.dev = ctx.cluster.device(engine)
        self.lw = lw
        self.n_layers = self.lw.n_layers
        self.queue: deque = deque()
        self.cv = threading.Condition()
        self.senders = ThreadPoolExecutor(ctx.spec.send_threads, thread_name_prefix=f"pe{engine}-send")
        self.completer = ThreadPoolExecutor(1, thread_name_prefix=f"pe{engine}-done")
        self.loader = ThreadPoolExecutor(1, thread_name_prefix=f"pe{engine}-load")
        self.hop_timer = ThreadPoolExecutor(1, thread_name_prefix=f"pe{engine}-hops")
        self.layer_busy_s = 0.0
        self.layers_run = 0
        self.batches = 0
        self.tokens_s = 0.0  # measured tokens per busy second (the quota predictor's rate)
        self.time_s = defaultdict(float)  # where this engine's thread spends its time (report.py)
        self._send_lock = threading.Lock()  # time_s["send"] is added to by every send thread
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name=f"pe{engine}", daemon=True)

    @property
    def busy_s(self) -> float:
        return self.time_s["busy"]

    def start(self):
        self.thread.start()

    def stop(self):
        with self.cv:
            self._stop = True
            self.cv.notify_all()
        self.thread.join()
        self.senders.shutdown()
        self.completer.shutdown()
        self.loader.shutdown()
        self.hop_timer.shutdown()

    def submit(self, req) -> None:
        req.queued = time.perf_counter()
        with self.cv:
            self.queue.append(req)
            self.cv.notify()

    # ---- batching ---------------------------------------------------------------------------
    def _pack(self) -> list:
        """FIFO batch of requests of the head's shape (one prefix length per batch), by the
        system's intra-engine policy: `tokens` (token budget) or `quota` (pack_quota)."""
        system, sim = self.ctx.system, self.ctx.sim
        head = self.queue[0]
        same = []
        for r in self.queue:
            if r.shape != head.shape or len(same) >= self.ctx.spec.max_prefill_batch:
                break
            same.append(r)
        if system.batching == "quota" and self.tokens_s > 0:
            rate = self.tokens_s
            take = len(
                pack_quota([(r.hit, r.new) for r in same], sim.quota_ms / 1e3, lambda c, n: (c + n) / rate, _NO_CHUNK)
            )
        else:
            take, tok = 0, 0
            for r in same:
                if take and tok + r.new > sim.prefill_batch_tokens:
                    break
                take, tok = take + 1, tok + r.new
        return [self.queue.popleft() for _ in range(max(1, take))]

    def _loop(self):
        # The next batch is packed and its loads started while the current one computes (the
        # single loader thread serves them in order), so a batch's first layers are not loaded
        # on an idle GPU. Without layerwise prefill this is how Basic overlaps one batch's
        # whole-KV load with the previous batch's compute.
        current = None
        while True:
            with self.cv:
                t0 = time.perf_counter()
                while current is None and not self.queue and not self._stop:
                    self.cv.wait()
                self.time_s["idle"] += time.perf_counter() - t0
                if self._stop:
                    return
                batch = self._pack() if self.queue else None
            try:
                started = self._start(batch) if batch else None
                if current is not None:
                    self._compute(*current)
                current = started
            except BaseException as e:  # surfaced by the testbed's main thread
                self.ctx.fail(e)
                return

    # ---- one batch ----------------------------------------------------------------------------
    def _start(self, batch: list) -> tuple:
        """Start loading `batch`'s prefix KV on the loader thread; returns what `_compute` needs."""
        ctx = self.ctx
        loader = LayerLoader(ctx, self.id, batch)
        depth = ctx.spec.prefetch_layers if ctx.system.layerwise else self.n_layers
        ready: queue.Queue = queue.Queue(maxsize=max(1, depth))

        def load_all():
            try:
                for i in range(self.n_layers):
                    ready.put(loader.load_layer(i))
            except BaseException as e:  # the PE thread re-raises it instead of waiting forever
                ready.put(e)
                raise

        return batch, loader, ready, self.loader.submit(load_all)

    def _compute(self, batch: list, loader: LayerLoader, ready: queue.Queue, loading) -> None:
        layerwise = self.ctx.system.layerwise
        hit, new = batch[0].hit, batch[0].new
        ids = np.stack([r.ids[hit : r.input] for r in batch])

        def take():
            t0 = time.perf_counter()
            item = ready.get()
            self.time_s["load"] += time.perf_counter() - t0
            if isinstance(item, BaseException):
                raise item
            return item

        def inputs(part):
            t0 = time.perf_counter()
            out = loader.inputs(part, self.hop_timer)
            self.time_s["inputs"] += time.perf_counter() - t0
            return out

        now = time.perf_counter()
        for r in batch:
            r.prefill_start = now
        x = self.lw.embed(jax.device_put(ids, self.dev))
        busy = 0.0
        sends = []
        if layerwise:
            parts = [take()]
            for i in range(self.n_layers):
                if i + 1 < self.n_layers and not ready.empty():
                    # layer i+1's DE->PE hops go out before layer i is dispatched (loaders.py)
                    parts.append(take())
                    loader.issue_hops(parts[i + 1], self.hop_timer)
                loaded, parts[i] = parts[i], None
                prefix = inputs(loaded)
                t0 = time.perf_counter()
                x, kv = self.lw.layer_kv(i, x, prefix)
                x.block_until_ready()
                busy += time.perf_counter() - t0
                sends.append(self.senders.submit(self._send, loader, i, loader.start_send(loaded, kv)))
                if len(parts) == i + 1 and i + 1 < self.n_layers:
                    parts.append(take())
            logits = self.lw.head(x)
        else:
            loaded, layers = [], []
            for _ in range(self.n_layers):
                loaded.append(take())
                layers.append(inputs(loaded[-1]))
            t0 = time.perf_counter()
            outs = []
            for i, prefix in enumerate(layers):
                x, kv = self.lw.layer_kv(i, x, prefix)
                outs.append((loaded[i], kv))
            logits = self.lw.head(x)
            logits.block_until_ready()
            busy = time.perf_counter() - t0
            sends = [self.senders.submit(self._send, loader, i, loader.start_send(*o)) for i, o in enumerate(outs)]
        loading.result()  # every layer was taken from `ready`, so the loader is done
        self.time_s["busy"] += busy
        self.layer_busy_s += busy / self.n_layers
        self.layers_run += self.n_layers
        self.batches += 1
        tok = sum(r.input for r in batch)
        rate = tok / busy if busy > 0 else 0.0
        self.tokens_s = rate if self.tokens_s == 0 else 0.8 * self.tokens_s + 0.2 * rate
        # The hand-off ends on the completer thread: it waits for this batch's layer sends and
        # calls `prefilled` (batches in order), so this thread takes its next batch at once.
        first = start_to_host(logits[:, new - 1]) if self.ctx.spec.keep_logits else None
        self.completer.submit(self._complete, batch, sends, first)

    def _send(self, loader: LayerLoader, i: int, sent) -> None:
        t0 = time.perf_counter()
        loader.send_layer(i, sent)
        with self._send_lock:
            self.time_s["send"] += time.perf_counter() - t0  # summed over the send threads

    def _complete(self, batch: list, sends: list, first) -> None:
        try:
            for f in sends:
                f.result()
            first = None if first is None else to_numpy(first)
            now = time.perf_counter()
            for b, r in enumerate(batch):
                if first is not None:
                    r.first_logits = first[b]
                self.on_prefilled(r, now)
        except BaseException as e:  # surfaced by the testbed's main thread
            self.ctx.fail(e)

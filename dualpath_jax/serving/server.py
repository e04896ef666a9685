"""The testbed's model host: the model's weights on every engine's device, its compiled prefill
and decode functions, the agents' token streams, and the untimed preparation (the agents' whole KV,
the warm-up compiles) shared by every system run on it. `run_system(system)` serves the workload
once through a `SystemRun` (system_run.py), which owns everything of that one run; a turn's life
is told once, in docs/simulator.md ("A turn's life").
"""

from __future__ import annotations

import time
from collections import Counter

import jax
import numpy as np
from flax import nnx

from ..config import ConfigError, ExperimentConfig, SystemSpec, TestbedSpec
from ..model import LayerwisePrefill, get_config, jit_decode_step, make_model_fast
from ..model.model import with_attn_impl
from ..workload.trace import Trajectory
from . import kvcodec
from .cluster import EmulatedCluster
from .context import EngineContext
from .decode import DecodeEngine
from .report import TestbedMetrics
from .requests import token_stream
from .system_run import SystemRun


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

    def __init__(self, cfg: ExperimentConfig, spec: TestbedSpec, agents: list[Trajectory], engines=None, weights=None):
        """engines: the ids of the engines this process serves (a node process, serving/mp);
        None: every engine of the cluster. weights(mcfg) -> (graphdef, state): where the model's
        weights come from (default: initialised here from testbed.seed)."""
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
        self.mcfg = with_attn_impl(model_config(spec))  # the kernel is chosen here, once
        self.kvb = kvcodec.bytes_per_token(self.mcfg)
        cluster = EmulatedCluster(cfg.cluster, spec.dram_buffer_gb)
        self.devices = cluster.devices
        mine = (lambda e: True) if engines is None else (lambda e: e in engines)
        self.pe_ids = [e for n in cluster.nodes if n.role == "prefill" for e in n.engines if mine(e)]
        self.de_ids = [e for n in cluster.nodes if n.role == "decode" for e in n.engines if mine(e)]
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
        if weights is None:
            model = make_model_fast(self.mcfg, spec.seed)
            graphdef, state = nnx.split(model)
        else:
            model = None
            graphdef, state = weights(self.mcfg)
        self.lw, self.state, self.step = {}, {}, {}
        for e in self.pe_ids + self.de_ids:
            st = jax.device_put(state, self.devices[e])
            if e in self.pe_ids:
                self.lw[e] = LayerwisePrefill(nnx.merge(graphdef, st))
            else:
                self.state[e], self.step[e] = st, jit_decode_step(graphdef)
        self._graphdef = graphdef
        self.weights = state if engines is not None else None  # a node process shares them (serving/mp)
        del model, state
        self.init_s = time.perf_counter() - t0
        self._whole_kv: list[np.ndarray] | None = None
        self.warm_s = 0.0
        self._warm = self._warm_split = False

    # ---- untimed preparation -------------------------------------------------------------------
    def whole_kv(self) -> list[np.ndarray]:
        """Each agent's KV [Y, F, M] (host) for its whole token stream, by one prefill on the
        first PE, computed once (untimed): the oracle's staged copies and the first turns' hits."""
        if self._whole_kv is None:
            lw, dev = self.prefiller()
            out = []
            for ids in self.ids:
                kv = np.stack([np.asarray(jax.device_get(k))[0] for k in lw(jax.device_put(ids[None], dev)).kv])
                out.append(kv)
            self._whole_kv = out
        return self._whole_kv

    def prefiller(self):
        """(LayerwisePrefill, device) of this host's first engine, for untimed whole prefills; a
        decode-only node process (serving/mp) prefills with its own weights."""
        e = (self.pe_ids or self.de_ids)[0]
        if e not in self.lw:
            self.lw[e] = LayerwisePrefill(nnx.merge(self._graphdef, self.state[e]))
        return self.lw[e], self.devices[e]

    def _shape_counts(self) -> Counter:
        """(hit, new) prefill shape -> how many turns of the workload have it."""
        bt = self.spec.tokens_per_block
        return Counter((t.cached // bt * bt, t.input - t.cached // bt * bt) for a in self.agents for t in a.turns)

    def warmup(self, ctx: EngineContext) -> None:
        """Compile every prefill, insert, extract and decode shape of the workload (untimed), once;
        and for a split-read system every way to split each hit in whole blocks."""
        if not self.spec.warmup:
            return
        if not self._warm:
            self._warm_serving(ctx)
        if ctx.system.split_read and not self._warm_split:
            t0 = time.perf_counter()
            self._warm_splits()
            self.warm_s += time.perf_counter() - t0

    def _warm_splits(self) -> None:
        """A split of a hit of n blocks into n - k via the PE node and k via the DE node (0 < k < n):
        the DE device stages k blocks and slices a layer of them; the PE device joins the shares."""
        bt, d, dt = self.spec.tokens_per_block, self.mcfg.cache_width, self.mcfg.dtype
        splits = {(hit - k * bt, k * bt) for hit, _ in self._shape_counts() for k in range(1, hit // bt)}
        for e in self.pe_ids:
            dev = self.devices[e]
            for first, last in sorted(splits):
                a, b = (jax.device_put(np.zeros((1, n, d), dt), dev) for n in (first, last))
                kvcodec.join_tokens(a, b).block_until_ready()
        self._warm_stage({last for _, last in splits})
        self._warm_split = True

    def _warm_stage(self, hits: set[int]) -> None:
        """The DE path's staging (blocks -> [Y, hit, D] on the DE device) and per-layer slice."""
        bt, d = self.spec.tokens_per_block, self.mcfg.cache_width
        shape = kvcodec.block_layout(self.mcfg, bt).full_block_shape
        for e in self.de_ids:
            for hit in sorted(hits):
                blocks = np.zeros((hit // bt,) + shape, np.uint8)
                st = kvcodec.stage_blocks(jax.device_put(blocks, self.devices[e]), self.mcfg.dtype, d)
                kvcodec.layer_of(st, np.int32(0)).block_until_ready()
                del st

    def _warm_serving(self, ctx: EngineContext) -> None:
        t0 = time.perf_counter()
        bt = self.spec.tokens_per_block
        counts, inputs, writes = self._shape_counts(), set(), set()
        for a in self.agents:
            for t in a.turns:
                hit = t.cached // bt * bt
                inputs.add(t.input)
                w = ((t.input + t.output) // bt - hit // bt) * bt
                if w > 0:
                    writes.add(w)
        y, d = self.mcfg.n_layers, self.mcfg.cache_width
        # a PE batches turns of one shape, up to max_prefill_batch of them: every batch size the
        # workload can form is compiled here, not inside the timed run
        batches = {(b, hit, new) for (hit, new), n in counts.items()
                   for b in range(1, min(n, self.spec.max_prefill_batch) + 1)}  # fmt: skip
        for e in self.pe_ids:
            lw, dev = self.lw[e], self.devices[e]
            for b, hit, new in sorted(batches):
                x = lw.embed(jax.device_put(np.zeros((b, new), np.int32), dev))
                prefix = jax.device_put(np.zeros((b, hit, d), self.mcfg.dtype), dev) if hit else None
                for i in range(y):
                    x, kv = lw.layer_kv(i, x, prefix)
                kv.block_until_ready()
                lw.head(x)[:, new - 1].block_until_ready()
        for e in self.de_ids:
            DecodeEngine(ctx, e, self.state[e], self.step[e], None, None).warmup(inputs, writes)
        self._warm_stage({hit for hit, _ in counts if hit})
        self.warm_s += time.perf_counter() - t0
        self._warm = True

    # ---- one system ------------------------------------------------------------------------------
    def system_run(self, system: SystemSpec) -> SystemRun:
        """A run of `system` on this host, prepared and not yet served: `with tb.system_run(s) as
        run: m = run.serve()` (the store is closed and its folder removed when the block ends)."""
        return SystemRun(self, system)

    def run_system(self, system: SystemSpec) -> TestbedMetrics:
        """Serve the whole workload once with `system`; its metrics."""
        with self.system_run(system) as run:
            return run.serve()

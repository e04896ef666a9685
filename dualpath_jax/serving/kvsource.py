"""Where a turn's KV comes from and goes to on the testbed: the store (every real system) or the
oracle's staged copies. The serving loop, the loaders and the decode side call one `KVSource`
and never ask which system they serve.

`StoredKV`, the real data path, per turn:
- at arrival, the longest stored prefix in whole Full Blocks (pinned until the turn is persisted);
- when placed, the hit blocks are read from the TensorStore store: the first ones through the PE
  node's throttled SNIC into its DRAM buffer, the last `de_hit` tokens' (the placement's
  `de_read_fraction`, in whole blocks) through the DE node's into its buffer; the DE node's
  blocks are then staged once onto the DE GPU (one H2D, reordered there to [Y, de_hit, M]) and
  copied into the DE buffer's KV. A read through one side only is the same with no blocks on the
  other; a split read is ready once both sides' reads (and the DE side's staging) are done;
- per layer into the PE: the PE node's share by H2D from its buffer, the DE node's by a
  device-to-device hop (a `Hop`, issued by the PE thread: loaders.py), joined on the PE device
  when the read was split (a `Split`);
- out of the PE: the new tokens' KV, and the hit KV the PE node read, into the DE buffer;
- into the DE: one H2D of the whole KV from the DE buffer; after decode the turn's new whole blocks
  are written back through the DE node's SNIC.

`StagedKV`, the oracle: every agent's whole KV sits on every device before timing starts, so a
turn's KV is a slice of it and nothing is read, sent or written (the same hit, in whole blocks).

Every byte is counted on its link in `cluster.links` (the names of `datapath.LINKS`, with the
engine or node in brackets).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import jax
import numpy as np

from ..config import TestbedSpec
from ..kvstore import KVStore
from ..model import ModelConfig
from . import kvcodec
from .cluster import EmulatedCluster
from .hostcopy import start_to_host, to_numpy
from .requests import TestbedTurn

Ready = Callable[[TestbedTurn], None]


class Hop(NamedTuple):
    """A DE->PE copy not yet issued: layer slice `src` on DE engine `de`'s device."""

    de: int
    src: jax.Array


class Split(NamedTuple):
    """Layer i of a split read's hit KV: the PE node's share [1, hit - de_hit, M] on the PE device
    and the DE node's [1, de_hit, M] (a `Hop` until the PE thread issues it), in token order."""

    pe: jax.Array
    de: Hop | jax.Array


class _Countdown:
    """Calls `done()` once, when `tick()` has been called `n` times (from any threads)."""

    def __init__(self, n: int, done: Callable[[], None]):
        self.n, self.done, self.lock = n, done, threading.Lock()

    def tick(self) -> None:
        with self.lock:
            self.n -= 1
            last = self.n == 0
        if last:
            self.done()


class KVSource:
    """The data-path operations a run calls; `StoredKV` and `StagedKV` implement them."""

    def lookup(self, ids: np.ndarray, turn) -> tuple[int, list[str], object]:
        """A new turn's hit: (tokens, store keys, pin to release when persisted)."""
        raise NotImplementedError

    def fetch(self, turn: TestbedTurn, ready: Ready, fail: Callable[[BaseException], None]) -> None:
        """Make the placed turn's hit KV available to its PE, then call ready(turn)."""
        raise NotImplementedError

    def layer_in(self, turn: TestbedTurn, i: int, pe: int):
        """Layer i of the turn's hit KV [1, hit, M]: on PE `pe`'s device, a `Hop` to issue, or a
        `Split` of both."""
        raise NotImplementedError

    def issue_hop(self, hop: Hop, device) -> jax.Array:
        """Start a DE->PE hop onto the PE's `device` (returns at once; the array lands later). In
        one process a device-to-device `device_put`; across processes a pull (serving/mp)."""
        return jax.device_put(hop.src, device)

    def start_send(self, batch: list, parts: list | None, new_kv):
        """A prefilled layer's outbound device-to-host copies, started (or None); `parts` are the
        batch's `layer_in` results for that layer, their hops issued."""
        return None

    def send_layer(self, batch: list, i: int, pe: int, sent) -> None:
        """Layer i's KV of `batch` into each turn's DE buffer, once `start_send`'s copies land."""

    def prefilled(self, turn: TestbedTurn) -> None:
        """The turn's prefill is done: free what held its hit KV for the PE."""

    def decode_in(self, turn: TestbedTurn, de: int) -> jax.Array:
        """The turn's whole KV [Y, input, M] on DE `de`'s device (its join)."""
        raise NotImplementedError

    def write_back(self, turn: TestbedTurn, kv_out) -> None:
        """Persist the turn's new whole blocks (kv_out from `decode_out`), then release its pin."""
        if turn.pin is not None:
            turn.pin.release()

    def decode_out(self, turn: TestbedTurn, cache, slot: int):
        """Start copying out of the DE cache what `write_back` persists (or None)."""
        return None

    def close(self) -> None:
        pass


class DecodeViaBuffer:
    """Into and out of the DE through its node's DRAM buffer: the turn's KV is taken from the
    buffer onto the DE device (its CNIC in), and the new whole blocks are copied back out
    (needs `cluster`, `links` and `bt`; shared by `StoredKV` and the multi-process `RemoteKV`)."""

    def decode_in(self, turn, de):
        buf = self.cluster.node_of(de).buffer
        host = buf.get(("kv", turn.rid))
        kv = jax.device_put(host, self.cluster.device(de))
        kv.block_until_ready()
        self.links.add(f"de_cnic_in[{de}]", host.nbytes)
        buf.free(("kv", turn.rid))
        return kv

    def _written_blocks(self, turn) -> tuple[int, int]:
        return turn.hit // self.bt, (turn.input + turn.output) // self.bt

    def decode_out(self, turn, cache, slot):
        w0, w1 = self._written_blocks(turn)
        if w1 <= w0:
            return None
        return start_to_host(cache.extract(np.int32(slot), np.int32(w0 * self.bt), (w1 - w0) * self.bt))


class StoredKV(DecodeViaBuffer, KVSource):
    def __init__(self, store: KVStore, cluster: EmulatedCluster, mcfg: ModelConfig, spec: TestbedSpec, de_ids):
        self.store, self.cluster, self.mcfg, self.spec = store, cluster, mcfg, spec
        self.bt = spec.tokens_per_block
        self.kvb = kvcodec.bytes_per_token(mcfg)
        self.links = cluster.links
        self.stagers = {e: ThreadPoolExecutor(1, thread_name_prefix=f"de{e}-stage") for e in de_ids}

    def preload(self, ids: np.ndarray, kv: np.ndarray, tokens: int) -> None:
        """Store an agent's first `tokens` (whole blocks) of KV before timing (its first turn's hit)."""
        if tokens:
            self.store.write(ids[:tokens], kvcodec.blocks_of(kv[:, :tokens], self.bt)).result()

    def lookup(self, ids, turn):
        pin = self.store.lookup(ids[: turn.input], pin=True)
        keys = pin.keys[: turn.cached // self.bt]
        return len(keys) * self.bt, keys, pin

    # ---- into the PE --------------------------------------------------------------------------
    def fetch(self, turn, ready, fail):
        cl = self.cluster
        n = len(turn.keys)
        de_blocks = round(turn.de_read_fraction * n)  # whole blocks already (the Dispatcher's read_block_tokens)
        turn.de_hit = de_blocks * self.bt
        shape = (self.mcfg.n_layers, turn.input, self.mcfg.cache_width)
        cl.node_of(turn.de).buffer.alloc(("kv", turn.rid), shape, kvcodec.np_dtype(self.mcfg))
        if turn.hit == 0:
            ready(turn)
            return
        pe_node, de_node = cl.node_of(turn.pe), cl.node_of(turn.de)
        reads = [(node, keys) for node, keys in ((pe_node, turn.keys[: n - de_blocks]), (de_node, turn.keys[n - de_blocks :])) if keys]  # fmt: skip
        # the turn is ready when every read has landed and the DE node's share is staged
        parts = _Countdown(len(reads) + (de_blocks > 0), lambda: ready(turn))
        reads_left = _Countdown(len(reads), lambda: setattr(turn, "ready", time.perf_counter()))
        for node, keys in reads:
            cl.book_read(node.id, len(keys) * self.bt * self.kvb)
            buf = node.buffer.alloc(("blocks", turn.rid), (len(keys),) + self.store.layout.full_block_shape, np.uint8)
            fut = self.store.read_blocks(keys, throttle=node.snic_read, out=buf, verify=self.spec.verify_reads)

            def read_done(f, node=node, buf=buf):
                if f.exception() is not None:
                    fail(f.exception())
                    return
                self.links.add(f"snic_read[{node.id}]", buf.nbytes)
                reads_left.tick()
                if node is de_node:
                    self.stagers[turn.de].submit(self._stage, turn, node, buf, parts.tick, fail)
                parts.tick()

            fut.add_done_callback(read_done)

    def _stage(self, turn, node, buf: np.ndarray, done: Callable[[], None], fail) -> None:
        """The DE node's share, once per turn, off the PE's threads: one H2D of its read blocks onto
        the DE device, reordered there to [Y, de_hit, M] (the loader then moves each layer as one D2D
        copy), and that KV copied into the DE buffer (where the DE's join H2D takes it from)."""
        try:
            cl = self.cluster
            t0 = time.perf_counter()
            up = jax.device_put(buf, cl.device(turn.de))
            staged = kvcodec.stage_blocks(up, self.mcfg.dtype, self.mcfg.cache_width)
            staged.block_until_ready()
            del up
            cl.links.add(f"de_h2d_stage[{turn.de}]", buf.nbytes)
            cl.link_s.add(f"de_h2d_stage[{turn.de}]", time.perf_counter() - t0)
            kvcodec.copy_hit_to_kv(node.buffer.get(("kv", turn.rid)), buf, self.mcfg, at=turn.hit - turn.de_hit)
            turn.staged = staged
            done()
        except BaseException as e:
            fail(e)

    def layer_in(self, turn, i, pe):
        pe_hit = turn.hit - turn.de_hit
        on_pe = hop = None
        if pe_hit:  # the PE node's share: one H2D from its buffer
            blocks = self.cluster.node_of(turn.pe).buffer.get(("blocks", turn.rid))
            host = kvcodec.layer_of_blocks(blocks, i, self.mcfg)[None]  # [1, pe_hit, M]
            on_pe = jax.device_put(host, self.cluster.device(pe))
            self.links.add(f"pe_cnic_in[{pe}]", host.nbytes)
        if turn.de_hit:
            # the DE node's share was staged on the DE device once per turn (_stage); this layer is
            # one contiguous slice there, copied device-to-device to the PE.
            src = kvcodec.layer_of(turn.staged, np.int32(i))
            src.block_until_ready()
            if i == self.mcfg.n_layers - 1:
                turn.staged = None  # free the DE device's copy once the last slice is cut
            hop = Hop(turn.de, src)
        if on_pe is None or hop is None:
            return hop if on_pe is None else on_pe
        return Split(on_pe, hop)

    # ---- out of the PE ------------------------------------------------------------------------
    def start_send(self, batch, parts, new_kv):
        # the hit KV the PE node read goes on to the DE buffer through the PE (the DE node's share
        # is there already, copied at staging)
        hit_out = [
            start_to_host(p.pe if isinstance(p, Split) else p) if r.hit > r.de_hit else None
            for r, p in zip(batch, parts or [None] * len(batch))
        ]
        return start_to_host(new_kv), hit_out

    def send_layer(self, batch, i, pe, sent):
        new, hit_out = to_numpy(sent[0]), sent[1]
        hit = batch[0].hit
        for b, turn in enumerate(batch):
            kv_host = self.cluster.node_of(turn.de).buffer.get(("kv", turn.rid))
            kv_host[i, hit : turn.input] = new[b, : turn.new]
            self.links.add(f"pe_cnic_out[{pe}]", new[b, : turn.new].nbytes)
            if hit_out[b] is not None:
                pre = to_numpy(hit_out[b])[0]  # [hit - de_hit, M]
                kv_host[i, : len(pre)] = pre
                self.links.add(f"pe_cnic_out[{pe}]", pre.nbytes)

    def prefilled(self, turn):
        if turn.hit:
            self.cluster.node_of(turn.pe).buffer.free(("blocks", turn.rid))
            self.cluster.node_of(turn.de).buffer.free(("blocks", turn.rid))

    def write_back(self, turn, kv_out):
        if kv_out is not None:
            w0, w1 = self._written_blocks(turn)
            node = self.cluster.node_of(turn.de)
            host = to_numpy(kv_out)
            self.links.add(f"de_cnic_out[{turn.de}]", host.nbytes)
            blocks = kvcodec.blocks_of(host, self.bt)
            self.store.write(turn.ids[: w1 * self.bt], blocks, first_block=w0, throttle=node.snic_write).result()
            self.links.add(f"snic_write[{node.id}]", blocks.nbytes)
        super().write_back(turn, kv_out)

    def close(self) -> None:
        for stager in self.stagers.values():
            stager.shutdown()


class StagedKV(KVSource):
    """The oracle: `full_kv[agent]` [Y, F, M] put on every engine's device before timing."""

    def __init__(self, full_kv: list[np.ndarray], devices: dict, tokens_per_block: int):
        self.bt = tokens_per_block
        self.kv = [{e: jax.device_put(kv, dev) for e, dev in devices.items()} for kv in full_kv]

    def warm(self, agents, pe_ids, de_ids) -> None:
        """Compile the slices of this workload's shapes (untimed)."""
        for k, a in enumerate(agents):
            for t in a.turns:
                for e in pe_ids:
                    kvcodec.layer_prefix(self.kv[k][e], 0, t.cached // self.bt * self.bt).block_until_ready()
                for e in de_ids:
                    kvcodec.prefix(self.kv[k][e], t.input).block_until_ready()

    def lookup(self, ids, turn):
        return turn.cached // self.bt * self.bt, [], None

    def fetch(self, turn, ready, fail):
        ready(turn)

    def layer_in(self, turn, i, pe):
        return kvcodec.layer_prefix(self.kv[turn.agent][pe], i, turn.hit)

    def decode_in(self, turn, de):
        return kvcodec.prefix(self.kv[turn.agent][de], turn.input)

"""A node process's side of the data path across processes (`RemoteKV`, a `KVSource`): what
`StoredKV` does in one process, with the two nodes of a turn in two processes.

Per turn (the scheduler sends each of its two nodes the turn and where its hit blocks are):
- the PE node reads its share of the hit blocks from the shared store files through its own
  emulated SNIC (`read`), as `StoredKV.fetch` does; the DE node reads its share the same way,
  stages it on its device and publishes each layer's slice for the PE to pull (`_stage`);
- per layer into the PE: its own share by H2D, the DE node's by a pull (`issue_hop`, a `Hop`
  issued by the PE thread before the layer before it, as in one process);
- out of the PE: each turn's new KV and the hit KV the PE node read are published per layer
  (`start_send`); the DE node pulls every layer as soon as the turn is announced (`expect`) and
  copies each into its DRAM buffer as it lands, so the sends overlap the PE's next layers;
- into the DE: one H2D from its buffer (`decode_in`); after decode the new whole blocks go through
  the DE node's SNIC to the scheduler, which owns the store's index and commits them (`write_back`).
Every byte is counted on its link, with the names `StoredKV` uses.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

from .. import kvcodec
from ..hostcopy import to_numpy
from ..kvsource import DecodeViaBuffer, Hop, KVSource, Split
from .transfer import transfer_id


class RemoteKV(DecodeViaBuffer, KVSource):
    def __init__(self, node, store, transport, outbox, mcfg, spec, run: int, local_des):
        self.node, self.store, self.transport, self.out = node, store, transport, outbox
        self.cluster = node.cluster
        self.mcfg, self.spec, self.run = mcfg, spec, run
        self.bt = spec.tokens_per_block
        self.links = self.cluster.links
        self.dtype = kvcodec.np_dtype(mcfg)
        self.stagers = {e: ThreadPoolExecutor(1, thread_name_prefix=f"de{e}-stage") for e in local_des}
        self.receivers = ThreadPoolExecutor(2, thread_name_prefix="de-recv")
        self._sent: dict[int, int] = {}  # rid -> layers published so far (start_send comes in layer order)
        self._lock = threading.Lock()

    def _engine_node(self, engine: int) -> int:
        return self.cluster.node_of(engine).id

    # ---- reads (both nodes) ---------------------------------------------------------------------
    def read(self, turn, records: list, side: str, fail) -> None:
        """Read this node's share of the turn's hit blocks into its buffer (its SNIC throttle)."""
        node = self.cluster.node_of(turn.pe if side == "pe" else turn.de)
        self.store.adopt(records)
        keys = [r["k"] for r in records]
        buf = node.buffer.alloc(("blocks", turn.rid), (len(keys),) + self.store.layout.full_block_shape, np.uint8)
        fut = self.store.read_blocks(keys, throttle=node.snic_read, out=buf, verify=self.spec.verify_reads)

        def done(f):
            if f.exception() is not None:
                fail(f.exception())
                return
            self.links.add(f"snic_read[{node.id}]", buf.nbytes)
            self.out.send("read", rid=turn.rid, side=side, t=time.perf_counter())
            if side == "de":
                self.stagers[turn.de].submit(self._stage, turn, node, buf, fail)

        fut.add_done_callback(done)

    def _stage(self, turn, node, buf: np.ndarray, fail) -> None:
        """The DE node's share onto its device, reordered to [Y, de_hit, M] (one H2D), copied into
        the DE buffer's KV, and each layer's slice published for the PE to pull."""
        try:
            t0 = time.perf_counter()
            up = jax.device_put(buf, self.cluster.device(turn.de))
            staged = kvcodec.stage_blocks(up, self.mcfg.dtype, self.mcfg.cache_width)
            staged.block_until_ready()
            del up
            self.links.add(f"de_h2d_stage[{turn.de}]", buf.nbytes)
            self.links_s(f"de_h2d_stage[{turn.de}]", time.perf_counter() - t0)
            kvcodec.copy_hit_to_kv(node.buffer.get(("kv", turn.rid)), buf, self.mcfg, at=turn.hit - turn.de_hit)
            for i in range(self.mcfg.n_layers):
                self.transport.publish(
                    transfer_id(self.run, turn.rid, i, "hop"), [kvcodec.layer_of(staged, np.int32(i))]
                )
            node.buffer.free(("blocks", turn.rid))
            self.out.send("staged", rid=turn.rid, t=time.perf_counter())
        except BaseException as e:
            fail(e)

    def links_s(self, link: str, seconds: float) -> None:
        self.cluster.link_s.add(link, seconds)

    # ---- into the PE ----------------------------------------------------------------------------
    def layer_in(self, turn, i, pe):
        pe_hit = turn.hit - turn.de_hit
        on_pe = hop = None
        if pe_hit:
            blocks = self.cluster.node_of(turn.pe).buffer.get(("blocks", turn.rid))
            host = kvcodec.layer_of_blocks(blocks, i, self.mcfg)[None]  # [1, pe_hit, M]
            on_pe = jax.device_put(host, self.cluster.device(pe))
            self.links.add(f"pe_cnic_in[{pe}]", host.nbytes)
        if turn.de_hit:
            hop = Hop(turn.de, (turn.rid, i))  # pulled from the DE node's server when issued
        if on_pe is None or hop is None:
            return hop if on_pe is None else on_pe
        return Split(on_pe, hop)

    def issue_hop(self, hop: Hop, device):
        rid, i = hop.src
        turn = self.node.turns[rid]
        uuid = transfer_id(self.run, rid, i, "hop")
        shape = (1, turn.de_hit, self.mcfg.cache_width)
        return self.transport.pull(self._engine_node(hop.de), uuid, [shape], self.dtype, device)[0]

    # ---- out of the PE --------------------------------------------------------------------------
    def start_send(self, batch, parts, new_kv):
        for b, (r, p) in enumerate(zip(batch, parts or [None] * len(batch))):
            arrays = [new_kv[b : b + 1]]  # [1, new, M]
            if r.hit > r.de_hit:
                arrays.append(p.pe if isinstance(p, Split) else p)  # [1, hit - de_hit, M]
            with self._lock:
                i = self._sent[r.rid] = self._sent.get(r.rid, -1) + 1
            self.transport.publish(transfer_id(self.run, r.rid, i, "out"), arrays)
            self.links.add(f"pe_cnic_out[{r.pe}]", sum(a.nbytes for a in arrays))
        return None

    def prefilled(self, turn):
        with self._lock:
            self._sent.pop(turn.rid, None)
        if turn.hit > turn.de_hit:
            self.cluster.node_of(turn.pe).buffer.free(("blocks", turn.rid))

    # ---- into and out of the DE -----------------------------------------------------------------
    def expect(self, turn, fail) -> None:
        """On the DE node when the turn is announced: its KV buffer, and every layer's pull from
        the PE node (each lands when the PE publishes it); "received" once all are in the buffer."""
        shape = (self.mcfg.n_layers, turn.input, self.mcfg.cache_width)
        self.cluster.node_of(turn.de).buffer.alloc(("kv", turn.rid), shape, self.dtype)
        m, dev = self.mcfg.cache_width, self.cluster.device(turn.de)
        shapes = [(1, turn.new, m)] + ([(1, turn.hit - turn.de_hit, m)] if turn.hit > turn.de_hit else [])
        pe_node = self._engine_node(turn.pe)
        pulls = [
            self.transport.pull(pe_node, transfer_id(self.run, turn.rid, i, "out"), shapes, self.dtype, dev)
            for i in range(self.mcfg.n_layers)
        ]
        self.receivers.submit(self._receive, turn, pulls, fail)

    def _receive(self, turn, pulls, fail) -> None:
        try:
            kv_host = self.cluster.node_of(turn.de).buffer.get(("kv", turn.rid))
            for i, arrays in enumerate(pulls):
                new = to_numpy(arrays[0])[0]
                kv_host[i, turn.hit : turn.input] = new
                if len(arrays) > 1:
                    pre = to_numpy(arrays[1])[0]
                    kv_host[i, : len(pre)] = pre
            self.out.send("received", rid=turn.rid, t=time.perf_counter())
        except BaseException as e:
            fail(e)

    def write_back(self, turn, kv_out) -> None:
        """The new whole blocks cross the DE node's SNIC (its write throttle), then go to the
        scheduler, which writes them into the store and commits them to its index."""
        w0, w1 = self._written_blocks(turn)
        blocks = None
        if kv_out is not None:
            node = self.cluster.node_of(turn.de)
            host = to_numpy(kv_out)
            self.links.add(f"de_cnic_out[{turn.de}]", host.nbytes)
            blocks = kvcodec.blocks_of(host, self.bt)
            node.snic_write.settle(node.snic_write.reserve(blocks.nbytes))
            self.links.add(f"snic_write[{node.id}]", blocks.nbytes)
        self.out.send("write", rid=turn.rid, first_block=w0, blocks=blocks, finished=turn.finished, joined=turn.joined)

    def close(self) -> None:
        for stager in self.stagers.values():
            stager.shutdown()
        self.receivers.shutdown(wait=False, cancel_futures=True)

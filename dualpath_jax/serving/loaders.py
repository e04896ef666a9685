"""Each system's data path with real transfers, one layer at a time.

Inbound (prefix KV onto the PE GPU, per layer):
- PE path: PE node DRAM buffer (Full Blocks read through the PE node's SNIC) -> H2D to the PE GPU.
- DE path: DE node DRAM buffer (read through the DE node's SNIC) -> one H2D of the request's
  whole hit KV onto the DE GPU when its read completes (server._stage, not on the PE's thread) ->
  per layer one contiguous slice there and one device-to-device copy to the PE GPU (the
  compute-network hop of the paper's RDMA write).
- Oracle: the KV is already on the PE GPU (staged before timing); nothing moves.
Outbound (into the DE node's DRAM buffer, which later feeds one H2D into the DE GPU):
- PE path: the layer's KV of all tokens (hit and new) PE GPU -> D2H -> DE buffer.
- DE path: only the new tokens' KV comes back (D2H); the hit KV is already in the DE buffer
  (copied from the read blocks into it at staging).
- Oracle: nothing (the DE takes its KV from its own staged copy).
Every byte is counted on its link in `cluster.links`.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import numpy as np

from . import kvcodec
from .hostcopy import start_to_host, to_numpy


class Hop(NamedTuple):
    """A DE->PE copy not yet issued: layer slice `src` on DE engine `de`'s device."""

    de: int
    src: jax.Array


class LayerLoader:
    """Moves one prefill batch's prefix KV onto the PE device and its KV out to the DE buffers."""

    def __init__(self, tb, pe_engine: int, batch: list, free_io: bool):
        self.tb, self.pe, self.batch, self.free_io = tb, pe_engine, batch, free_io
        self.dev = tb.cluster.device(pe_engine)
        self.cfg = tb.mcfg
        self.hit = batch[0].hit
        self.links = tb.cluster.links

    # ---- inbound --------------------------------------------------------------------------
    # A cross-device copy is ordered after the work already queued on its destination device. The
    # loader thread therefore only prepares the DE path's source (its layer slice on the DE
    # device); the PE thread issues the hop (`issue_hops`) between layers, before it dispatches
    # the layer that precedes the hop's, so the copy overlaps that layer instead of queueing
    # behind it.
    def _one(self, req, i: int):
        """One request's layer-i prefix KV [1, P, D]: on the PE device, or a `Hop` to issue."""
        if self.free_io:
            return kvcodec.layer_prefix(self.tb.oracle_kv[req.agent][self.pe], i, self.hit)
        if req.read_on_de:
            # DE path: the hit KV was staged on the DE device once per request (server._stage);
            # this layer is one contiguous slice there, copied device-to-device to the PE.
            src = kvcodec.layer_of(req.staged, np.int32(i))
            src.block_until_ready()
            if i == self.cfg.n_layers - 1:
                req.staged = None  # free the DE device's copy once the last slice is cut
            return Hop(req.de, src)
        blocks = self.tb.cluster.nodes[req.read_node].buffer.get(("blocks", req.rid))
        host = kvcodec.layer_of_blocks(blocks, i, self.cfg)[None]  # [1, P, D]
        out = jax.device_put(host, self.dev)
        self.links.add(f"pe_cnic_in[{self.pe}]", host.nbytes)
        return out

    def load_layer(self, i: int) -> list | None:
        """Layer i's parts, one per request (loader thread), or None when nothing is cached."""
        if self.hit == 0:
            return None
        return [self._one(r, i) for r in self.batch]

    def issue_hops(self, parts: list | None, timer) -> None:
        """Start the DE->PE copies among `parts` (in place); `timer` times each to its end."""
        for k, part in enumerate(parts or ()):
            if isinstance(part, Hop):
                t0 = time.perf_counter()
                parts[k] = out = jax.device_put(part.src, self.dev)
                timer.submit(self._time_hop, part, out, t0)

    def _time_hop(self, hop, out, t0: float) -> None:
        out.block_until_ready()
        dt, nbytes, cl = time.perf_counter() - t0, hop.src.nbytes, self.tb.cluster
        link = f"d2d[{hop.de}->{self.pe}]"
        self.links.add(link, nbytes)
        cl.link_s.add(link, dt)
        cl.hop_s.add(str(nbytes), dt)
        cl.hop_n.add(str(nbytes), 1)
        self.links.add(f"pe_cnic_in[{self.pe}]", nbytes)

    def inputs(self, parts: list | None, timer):
        """The batch's prefix KV [B,P,C+R] on the PE device, ready; or None."""
        if parts is None:
            return None
        self.issue_hops(parts, timer)
        kv = parts[0] if len(parts) == 1 else jax.numpy.concatenate(parts, axis=0)
        return kv.block_until_ready()

    # ---- outbound -------------------------------------------------------------------------
    def start_send(self, prefix_kv, new_kv) -> tuple:
        """On the PE thread, as soon as a layer is done: start its outbound device-to-host copies
        (the new tokens' KV; on the PE path the prefix KV too) into pinned host memory
        (hostcopy.py), so `send_layer` only waits for them and copies into the DE buffers."""
        if self.free_io:
            return None, None
        new = start_to_host(new_kv)
        pre = None
        if self.hit and any(not r.read_on_de for r in self.batch):
            pre = start_to_host(prefix_kv)
        return new, pre

    def send_layer(self, i: int, new, pre) -> None:
        """Layer i's KV [B, T, D] into each request's DE buffer (a send thread)."""
        if self.free_io:
            return
        new = to_numpy(new)
        pre = None if pre is None else to_numpy(pre)
        for b, req in enumerate(self.batch):
            kv_host = self.tb.cluster.nodes[req.de // self.tb.g].buffer.get(("kv", req.rid))
            kv_host[i, self.hit : req.input] = new[b, : req.new]
            self.links.add(f"pe_cnic_out[{self.pe}]", new[b, : req.new].nbytes)
            if self.hit and not req.read_on_de:  # PE path: the hit KV goes PE GPU -> DE buffer too
                # (DE path: the hit KV already sits in the DE buffer, copied there at staging)
                kv_host[i, : self.hit] = pre[b]
                self.links.add(f"pe_cnic_out[{self.pe}]", pre[b].nbytes)

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

import jax
import numpy as np

from . import kvcodec


class LayerLoader:
    """Moves one prefill batch's prefix KV onto the PE device and its KV out to the DE buffers."""

    def __init__(self, tb, pe_engine: int, batch: list, free_io: bool):
        self.tb, self.pe, self.batch, self.free_io = tb, pe_engine, batch, free_io
        self.dev = tb.cluster.device(pe_engine)
        self.cfg = tb.mcfg
        self.c = self.cfg.kv_lora_rank
        self.hit = batch[0].hit
        self.links = tb.cluster.links

    # ---- inbound --------------------------------------------------------------------------
    def _one(self, req, i: int):
        if self.free_io:
            return kvcodec.layer_prefix(self.tb.oracle_kv[req.agent][self.pe], i, self.hit)
        if req.read_on_de:
            # DE path: the hit KV was staged on the DE device once per request (server._stage);
            # this layer is one contiguous slice there and one device-to-device copy to the PE.
            src = kvcodec.layer_of(req.staged, np.int32(i))
            src.block_until_ready()
            t1 = time.perf_counter()
            out = jax.device_put(src, self.dev)
            out.block_until_ready()
            dt = time.perf_counter() - t1
            cl = self.tb.cluster
            self.links.add(f"d2d[{req.de}->{self.pe}]", src.nbytes)
            cl.link_s.add(f"d2d[{req.de}->{self.pe}]", dt)
            cl.hop_s.add(str(src.nbytes), dt)
            cl.hop_n.add(str(src.nbytes), 1)
            self.links.add(f"pe_cnic_in[{self.pe}]", src.nbytes)
            if i == self.cfg.n_layers - 1:
                req.staged = None  # free the DE device's copy
            return out
        blocks = self.tb.cluster.nodes[req.read_node].buffer.get(("blocks", req.rid))
        host = kvcodec.layer_of_blocks(blocks, i, self.cfg)[None]  # [1, P, D]
        out = jax.device_put(host, self.dev)
        self.links.add(f"pe_cnic_in[{self.pe}]", host.nbytes)
        return out

    def load_layer(self, i: int):
        """(prefix_latent [B,P,C], prefix_rope [B,P,R], ready time) on the PE device, or Nones."""
        if self.hit == 0:
            return None, None, time.perf_counter()
        parts = [self._one(r, i) for r in self.batch]
        kv = parts[0] if len(parts) == 1 else jax.numpy.concatenate(
            [jax.device_put(p, self.dev) for p in parts], axis=0)
        lat, rope = kvcodec.split_kv(kv, self.c)
        lat.block_until_ready()
        rope.block_until_ready()
        return lat, rope, time.perf_counter()

    # ---- outbound -------------------------------------------------------------------------
    def send_layer(self, i: int, prefix_lat, prefix_rope, new_lat, new_rope) -> None:
        if self.free_io:
            return
        new = np.asarray(jax.device_get(kvcodec.join_kv(new_lat, new_rope)))  # [B, T, D]
        pre = None
        for b, req in enumerate(self.batch):
            kv_host = self.tb.cluster.nodes[req.de // self.tb.g].buffer.get(("kv", req.rid))
            kv_host[i, self.hit:req.input] = new[b, :req.new]
            self.links.add(f"pe_cnic_out[{self.pe}]", new[b, :req.new].nbytes)
            if self.hit == 0:
                continue
            if not req.read_on_de:  # PE path: the hit KV goes PE GPU -> DE buffer too
                # (DE path: the hit KV already sits in the DE buffer, copied there at staging)
                if pre is None:
                    pre = np.asarray(jax.device_get(kvcodec.join_kv(prefix_lat, prefix_rope)))
                kv_host[i, :self.hit] = pre[b]
                self.links.add(f"pe_cnic_out[{self.pe}]", pre[b].nbytes)

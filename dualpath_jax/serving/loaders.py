"""One prefill batch's KV, one layer at a time: into the PE device before the layer computes, out
to the DE buffers after it. What moves, and over which link, is the run's `KVSource`
(kvsource.py: the store's PE and DE paths, or the oracle's staged copies); this file orders it.

A split read's layer comes as a `Split`: the PE node's share already on the PE device and the DE
node's as a hop; `inputs` joins them on the PE device once the hop is issued.

A cross-device copy is ordered after the work already queued on its destination device. The loader
thread therefore only prepares the DE path's source (its layer slice on the DE device, a `Hop`);
the PE thread issues the hop (`issue_hops`) between layers, before it dispatches the layer that
precedes the hop's, so the copy overlaps that layer instead of queueing behind it.
"""

from __future__ import annotations

import time

import jax

from . import kvcodec
from .context import EngineContext
from .kvsource import Hop, Split


class LayerLoader:
    """Moves one prefill batch's prefix KV onto the PE device and its KV out to the DE buffers."""

    def __init__(self, ctx: EngineContext, pe_engine: int, batch: list):
        self.ctx, self.pe, self.batch = ctx, pe_engine, batch
        self.dev = ctx.cluster.device(pe_engine)
        self.hit = batch[0].hit

    # ---- inbound --------------------------------------------------------------------------
    def load_layer(self, i: int) -> list | None:
        """Layer i's parts, one per turn (loader thread), or None when nothing is cached."""
        if self.hit == 0:
            return None
        return [self.ctx.kv.layer_in(r, i, self.pe) for r in self.batch]

    def issue_hops(self, parts: list | None, timer) -> None:
        """Start the DE->PE copies among `parts` (in place); `timer` times each to its end."""
        for k, part in enumerate(parts or ()):
            if isinstance(part, Hop):
                parts[k] = self._issue(part, timer)
            elif isinstance(part, Split) and isinstance(part.de, Hop):
                parts[k] = Split(part.pe, self._issue(part.de, timer))

    def _issue(self, hop: Hop, timer) -> jax.Array:
        t0 = time.perf_counter()
        out = self.ctx.kv.issue_hop(hop, self.dev)
        timer.submit(self._time_hop, hop, out, t0)
        return out

    def _time_hop(self, hop, out, t0: float) -> None:
        out.block_until_ready()
        dt, nbytes, cl = time.perf_counter() - t0, out.nbytes, self.ctx.cluster
        link = f"d2d[{hop.de}->{self.pe}]"
        cl.links.add(link, nbytes)
        cl.link_s.add(link, dt)
        cl.hop_s.add(str(nbytes), dt)
        cl.hop_n.add(str(nbytes), 1)
        cl.links.add(f"pe_cnic_in[{self.pe}]", nbytes)

    def inputs(self, parts: list | None, timer):
        """The batch's prefix KV [B,P,M] on the PE device, ready; or None."""
        if parts is None:
            return None
        self.issue_hops(parts, timer)
        whole = [kvcodec.join_tokens(p.pe, p.de) if isinstance(p, Split) else p for p in parts]
        kv = whole[0] if len(whole) == 1 else jax.numpy.concatenate(whole, axis=0)
        return kv.block_until_ready()

    # ---- outbound -------------------------------------------------------------------------
    def start_send(self, parts: list | None, new_kv):
        """On the PE thread, as soon as a layer is done: start its outbound device-to-host copies
        into pinned host memory (hostcopy.py), so `send_layer` only waits for them. `parts`: the
        layer's inbound parts (after `inputs`), whose PE-node shares go on to the DE buffers."""
        return self.ctx.kv.start_send(self.batch, parts, new_kv)

    def send_layer(self, i: int, sent) -> None:
        """Layer i's KV into each turn's DE buffer (a send thread)."""
        if sent is not None:
            self.ctx.kv.send_layer(self.batch, i, self.pe, sent)

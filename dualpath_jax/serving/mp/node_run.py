"""One system's run on a node process: its engines (the single-process `PrefillEngine` and
`DecodeEngine`, unchanged), the KV source (`RemoteKV`, or the oracle's `StagedKV` on this node's
devices), and the callbacks that turn the engines' hand-offs into records for the scheduler."""

from __future__ import annotations

import time

from ...config import SystemSpec, from_dict
from ...kvstore import KVStore
from ...workload.trace import Turn
from ..cluster import EmulatedCluster
from ..context import EngineContext
from ..decode import DecodeEngine
from ..kvsource import StagedKV
from ..prefill import PrefillEngine
from ..requests import TestbedTurn
from .remote_kv import RemoteKV


class NodeRun:
    def __init__(self, node, index: int, system: dict, store: str):
        tb, spec = node.tb, node.tb.spec
        self.node, self.tb, self.out = node, tb, node.out
        self.system = system = from_dict(SystemSpec, system)
        self.cluster = cl = EmulatedCluster(tb.cfg.cluster, spec.dram_buffer_gb, devices=tb.devices)
        self.turns = node.turns
        self.turns.clear()
        local = tb.pe_ids + tb.de_ids
        self.store = None
        if system.free_io:
            self.kv = StagedKV(tb.whole_kv(), {e: tb.devices[e] for e in local}, spec.tokens_per_block)
        else:
            self.store = KVStore.open(store, read_only=True, io_window=spec.io_window)
            self.kv = RemoteKV(self, self.store, node.transport, node.out, tb.mcfg, spec, index, tb.de_ids)
        self.ctx = EngineContext(tb.mcfg, spec, system, tb.cfg.sim, cl, self.kv, node.fail)
        tb.warmup(self.ctx)
        if system.free_io:
            self.kv.warm(tb.agents, tb.pe_ids, tb.de_ids)
        self.pes = {e: PrefillEngine(self.ctx, e, tb.lw[e], self._prefilled) for e in tb.pe_ids}
        self.des = {
            e: DecodeEngine(self.ctx, e, tb.state[e], tb.step[e], self._decoded, self._persisted) for e in tb.de_ids
        }

    def start(self) -> None:
        for eng in (*self.pes.values(), *self.des.values()):
            eng.start()

    # ---- records from the scheduler --------------------------------------------------------------
    def turn(self, rec: dict) -> None:
        """A placed turn: this node is its PE node, its DE node, or (never) both."""
        tb = self.tb
        agent, index = rec["agent"], rec["index"]
        trace_turn: Turn = tb.agents[agent].turns[index]
        t = TestbedTurn(rec["rid"], agent, index, trace_turn, tb.ids[agent], rec["hit"], [], None, tb.kvb, rec["arrive"])  # fmt: skip
        t.pe, t.de, t.de_hit, t.de_read_fraction = rec["pe"], rec["de"], rec["de_hit"], rec["de_read_fraction"]
        self.turns[t.rid] = t
        if self.system.free_io:
            return
        if t.de in self.des:
            self.kv.expect(t, self.node.fail)
            if rec["de_blocks"]:
                self.kv.read(t, rec["de_blocks"], "de", self.node.fail)
        if t.pe in self.pes and rec["pe_blocks"]:
            self.kv.read(t, rec["pe_blocks"], "pe", self.node.fail)

    def prefill(self, rid: int) -> None:
        self.pes[self.turns[rid].pe].submit(self.turns[rid])

    def join(self, rid: int) -> None:
        self.des[self.turns[rid].de].join(self.turns[rid])

    # ---- the engines' hand-offs -> records ---------------------------------------------------
    def _prefilled(self, turn, now: float) -> None:
        self.kv.prefilled(turn)
        self.out.send("prefilled", rid=turn.rid, queued=turn.queued, prefill_start=turn.prefill_start, t=now,
                      logits=turn.first_logits)  # fmt: skip
        if turn.de not in self.des:
            self.turns.pop(turn.rid, None)

    def _decoded(self, turn) -> None:
        self.out.send("decoded", rid=turn.rid, joined=turn.joined, finished=turn.finished)

    def _persisted(self, turn) -> None:
        if self.system.free_io:  # the oracle writes nothing; the scheduler still marks it persisted
            self.out.send("write", rid=turn.rid, first_block=0, blocks=None)
        self.turns.pop(turn.rid, None)

    # ---- the end ---------------------------------------------------------------------------------
    def stop(self) -> dict:
        for eng in (*self.pes.values(), *self.des.values()):
            eng.stop()
        self.kv.close()
        if self.store is not None:
            self.store.close()
        cl, me = self.cluster, self.cluster.nodes[self.node.id]
        return {
            "links": dict(cl.links.bytes),
            "link_s": dict(cl.link_s.bytes),
            "hop_s": dict(cl.hop_s.bytes),
            "hop_n": dict(cl.hop_n.bytes),
            "dram_peak": me.buffer.peak,
            "nic_pace": {t.name: [t.transfers, t.late, t.late_s] for t in (me.snic_read, me.snic_write)},
            "pes": [
                {
                    "id": p.id,
                    "busy_s": p.busy_s,
                    "layer_busy_s": p.layer_busy_s,
                    "batches": p.batches,
                    "time_s": dict(p.time_s),
                }
                for p in self.pes.values()
            ],  # fmt: skip
            "des": [
                {"id": d.id, "busy_s": d.busy_s, "batch_area": d.batch_area, "steps": d.steps}
                for d in self.des.values()
            ],
            "stopped": time.perf_counter(),
        }

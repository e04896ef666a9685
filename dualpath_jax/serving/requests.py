"""Turns in flight on the testbed and the token streams they replay.

Each agent replays one trajectory. Its token ids are one seeded stream: turn k's prompt is the
first `input` ids and the `output` generated ids are the next ones (trace replay: decode feeds the
trace's tokens rather than its own argmax, so every system computes the same sequences and the
oracle can stage its KV ahead). Only whole Full Blocks are stored, so a turn's usable cached
prefix is `cached` rounded down to whole blocks; the rest of the prompt is recomputed.
"""

from __future__ import annotations

import numpy as np

from ..scheduling.dispatch import Turn
from ..workload.trace import Trajectory


def token_stream(traj: Trajectory, agent: int, vocab: int, seed: int) -> np.ndarray:
    final = max(t.input + t.output for t in traj.turns)
    rng = np.random.default_rng([seed, agent])
    return rng.integers(0, vocab, size=final, dtype=np.int32)


class TestbedTurn(Turn):
    """A turn on the testbed: the shared record (`scheduling.dispatch.Turn`: what the policy reads,
    its placement, byte plan and stage times) plus its token ids, its store hit and the wall-clock
    stages only the testbed has: arrive -> placed -> ready (hit KV read) -> queued (in the PE's
    queue; after staging on the DE path) -> prefill_start -> first_token -> joined -> finished ->
    persisted (its new KV written back)."""

    __slots__ = ("rid", "ids", "keys", "pin", "de_hit", "staged", "decode_kv", "queued", "prefill_start",
                 "persisted", "first_logits")  # fmt: skip
    __test__ = False

    def __init__(self, rid: int, agent: int, index: int, turn, ids: np.ndarray, hit: int, keys, pin, kvb: float,
                 arrive: float):  # fmt: skip
        super().__init__(agent, index, turn.input, hit, turn.output, kvb, arrive)
        self.rid, self.ids = rid, ids
        self.keys, self.pin = keys, pin  # store keys of the hit blocks; the PrefixHit holding them
        self.de_hit = 0  # hit tokens read through the DE node's SNIC (the last ones); the rest via the PE's
        self.staged = None  # DE path: the hit KV [Y, hit, M] staged on the DE device
        self.decode_kv = None  # the whole KV on the DE device, between its H2D and the batch
        self.queued = self.prefill_start = self.persisted = -1.0
        self.first_logits = None  # [vocab] float32 when TestbedSpec.keep_logits

    @property
    def shape(self) -> tuple[int, int]:
        return (self.hit, self.new)

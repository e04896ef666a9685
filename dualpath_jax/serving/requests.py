"""Turns in flight on the testbed and the token streams they replay.

Each agent replays one trajectory. Its token ids are one seeded stream: turn k's prompt is the
first `input` ids and the `output` generated ids are the next ones (trace replay: decode feeds the
trace's tokens rather than its own argmax, so every system computes the same sequences and the
oracle can stage its KV ahead). Only whole Full Blocks are stored, so a turn's usable cached
prefix is `cached` rounded down to whole blocks; the rest of the prompt is recomputed.
"""

from __future__ import annotations

import numpy as np

from ..workload.trace import Trajectory


def token_stream(traj: Trajectory, agent: int, vocab: int, seed: int) -> np.ndarray:
    final = max(t.input + t.output for t in traj.turns)
    rng = np.random.default_rng([seed, agent])
    return rng.integers(0, vocab, size=final, dtype=np.int32)


class TurnRequest:
    """One turn of one agent; also the scheduler's RequestView (same attribute names)."""

    def __init__(
        self,
        rid: int,
        agent: int,
        index: int,
        turn,
        ids: np.ndarray,
        hit: int,
        keys: list[str],
        kvb: float,
        arrive: float,
    ):
        self.rid, self.agent, self.index = rid, agent, index
        self.ids = ids
        self.input, self.cached, self.output = turn.input, turn.cached, turn.output
        self.hit = hit  # cached tokens actually loaded (whole blocks)
        self.new = self.input - hit
        self.keys = keys  # store keys of the hit blocks
        # RequestView
        self.tokens = self.input + self.output
        self.hit_tokens = hit
        self.kv_bytes = self.tokens * kvb
        self.hit_bytes = hit * kvb
        # placement and path
        self.pe = self.de = -1
        self.read_on_de = False
        self.read_node = -1
        self.pin = None  # PrefixHit holding the blocks
        self.staged = None  # DE path: the hit KV [Y, hit, D] staged on the DE device
        # timing (perf_counter seconds): arrive -> placed -> read done -> in the PE queue ->
        # prefill starts -> first token -> joins the decode batch -> last token -> persisted
        self.arrive = arrive
        self.placed = self.read_done = self.queued = self.prefill_start = -1.0
        self.first_token = self.joined = self.finished = self.persisted = -1.0
        self.first_logits = None  # [vocab] float32 when TestbedSpec.keep_logits

    @property
    def shape(self) -> tuple[int, int]:
        return (self.hit, self.new)

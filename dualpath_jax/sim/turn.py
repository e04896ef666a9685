"""The simulator's turn: the shared `Turn` record plus what only virtual time needs."""

from __future__ import annotations

from ..scheduling.dispatch import Turn


class SimTurn(Turn):
    __slots__ = ("decode_keys", "done", "started", "staged")

    def __init__(self, agent: int, index: int, turn, arrive: float, kvb: float, decode_keys: int):
        super().__init__(agent, index, turn.input, turn.cached, turn.output, kvb, arrive)
        self.decode_keys = decode_keys  # keys a decode step of this turn attends (the cost model's)
        self.done = 0  # new tokens prefilled so far (chunked prefill)
        self.started = -1.0  # when its first prefill chunk began
        self.staged = ()  # (node, bytes) its read holds in DRAM buffers (sim/buffer.py)

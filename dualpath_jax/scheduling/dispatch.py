"""The turn record and the dispatcher: the one place a placement takes effect, in both worlds.

The simulator (virtual time) and the testbed (wall clock) keep their turns in a `Dispatcher`: a
turn is enqueued when it arrives, `schedule()` asks the system's scheduler for placements and, for
each, applies it (the engines' loads, the read side, the turn's byte plan) and hands the turn to the
world's `on_placed` before the next placement is computed, so every choice sees the ones before it.
`prefill_done` and `decode_done` release the loads. Where the worlds differ it is an argument:

- the `SchedContext` each world builds: its `beta_tokens` (the PE overload threshold) is
  `sim.beta_s` x one GPU's prefill rate in the simulator and none (`math.inf`) on the testbed;
- `read_block_tokens`: a split read's DE share is rounded to whole KV blocks of this many tokens
  (the testbed's store reads whole Full Blocks; 0, the simulator: the share as the policy says);
- `read_side`: force every read to "pe" or "de" (testbed diagnostics).

Same-time ordering: every arrival and every completion that frees capacity runs one scheduling
pass at once, in the order the events run (the event loop runs ties in the order they were
scheduled). A turn's life is told once, in docs/simulator.md ("A turn's life").
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from ..datapath import TurnPlan, plan_turn
from .state import GroupLoad, Placement, RankedGroups, SchedContext


class Turn:
    """One turn of one agent in flight: what the policy reads (`RequestView`'s names), where it was
    placed, its byte plan, and when each stage happened (in its world's seconds; -1: not yet)."""

    __slots__ = ("agent", "index", "input", "hit", "new", "output", "tokens", "hit_tokens", "kv_bytes",
                 "hit_bytes", "pe", "de", "de_read_fraction", "plan", "arrive", "waits_hbm", "placed",
                 "ready", "first_token", "joined", "second_token", "finished")  # fmt: skip

    def __init__(self, agent: int, index: int, input: int, hit: int, output: int, kv_bytes_per_token: float,
                 arrive: float):  # fmt: skip
        self.agent, self.index, self.arrive = agent, index, arrive
        self.input, self.hit, self.output = input, hit, output
        self.new = input - hit  # prompt tokens the prefill computes
        self.tokens = input + output  # what the turn holds on its DE
        self.hit_tokens = hit
        self.kv_bytes = self.tokens * kv_bytes_per_token
        self.hit_bytes = hit * kv_bytes_per_token
        self.pe = self.de = -1
        self.de_read_fraction = 0.0
        self.plan: TurnPlan | None = None
        # arrive -> (waits for DE HBM from waits_hbm) -> placed -> ready (its hit KV read) -> first
        # token (prefill done) -> joined (its DE's batch) -> second token -> finished (last token)
        self.waits_hbm = self.placed = self.ready = self.first_token = self.joined = -1.0
        self.second_token = self.finished = -1.0

    @property
    def read_on_de(self) -> bool:
        return self.de_read_fraction >= 0.5


def whole_blocks(de_read_fraction: float, blocks: int) -> float:
    """The DE share rounded to a whole number of the hit's `blocks`: the nearest, a tie to the PE
    node (as `readside.shorter_queue` breaks ties)."""
    if blocks <= 0:
        return 0.0
    return math.ceil(de_read_fraction * blocks - 0.5) / blocks


class Dispatcher:
    def __init__(
        self,
        scheduler,
        pe_groups: list[GroupLoad],
        de_groups: list[GroupLoad],
        ctx: SchedContext,
        *,
        kv_bytes_per_token: float,
        free_io: bool,
        on_placed: Callable[[Turn], None],
        clock: Callable[[], float],
        read_block_tokens: int = 0,
        read_side: str = "",
    ):
        self.scheduler, self.de_groups, self.ctx = scheduler, de_groups, ctx
        self.pe_groups = RankedGroups(pe_groups)  # the PE choice asks for the least-loaded group
        self.kvb, self.free_io, self.on_placed, self.clock = kv_bytes_per_token, free_io, on_placed, clock
        self.read_block_tokens, self.read_side = read_block_tokens, read_side
        self.loads = {e.id: e for g in pe_groups + de_groups for e in g.engines}
        self.group_of = {e.id: g for g in pe_groups + de_groups for e in g.engines}
        self.waiting: deque[Turn] = deque()

    def enqueue(self, turn: Turn) -> None:
        self.waiting.append(turn)

    def schedule(self) -> int:
        """One scheduling pass over the waiting turns (FIFO); returns how many were placed."""
        waiting = self.waiting
        if not waiting:
            return 0
        placed = 0
        for p in self.scheduler.place(waiting, self.pe_groups, self.de_groups, self.ctx):
            self._apply(waiting[placed], p)
            placed += 1
        for _ in range(placed):
            waiting.popleft()
        return placed

    def _apply(self, turn: Turn, p: Placement) -> None:
        turn.pe, turn.de, turn.placed = p.pe, p.de, self.clock()
        if self.read_side:
            turn.de_read_fraction = float(self.read_side == "de")
        elif self.read_block_tokens:
            turn.de_read_fraction = whole_blocks(p.de_read_fraction, turn.hit // self.read_block_tokens)
        else:
            turn.de_read_fraction = p.de_read_fraction
        self.group_of[p.de].add(self.loads[p.de], turn.tokens, turn.kv_bytes)
        self.group_of[p.pe].add(self.loads[p.pe], turn.input)
        self.on_placed(turn)

    def plan(self, turn: Turn, tier_hit_bytes: float = 0.0) -> TurnPlan:
        """The turn's bytes on every link (`datapath.plan_turn`), kept on the turn."""
        turn.plan = plan_turn(
            cached=turn.hit,
            new=turn.new,
            output=turn.output,
            kv_bytes_per_token=self.kvb,
            de_read_fraction=turn.de_read_fraction,
            free_io=self.free_io,
            tier_hit_bytes=tier_hit_bytes,
        )
        return turn.plan

    def prefill_done(self, turn: Turn) -> None:
        self.group_of[turn.pe].add(self.loads[turn.pe], -turn.input, requests=-1)

    def decode_done(self, turn: Turn) -> None:
        self.group_of[turn.de].add(self.loads[turn.de], -turn.tokens, -turn.kv_bytes, requests=-1)

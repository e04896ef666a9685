"""Multi-turn chat over the KV store: each turn loads its longest stored prefix, prefills the rest,
generates, and saves the conversation's whole blocks for the next turn.

A turn's sequence is every earlier turn's prompt and reply, then a newline and its own prompt
(plain text, no chat template). Its KV for the reply's last token is never computed (that token was sampled, not
fed), so a turn stores the whole blocks of everything before it.
"""

from __future__ import annotations

import dataclasses
import time

import jax

from .engine import Generator
from .params import SamplingParams
from .prefix_store import PrefixStore
from .stops import StopText
from .tokenizer import Tokenizer

TURN_SEPARATOR = "\n"


@dataclasses.dataclass
class TurnResult:
    """One turn: hit_tokens read from the store, new_tokens prefilled, the reply, what was stored.

    first_logits [N]: the logits the reply's first token was chosen from (a full recompute of the
    turn's sequence gives the same)."""

    turn: int
    hit_tokens: int
    new_tokens: int
    reply_tokens: list[int]
    text: str
    finish: str
    stored_blocks: int
    first_logits: jax.Array
    seconds: float


class ChatSession:
    """Turns of one conversation; `history` holds its token ids so far."""

    def __init__(
        self,
        generator: Generator,
        tokenizer: Tokenizer,
        store: PrefixStore,
        params: SamplingParams,
        *,
        stop_ids=(),
        stop_text: StopText | None = None,
    ):
        self.generator, self.tokenizer, self.store, self.params = generator, tokenizer, store, params
        self.stop_ids, self.stop_text = tuple(stop_ids), stop_text
        self.history: list[int] = []
        self.turns = 0

    def turn(self, text: str) -> TurnResult:
        start = time.perf_counter()
        first = not self.history
        sequence = self.history + self.tokenizer.encode(text if first else TURN_SEPARATOR + text, first=first)
        loaded = self.store.load(sequence)
        rest = sequence[loaded.hit_tokens :]
        key = jax.random.fold_in(jax.random.key(self.params.seed), self.turns)  # a fresh draw per turn
        stop_when = None if self.stop_text is None else (lambda b, tokens: self.stop_text.reached(tokens))
        out = self.generator.generate(
            [rest], self.params, stop_ids=self.stop_ids, stop_when=stop_when, prefix_kv=loaded.kv, key=key
        )
        reply = out.generations[0]
        known = len(sequence) + len(reply.tokens) - 1  # KV computed: the sequence and every fed reply token
        self.history = sequence + reply.tokens
        stored = self.store.save(
            self.history, out.cache, known, first_block=loaded.hit_tokens // self.store.tokens_per_block
        )
        self.turns += 1
        text_out = self.stop_text.cut(reply.tokens) if self.stop_text else self.tokenizer.decode(reply.tokens)
        return TurnResult(
            self.turns, loaded.hit_tokens, len(rest), reply.tokens, text_out, reply.finish, stored,
            out.first_logits[0], time.perf_counter() - start,
        )  # fmt: skip

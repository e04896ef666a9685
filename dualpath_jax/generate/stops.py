"""Stop text: generation ends once the decoded reply contains one of the given strings, and the
reply is cut before it (the OpenAI-style `stop`; stop token ids are the engine's `stop_ids`)."""

from __future__ import annotations

from .tokenizer import Tokenizer


class StopText:
    def __init__(self, tokenizer: Tokenizer, strings):
        self.tokenizer = tokenizer
        self.strings = tuple(s for s in strings if s)
        # a stop string spans at most this many tokens (a token is at least one byte of text), so
        # each step decodes only the reply's tail
        self.tail = 4 * max((len(s.encode()) for s in self.strings), default=0) + 8

    def reached(self, tokens) -> bool:
        text = self.tokenizer.decode(tokens[-self.tail :])
        return any(s in text for s in self.strings)

    def cut(self, tokens) -> str:
        """The reply's text up to the first stop string (all of it when none occurs)."""
        text = self.tokenizer.decode(tokens)
        ends = [text.find(s) for s in self.strings if s in text]
        return text[: min(ends)] if ends else text

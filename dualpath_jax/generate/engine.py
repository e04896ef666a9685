"""Generation on a loaded model: one jitted prefill, then jitted batched decode-and-sample steps.

Axis letters as in docs/model.md: B requests, T new tokens, P cached prefix tokens, L cache slots,
Y layers, M = C+R the cached entry, N vocabulary.

Shapes are bucketed so that a run compiles a handful of programs, never one per token or per
prompt: prompts are right-padded to a power of two (at least MIN_PROMPT_BUCKET tokens; causal
attention and a no-drop MoE make the padding invisible to the real tokens), and the decode cache
has one length for the whole call (the power of two that holds prompt + max_new_tokens) or, given
`cache_len`, for every call.
A cached prefix (chat turns loading from the KV store) adds one prefill program per prefix length,
which is a whole number of store blocks.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..model import KVCache, Transformer, decode_step, prefill
from .params import SamplingParams
from .sampling import sample_next

MIN_PROMPT_BUCKET = 16


def bucket(n: int, floor: int = MIN_PROMPT_BUCKET) -> int:
    """The power of two >= max(n, floor)."""
    return 1 << (max(n, floor) - 1).bit_length()


@dataclasses.dataclass
class Generation:
    """One request's output: tokens generated (a stop token, when one ended it, is the last) and
    why it ended ("stop": a stop token or stop text; "length": max_new_tokens)."""

    tokens: list[int]
    finish: str


@dataclasses.dataclass
class GenerateResult:
    """generations, one per prompt; first_logits [B,N] float32: the prefill's logits at each
    prompt's last token (the first generated token was chosen from them); cache: the decode cache
    after the last step, holding the KV of prefix + prompt + every generated token but the last."""

    generations: list[Generation]
    first_logits: jax.Array
    cache: KVCache


def _prefill_and_sample(graphdef, state, tokens, lengths, prefix_kv, key, temperature, top_p, max_len: int):
    """tokens [B,T] right-padded, lengths [B] real tokens, prefix_kv [Y,B,P,M] or None ->
    (first token [B], the logits it was chosen from [B,N], a KVCache [B,max_len,M] per layer
    holding prefix + tokens). Only the last real tokens' logits are computed: `prefill`'s full
    [B,T,N] logits are unused and XLA drops them."""
    model = nnx.merge(graphdef, state)
    out = prefill(model, tokens, prefix_kv)
    logits = model.logits(out.hidden[jnp.arange(tokens.shape[0]), lengths - 1])
    kv = out.kv if prefix_kv is None else tuple(jnp.concatenate([p, k], axis=1) for p, k in zip(prefix_kv, out.kv))
    # the padding's KV past max_len is never attended to: cut it, so the cache need not hold the pad
    kv = tuple(jnp.pad(k[:, :max_len], ((0, 0), (0, max(0, max_len - k.shape[1])), (0, 0))) for k in kv)
    prefix_len = 0 if prefix_kv is None else prefix_kv[0].shape[1]
    cache = KVCache(kv=kv, lengths=lengths + prefix_len)
    return sample_next(logits, key, temperature, top_p), logits, cache


def _decode_and_sample(graphdef, state, tokens, cache, key, temperature, top_p):
    """Feed tokens [B] (written at cache.lengths) and choose the next ones: (next [B], cache)."""
    logits, cache = decode_step(nnx.merge(graphdef, state), tokens, cache)
    return sample_next(logits, key, temperature, top_p), cache


class Generator:
    """A loaded model's prefill and decode, jitted once over (graphdef, state).

    max_positions: the checkpoint's max_position_embeddings; a request needing more is refused
    (ValueError). cache_len: one decode cache length for every call (a chat session sizes it for
    all its turns, so every turn runs one compiled decode step); None: the power of two each call
    needs. compiler_options: passed to jax.jit (the tests lower XLA's CPU optimisation level to
    halve compile times).
    """

    def __init__(
        self,
        model: Transformer,
        *,
        max_positions: int | None = None,
        cache_len: int | None = None,
        compiler_options: dict | None = None,
    ):
        self.cfg = model.cfg
        self.max_positions, self.fixed_cache_len = max_positions, cache_len
        graphdef, self.state = nnx.split(model)
        jit = partial(jax.jit, compiler_options=compiler_options)
        self._prefill = jit(partial(_prefill_and_sample, graphdef), static_argnums=(7,))
        self._step = jit(partial(_decode_and_sample, graphdef), donate_argnums=(1,))

    def cache_len(self, prefix_len: int, longest: int, max_new_tokens: int) -> int:
        """Decode cache slots for one call: the prefix, the prompt and every token decoded."""
        total = prefix_len + longest + max_new_tokens  # positions used; the last token is never written
        if self.max_positions is not None and total > self.max_positions:
            raise ValueError(
                f"max_new_tokens: {prefix_len + longest} prompt tokens + {max_new_tokens} new tokens is more than "
                f"the checkpoint's max_position_embeddings {self.max_positions}"
            )
        needed = total - 1
        if self.fixed_cache_len is not None:
            if needed > self.fixed_cache_len:
                raise ValueError(f"cache_len: {needed} slots needed, more than the fixed {self.fixed_cache_len}")
            return self.fixed_cache_len
        length = bucket(needed)
        return length if self.max_positions is None else min(length, self.max_positions)

    def generate(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        *,
        stop_ids=(),
        stop_when=None,
        prefix_kv=None,
        key=None,
    ) -> GenerateResult:
        """Continue each prompt (token ids) with up to params.max_new_tokens tokens.

        stop_ids: ids that end a request (kept as its last token); stop_when(b, tokens) -> bool: a
        further test (stop text) run after each token. prefix_kv [Y,B,P,M]: KV of tokens cached
        before every prompt (all prompts share one prefix length P). key: jax.random key (default:
        params.seed); the token at step i is drawn with fold_in(key, i).
        """
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("prompt: every prompt needs at least one token")
        vocab = self.cfg.vocab_size
        if any(t < 0 or t >= vocab for p in prompts for t in p):
            raise ValueError(f"prompt: token ids must be in [0, {vocab})")
        batch, longest = len(prompts), max(len(p) for p in prompts)
        prefix_len = 0 if prefix_kv is None else int(prefix_kv.shape[2])  # shape only: no device op
        width = bucket(longest)
        max_len = self.cache_len(prefix_len, longest, params.max_new_tokens)
        tokens = np.zeros((batch, width), np.int32)
        for b, p in enumerate(prompts):
            tokens[b, : len(p)] = p
        lengths = np.array([len(p) for p in prompts], np.int32)
        key = jax.random.key(params.seed) if key is None else key
        temperature, top_p = np.float32(params.temperature), np.float32(params.top_p)
        next_tokens, first_logits, cache = self._prefill(
            self.state, tokens, lengths, prefix_kv, jax.random.fold_in(key, 0), temperature, top_p, max_len
        )
        stop_ids = frozenset(int(i) for i in stop_ids)
        out = [Generation([], "length") for _ in prompts]
        running = set(range(batch))
        for step in range(params.max_new_tokens):
            for b, t in enumerate(np.asarray(next_tokens).tolist()):
                if b not in running:
                    continue
                out[b].tokens.append(t)
                if t in stop_ids or (stop_when is not None and stop_when(b, out[b].tokens)):
                    out[b].finish = "stop"
                    running.discard(b)
            if not running or step == params.max_new_tokens - 1:
                break
            # requests already stopped ride along (one batch, one program); their outputs are dropped
            next_tokens, cache = self._step(
                self.state, next_tokens, cache, jax.random.fold_in(key, step + 1), temperature, top_p
            )
        return GenerateResult(out, first_logits, cache)

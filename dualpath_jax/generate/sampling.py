"""Choosing the next token from logits: greedy, or temperature plus top-p (nucleus) sampling.

Axis letters as in docs/model.md: B requests, N vocabulary. temperature and top_p are traced
scalars, so one compiled step serves every setting; temperature 0 is greedy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_next(logits, key, temperature, top_p):
    """logits [B,N] float32 -> token ids [B] int32.

    temperature 0: argmax. Otherwise softmax(logits / temperature) restricted to the nucleus: the
    most likely tokens, in order, while the mass before each is < top_p (the top token always
    kept; tokens tied with the last kept one are kept too), then one draw per request from `key`.
    """
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits / jnp.maximum(temperature, 1e-6)
    probs = jax.nn.softmax(scaled, axis=-1)
    sorted_probs = -jnp.sort(-probs, axis=-1)  # descending
    mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    n_kept = jnp.maximum(jnp.sum(mass_before < top_p, axis=-1, keepdims=True), 1)
    threshold = jnp.take_along_axis(sorted_probs, n_kept - 1, axis=-1)
    nucleus = jnp.where(probs >= threshold, scaled, -jnp.inf)
    drawn = jax.random.categorical(key, nucleus, axis=-1).astype(jnp.int32)
    return jnp.where(temperature == 0, greedy, drawn)

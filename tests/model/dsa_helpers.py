"""Shared pieces of the DSA tests: tiny DSA modules with NumPy-drawn weights and jitted calls into
them (float32, CPU).

Weights come from NumPy into an abstract module (nnx.eval_shape), not from the modules' own
initialisers: each jax.random draw of a new shape is its own XLA compile (1-2 s each on the 2-core
VM), which made building one tiny layer take 10-20 s. Calls run under jit for the same reason
(op-by-op dispatch compiles every op on its own)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dualpath_jax.model import abstract_model, get_config
from dualpath_jax.model.sparse import DSAttention


def fill_numpy(module, seed: int, std: float):
    """module (abstract or not) with every parameter drawn from NumPy: N(0, std) for weights, norm
    scales 1 + N(0, 0.1) and biases N(0, 0.1) (so the norms' parameters matter)."""
    graphdef, state = nnx.split(module)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(path[-2] if path and str(path[-1]) == "value" else path[-1])
        noise = rng.standard_normal(leaf.shape)
        if "weight" in name and len(leaf.shape) == 1:
            value = 1.0 + 0.1 * noise
        elif "bias" in name:
            value = 0.1 * noise
        else:
            value = std * noise
        return jnp.asarray(value, leaf.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(draw, state))


@functools.cache
def tiny_dsa_layer(seed: int = 0, **overrides) -> DSAttention:
    """One DSA attention layer of the tiny_dsa shape (XLA kernel: the model builders choose it).
    Cached: tests must not modify it."""
    cfg = get_config("tiny_dsa", attn_impl="xla", **overrides)
    return fill_numpy(nnx.eval_shape(lambda: DSAttention(cfg, rngs=nnx.Rngs(0))), seed, cfg.init_std)


def tiny_dsa_model(seed: int = 0, **overrides):
    """The tiny_dsa Transformer with NumPy-drawn weights."""
    cfg = get_config("tiny_dsa", **overrides)
    return fill_numpy(abstract_model(cfg), seed, cfg.init_std)


def hidden(layer: DSAttention, batch: int, tokens: int, seed: int = 1):
    """Hidden states [batch, tokens, D] ~ N(0, 1), the scale of the layer's normed input."""
    x = np.random.default_rng(seed).standard_normal((batch, tokens, layer.cfg.d_model))
    return jnp.asarray(x, layer.cfg.jdtype)


project_entry = nnx.jit(lambda layer, x, pos: layer.project_entry(x, pos))
select = nnx.jit(lambda layer, x, pos, entries, visible: layer.select(x, pos, entries, visible))
decode = nnx.jit(lambda layer, x, cache, pos: layer.decode(x, cache, pos))

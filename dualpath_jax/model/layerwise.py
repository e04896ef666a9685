"""Layerwise prefill for a serving testbed: run one layer at a time so each layer's cached
prefix KV can be fed as it arrives from storage (and only that layer's KV needs to be in HBM).

Axis letters: B batch, T new tokens, P cached prefix tokens, D d_model, C kv latent, R rope dims.

Each layer's function takes that layer's weights as an argument, so all MoE layers share one
compiled executable (and all dense layers another) per input shape.
"""
from __future__ import annotations

import jax
from flax import nnx

from .model import Transformer


class LayerwisePrefill:
  """fns over a model:
    x = lw.embed(tokens)                                   # [B,T] -> [B,T,D]
    x, latent, rope = lw.layer(i, x, prefix_latent, prefix_rope)
                                                           # prefix [B,P,C], [B,P,R] or None
    logits = lw.head(x)                                    # [B,T,N] float32
  """

  def __init__(self, model: Transformer):
    self.cfg = model.cfg
    self.n_layers = len(model.layers)
    self._layers = [nnx.split(layer) for layer in model.layers]
    self._embed_w = model.embed[...]
    self._norm_def, self._norm_state = nnx.split(model.final_norm)
    self._head_w = model.lm_head[...]
    self._layer_fns: dict = {}

    @jax.jit
    def _embed(embed_w, tokens):
      return embed_w[tokens]

    @jax.jit
    def _head(norm_state, head_w, x):
      norm = nnx.merge(self._norm_def, norm_state)
      return jax.numpy.einsum("...d,dn->...n", norm(x), head_w,
                              preferred_element_type=jax.numpy.float32)

    self._embed, self._head = _embed, _head

  def _layer_fn(self, graphdef):
    fn = self._layer_fns.get(graphdef)
    if fn is None:
      @jax.jit
      def fn(state, x, prefix_latent, prefix_rope):
        return nnx.merge(graphdef, state).prefill(x, prefix_latent, prefix_rope)
      self._layer_fns[graphdef] = fn
    return fn

  def embed(self, tokens):
    return self._embed(self._embed_w, tokens)

  def layer(self, i: int, x, prefix_latent=None, prefix_rope=None):
    graphdef, state = self._layers[i]
    return self._layer_fn(graphdef)(state, x, prefix_latent, prefix_rope)

  def head(self, x):
    return self._head(self._norm_state, self._head_w, x)

  def __call__(self, tokens, prefix_latent=None, prefix_rope=None):
    """Whole prefill, one layer at a time; prefix_* are per-layer sequences (or None)."""
    x = self.embed(tokens)
    lat, rop = [], []
    for i in range(self.n_layers):
      pl = None if prefix_latent is None else prefix_latent[i]
      pr = None if prefix_rope is None else prefix_rope[i]
      x, l_i, r_i = self.layer(i, x, pl, pr)
      lat.append(l_i)
      rop.append(r_i)
    return self.head(x), lat, rop

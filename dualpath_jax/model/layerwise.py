"""Layerwise prefill for a serving testbed: run one layer at a time so each layer's cached
prefix KV can be fed as it arrives from storage (and only that layer's KV needs to be in HBM).

Axis letters: docs/model.md "Axis letters" (B batch, T new tokens, P cached prefix tokens,
D d_model, N vocabulary, M = C+R the joined cache entry: the KV store's and the testbed's layout).

Each layer's function takes that layer's weights as an argument, so all MoE layers share one
compiled executable (and all dense layers another) per input shape.
"""

from __future__ import annotations

import jax
from flax import nnx

from .model import PrefillOutput, Transformer, head_logits


class LayerwisePrefill:
    """fns over a model:
    x = lw.embed(tokens)                       # [B,T] -> [B,T,D]
    x, kv = lw.layer_kv(i, x, prefix_kv)       # prefix_kv [B,P,M] or None -> the new tokens' kv [B,T,M]
    logits = lw.head(x)                        # [B,T,N] float32
    """

    def __init__(self, model: Transformer):
        self.cfg = model.cfg  # cfg.attn_impl: the prefill attention kernel the model was built with
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
            return head_logits(nnx.merge(self._norm_def, norm_state), head_w, x)

        self._embed, self._head = _embed, _head

    def _layer_fn(self, graphdef):
        fn = self._layer_fns.get(graphdef)
        if fn is None:

            @jax.jit
            def fn(state, x, prefix_kv):
                return nnx.merge(graphdef, state).prefill(x, prefix_kv)

            self._layer_fns[graphdef] = fn
        return fn

    @property
    def n_layer_fns(self) -> int:
        """Distinct layer functions made so far: one per layer structure (dense, MoE)."""
        return len(self._layer_fns)

    def embed(self, tokens):
        return self._embed(self._embed_w, tokens)

    def layer_kv(self, i: int, x, prefix_kv=None):
        """Layer i: x [B,T,D], prefix_kv [B,P,M] or None -> (x, the new tokens' kv [B,T,M])."""
        graphdef, state = self._layers[i]
        return self._layer_fn(graphdef)(state, x, prefix_kv)

    def head(self, x):
        return self._head(self._norm_state, self._head_w, x)

    def __call__(self, tokens, prefix_kv=None) -> PrefillOutput:
        """Whole prefill, one layer at a time; prefix_kv indexed by layer ([B,P,M] each) or None."""
        x = self.embed(tokens)
        kv = []
        for i in range(self.n_layers):
            x, kv_i = self.layer_kv(i, x, None if prefix_kv is None else prefix_kv[i])
            kv.append(kv_i)
        return PrefillOutput(self.head(x), tuple(kv), x)

"""Layerwise prefill for a serving testbed: run one layer at a time so each layer's cached
prefix KV can be fed as it arrives from storage (and only that layer's KV needs to be in HBM).

Axis letters: B batch, T new tokens, P cached prefix tokens, D d_model, C kv latent, R rope dims;
joined KV is [..., C+R] (latent then rope, the KV store's and the serving testbed's layout).

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
    x, kv = lw.layer_kv(i, x, prefix_kv)                   # the same on joined KV [B,*,C+R]
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
        self._layer_kv_fns: dict = {}

        @jax.jit
        def _embed(embed_w, tokens):
            return embed_w[tokens]

        @jax.jit
        def _head(norm_state, head_w, x):
            norm = nnx.merge(self._norm_def, norm_state)
            return jax.numpy.einsum("...d,dn->...n", norm(x), head_w, preferred_element_type=jax.numpy.float32)

        self._embed, self._head = _embed, _head

    def _layer_fn(self, graphdef):
        fn = self._layer_fns.get(graphdef)
        if fn is None:

            @jax.jit
            def fn(state, x, prefix_latent, prefix_rope):
                return nnx.merge(graphdef, state).prefill(x, prefix_latent, prefix_rope)

            self._layer_fns[graphdef] = fn
        return fn

    def _layer_kv_fn(self, graphdef):
        fn = self._layer_kv_fns.get(graphdef)
        if fn is None:
            c = self.cfg.kv_lora_rank

            # The split and join sit inside the jit: a serving loop hands over and takes back one array
            # per layer, with no separate slicing or concatenation dispatched between layers.
            @jax.jit
            def fn(state, x, prefix_kv):
                pl = pr = None
                if prefix_kv is not None:
                    pl, pr = prefix_kv[..., :c], prefix_kv[..., c:]
                x, latent, rope = nnx.merge(graphdef, state).prefill(x, pl, pr)
                return x, jax.numpy.concatenate([latent, rope.astype(latent.dtype)], axis=-1)

            self._layer_kv_fns[graphdef] = fn
        return fn

    def embed(self, tokens):
        return self._embed(self._embed_w, tokens)

    def layer(self, i: int, x, prefix_latent=None, prefix_rope=None):
        graphdef, state = self._layers[i]
        return self._layer_fn(graphdef)(state, x, prefix_latent, prefix_rope)

    def layer_kv(self, i: int, x, prefix_kv=None):
        """Layer i on joined KV: prefix_kv [B,P,C+R] or None -> (x, the new tokens' KV [B,T,C+R])."""
        graphdef, state = self._layers[i]
        return self._layer_kv_fn(graphdef)(state, x, prefix_kv)

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

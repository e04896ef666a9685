"""Hugging Face DeepSeek-V2/V3/V3.2 tensors -> the NNX model, one layer at a time onto devices.

Name mapping (HF Linear weights are [out, in]; ours are [in, out] with heads split out):
  model.embed_tokens.weight [N,D]                 -> embed [N,D]
  lm_head.weight [N,D]                            -> lm_head [D,N]
  model.norm.weight                               -> final_norm
  layers.i.input_layernorm / post_attention_layernorm -> attn_norm / ffn_norm
  self_attn.q_a_proj [Q,D], q_a_layernorm, q_b_proj [H*A,Q] -> attn.wq_a [D,Q], q_norm, wq_b [Q,H,A]
  self_attn.q_proj [H*A,D] (no q_lora)            -> attn.wq [D,H,A]
  self_attn.kv_a_proj_with_mqa [C+R,D], kv_a_layernorm -> attn.wkv_a [D,C+R], kv_norm
  self_attn.kv_b_proj [H*(K+V),C]                 -> attn.wkv_b [C,H,K+V]
  self_attn.o_proj [D,H*V]                        -> attn.wo [H,V,D]
  self_attn.indexer.wq_b [J*I,Q], wk [I,D], k_norm (weight, bias), weights_proj [J,D] (V3.2)
                                                  -> attn.indexer.wq_b [Q,J,I], wk [D,I], k_norm, weights_proj [D,J]
  mlp.{gate,up,down}_proj (dense layers)          -> ffn.w_gate/w_up [D,F], w_down [F,D]
  mlp.gate.weight [E,D], gate.e_score_correction_bias (V3) -> ffn.w_router [D,E], e_bias [E]
  mlp.experts.e.{gate,up,down}_proj               -> ffn.w_gate/w_up [E,D,F], w_down [E,F,D]
  mlp.shared_experts.{gate,up,down}_proj          -> ffn.shared.*
Layers >= num_hidden_layers (DeepSeek's MTP layer) are skipped; any other tensor left unused is
an error, so a mapping hole cannot pass silently.

RoPE pairing: DeepSeek-V2/V3 (V3 with rope_interleave) rotate dim pairs (2i, 2i+1); the model's
apply_rope rotates (i, i+R/2). Permuting the rope output columns of q_b_proj (or q_proj) and of
kv_a_proj_with_mqa to [0, 2, 4, ..., 1, 3, 5, ...] at load time makes the two the same function:
a permutation of a linear map's outputs is exact, it costs nothing at run time, and the model
keeps one rope kernel and one cache layout (the cached k_rope is stored de-interleaved, as
transformers' V3 also computes it). V3.2's indexer rotates its first R dims in (i, i+R/2) pairs
already (model/indexer.py), so its weights load unpermuted.

Placement: without a mesh every array goes to the default device. With a mesh, routed experts
are sharded over its "ep" axis (each device reads only its experts from the files) and all else
is replicated. Host memory holds one tensor (one device's experts) at a time.
"""

from __future__ import annotations

import logging

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..model import Transformer, abstract_model
from . import fp8
from .config import CheckpointError, HFConfig
from .files import CheckpointFiles

log = logging.getLogger(__name__)
EP_AXIS = "ep"


def rope_pair_permutation(rope_dim: int) -> np.ndarray:
    """Column order that turns (2i, 2i+1) rope pairs into the model's (i, i + R/2) pairs."""
    return np.concatenate([np.arange(0, rope_dim, 2), np.arange(1, rope_dim, 2)])


class _Reader:
    """float32 tensors by HF name (FP8 ones dequantized), remembering which were used."""

    def __init__(self, files: CheckpointFiles, hf: HFConfig):
        self.files, self.hf, self.used = files, hf, set()

    def get(self, name: str) -> np.ndarray:
        arr = self.files.get(name)
        self.used.add(name)
        scale_name = name + "_scale_inv"
        if scale_name in self.files:
            if self.hf.fp8_block is None:
                raise CheckpointError(f"{self.files.path(scale_name)}: tensor {scale_name!r} but config.json has no "
                                      "quantization_config")  # fmt: skip
            self.used.add(scale_name)
            try:
                return fp8.dequantize(arr, self.files.get(scale_name), self.hf.fp8_block)
            except ValueError as e:
                raise CheckpointError(f"{self.files.path(name)}: tensor {name!r}: {e}") from None
        if arr.dtype.itemsize == 1 and arr.dtype.kind not in "iub":
            raise CheckpointError(f"{self.files.path(name)}: tensor {name!r} is FP8 without {scale_name!r}")
        return np.asarray(arr, np.float32)


def _put(param, make, sharding, name: str):
    """Set an abstract param from `make(index) -> np.ndarray` (index: the device's slice)."""
    want = param.get_value()
    if sharding is None:
        arr = make(None)
        if arr.shape != want.shape:
            raise CheckpointError(f"tensor {name!r}: shape {arr.shape} does not fit the config's {want.shape}")
        param.set_value(jax.device_put(arr.astype(want.dtype)))
        return

    def cb(index):
        arr = make(index)
        return arr.astype(want.dtype)

    param.set_value(jax.make_array_from_callback(want.shape, sharding, cb))


def _dense(reader: _Reader, name: str, transform=lambda w: w):
    cache = {}

    def make(index):
        if "w" not in cache:
            cache["w"] = np.ascontiguousarray(transform(reader.get(name)))
        w = cache["w"]
        return w if index is None else w[index]

    return make


def _experts(reader: _Reader, prefix: str, proj: str, n_experts: int):
    """Stacked transposed expert weights; only the experts of the requested slice are read."""

    def make(index):
        sl = slice(None) if index is None else index[0]
        ids = range(n_experts)[sl]
        w = np.stack([reader.get(f"{prefix}.experts.{e}.{proj}.weight").T for e in ids])
        return w if index is None else w[(slice(None),) + tuple(index[1:])]

    return make


def load_checkpoint(
    directory,
    *,
    dtype: str = "bfloat16",
    mesh: Mesh | None = None,
    **overrides,
) -> Transformer:
    """The checkpoint in `directory` as a Transformer, weights in `dtype`. overrides replace
    ModelConfig fields that do not change the weights (moe_backend, attn_impl)."""
    from .config import read_config

    hf = read_config(directory, dtype=dtype)
    bad = sorted(set(overrides) - {"moe_backend", "attn_impl"})
    if bad:
        raise ValueError(f"load_checkpoint: {bad[0]!r} cannot be overridden (it is read from config.json)")
    cfg = hf.model.replace(**overrides) if overrides else hf.model
    if mesh is not None and EP_AXIS not in mesh.axis_names:
        raise ValueError(f"load_checkpoint: the mesh has no {EP_AXIS!r} axis (axes {mesh.axis_names})")
    if mesh is not None and cfg.n_routed_experts % mesh.shape[EP_AXIS]:
        raise ValueError(f"load_checkpoint: {cfg.n_routed_experts} experts do not split over {EP_AXIS}="
                         f"{mesh.shape[EP_AXIS]} devices")  # fmt: skip
    files = CheckpointFiles(directory)
    reader = _Reader(files, hf)
    replicated = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    by_expert = None if mesh is None else NamedSharding(mesh, PartitionSpec(EP_AXIS))
    model = abstract_model(cfg)

    def put(param, name, transform=lambda w: w):
        _put(param, _dense(reader, name, transform), replicated, name)

    put(model.embed, "model.embed_tokens.weight")
    put(model.lm_head, "lm_head.weight", lambda w: w.T)
    put(model.final_norm.weight, "model.norm.weight")
    perm = rope_pair_permutation(cfg.qk_rope_dim) if hf.rope_interleaved else None
    h, k, c = cfg.n_heads, cfg.qk_nope_dim, cfg.kv_lora_rank

    def q_heads(w):  # [H*A, X] -> [X, H, A], rope columns re-paired
        w = w.T.reshape(w.shape[1], h, cfg.qk_head_dim)
        return w if perm is None else np.concatenate([w[..., :k], w[..., k:][..., perm]], axis=-1)

    def kv_a(w):  # [C+R, D] -> [D, C+R], rope columns re-paired
        w = w.T
        return w if perm is None else np.concatenate([w[:, :c], w[:, c:][:, perm]], axis=-1)

    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}"
        put(layer.attn_norm.weight, f"{p}.input_layernorm.weight")
        put(layer.ffn_norm.weight, f"{p}.post_attention_layernorm.weight")
        a, ap = layer.attn, f"{p}.self_attn"
        if cfg.q_lora_rank:
            put(a.wq_a, f"{ap}.q_a_proj.weight", lambda w: w.T)
            put(a.q_norm.weight, f"{ap}.q_a_layernorm.weight")
            put(a.wq_b, f"{ap}.q_b_proj.weight", q_heads)
        else:
            put(a.wq, f"{ap}.q_proj.weight", q_heads)
        put(a.wkv_a, f"{ap}.kv_a_proj_with_mqa.weight", kv_a)
        put(a.kv_norm.weight, f"{ap}.kv_a_layernorm.weight")
        put(a.wkv_b, f"{ap}.kv_b_proj.weight", lambda w: w.T.reshape(c, h, -1))
        put(a.wo, f"{ap}.o_proj.weight", lambda w: w.T.reshape(h, cfg.v_head_dim, -1))
        if cfg.is_dsa:
            ix, ixp = a.indexer, f"{ap}.indexer"
            put(ix.wq_b, f"{ixp}.wq_b.weight", lambda w: w.T.reshape(w.shape[1], cfg.index_n_heads, -1))
            put(ix.wk, f"{ixp}.wk.weight", lambda w: w.T)
            put(ix.k_norm.weight, f"{ixp}.k_norm.weight")
            put(ix.k_norm.bias, f"{ixp}.k_norm.bias")
            put(ix.weights_proj, f"{ixp}.weights_proj.weight", lambda w: w.T)
        f, mp = layer.ffn, f"{p}.mlp"
        if not layer.is_moe:
            for proj in ("gate", "up", "down"):
                put(getattr(f, f"w_{proj}"), f"{mp}.{proj}_proj.weight", lambda w: w.T)
            continue
        put(f.w_router, f"{mp}.gate.weight", lambda w: w.T)
        if f"{mp}.gate.e_score_correction_bias" in files:
            put(f.e_bias, f"{mp}.gate.e_score_correction_bias")
        elif cfg.router_method == "noaux_tc":
            raise CheckpointError(f"{directory}: tensor '{mp}.gate.e_score_correction_bias' is missing")
        else:  # V2 routers have no selection bias; the model's stays zero (and unused)
            _put(f.e_bias, lambda index: np.zeros((cfg.n_routed_experts,), np.float32), replicated, "e_bias")
        for proj in ("gate", "up", "down"):
            _put(getattr(f, f"w_{proj}"), _experts(reader, mp, f"{proj}_proj", cfg.n_routed_experts), by_expert,
                 f"{mp}.experts.*.{proj}_proj.weight")  # fmt: skip
            if f.shared is not None:
                put(getattr(f.shared, f"w_{proj}"), f"{mp}.shared_experts.{proj}_proj.weight", lambda w: w.T)

    mtp = [n for n in files.names() if n.startswith("model.layers.") and int(n.split(".")[2]) >= cfg.n_layers]
    if mtp:
        log.info("%s: %d tensors of layers >= %d (MTP) not loaded", directory, len(mtp), cfg.n_layers)
    unused = sorted(set(files.names()) - reader.used - set(mtp))
    if unused:
        raise CheckpointError(f"{directory}: {len(unused)} tensor(s) not used by the model, e.g. {unused[:3]}")
    return model

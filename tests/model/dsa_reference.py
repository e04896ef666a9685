"""A NumPy (float64) transcription of DeepSeek-V3.2's lightning indexer, written from DeepSeek's
published inference code and transformers' DeepseekV32Indexer (bf16 path: no Hadamard rotation,
no FP8): the reference the DSA tests check the JAX indexer against."""

import numpy as np


def _layer_norm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def _rope_first(x, pos, r, theta):
    """Rotate dims (i, i + r/2) of x[..., :r] by pos * theta^(-2i/r); the rest passes."""
    ang = pos[:, None] * theta ** (-np.arange(0, r, 2) / r)  # [T, r/2]
    if x.ndim == 3:  # per-head [T, J, I]: one angle per token
        ang = ang[:, None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    a, b = x[..., : r // 2], x[..., r // 2 : r]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin, x[..., r:]], -1)


def _f64(a):
    return np.asarray(a, np.float64)


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * weight


def reference_index_keys(layer, x, pos):
    """x [T, D], pos [T] -> the indexer's keys [T, I]: LayerNorm(x W_k), first R dims rotated."""
    cfg, ix = layer.cfg, layer.indexer
    k = _layer_norm(x @ _f64(ix.wk[...]), _f64(ix.k_norm.weight[...]), _f64(ix.k_norm.bias[...]))
    return _rope_first(k, pos, cfg.qk_rope_dim, cfg.rope_theta)


def reference_scores(layer, x, pos):
    """x [T, D] (one request), pos [T] -> index scores [T, T] (query, key) in float64, unmasked."""
    cfg, ix = layer.cfg, layer.indexer
    f = _f64
    q_lat = rms_norm(x @ f(layer.wq_a[...]), f(layer.q_norm.weight[...]), cfg.rms_eps)
    q = _rope_first(np.einsum("tq,qji->tji", q_lat, f(ix.wq_b[...])), pos, cfg.qk_rope_dim, cfg.rope_theta)
    k = reference_index_keys(layer, x, pos)
    w = x @ f(ix.weights_proj[...]) * cfg.index_n_heads**-0.5
    logits = np.maximum(np.einsum("tji,si->tjs", q, k) * cfg.index_head_dim**-0.5, 0.0)
    return np.einsum("tj,tjs->ts", w, logits)

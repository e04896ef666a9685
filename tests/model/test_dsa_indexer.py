"""The lightning indexer against a NumPy transcription of DeepSeek-V3.2's indexer (bf16 path, no
Hadamard rotation or FP8: docs/model.md "DeepSeek Sparse Attention"): its scores, its top-k sets
(near-ties allowed) and its causal mask."""

import numpy as np
from flax import nnx

from dualpath_jax.model.indexer import index_scores

from .dsa_helpers import decode, hidden, project_entry, select, tiny_dsa_layer

TIE_TOL = 1e-4  # scores this close to the k-th best may fall either side of the cut


@nnx.jit
def scores(layer, x, pos, entries):
    """The index scores [B,T,L] from the layer's own pieces, keys as cached in the entries."""
    q = layer.indexer.queries(layer.q_latent(x), pos)
    return index_scores(q, layer.indexer.head_weights(x), entries[..., layer.cfg.kv_width :])


def _rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def _layer_norm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * w + b


def _rope_first(x, pos, r, theta):
    """Rotate dims (i, i + r/2) of x[..., :r] by pos * theta^(-2i/r); the rest passes."""
    freq = theta ** (-np.arange(0, r, 2) / r)
    ang = pos[:, None] * freq  # [T, r/2]
    if x.ndim == 3:  # per-head [T, J, I]: one angle per token
        ang = ang[:, None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    a, b = x[..., : r // 2], x[..., r // 2 : r]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin, x[..., r:]], -1)


def reference_scores(layer, x, pos):
    """x [T, D] (one request), pos [T] -> index scores [T, T] (query, key) in float64, unmasked."""
    cfg, ix = layer.cfg, layer.indexer
    f = lambda a: np.asarray(a, np.float64)  # noqa: E731
    q_lat = _rms(x @ f(layer.wq_a[...]), f(layer.q_norm.weight[...]), cfg.rms_eps)
    q = np.einsum("tq,qji->tji", q_lat, f(ix.wq_b[...]))
    q = _rope_first(q, pos, cfg.qk_rope_dim, cfg.rope_theta)
    k = _layer_norm(x @ f(ix.wk[...]), f(ix.k_norm.weight[...]), f(ix.k_norm.bias[...]))
    k = _rope_first(k, pos, cfg.qk_rope_dim, cfg.rope_theta)
    w = x @ f(ix.weights_proj[...]) * cfg.index_n_heads**-0.5
    logits = np.maximum(np.einsum("tji,si->tjs", q, k) * cfg.index_head_dim**-0.5, 0.0)
    return np.einsum("tj,tjs->ts", w, logits)


def _check_topk(idx, selected, scores, visible, z):
    """idx/selected [Z] for one query against reference scores [L] and visible [L]."""
    n_vis = int(visible.sum())
    chosen = set(np.asarray(idx)[np.asarray(selected)].tolist())
    assert len(chosen) == min(z, n_vis)
    assert all(visible[i] for i in chosen), "selected a key the query may not see"
    if n_vis <= z:
        assert chosen == set(np.flatnonzero(visible).tolist())
        return
    vis_scores = np.where(visible, scores, -np.inf)
    kth = np.sort(vis_scores)[::-1][z - 1]
    must = set(np.flatnonzero(vis_scores > kth + TIE_TOL).tolist())
    never = set(np.flatnonzero(vis_scores < kth - TIE_TOL).tolist())
    assert must <= chosen, sorted(must - chosen)
    assert not (chosen & never), sorted(chosen & never)


def test_index_scores_and_topk_match_the_numpy_reference():
    layer = tiny_dsa_layer()
    t = 24
    x = hidden(layer, 2, t)
    pos = np.broadcast_to(np.arange(t, dtype=np.int32), (2, t))
    entries = project_entry(layer, x, pos)
    visible = np.broadcast_to(np.tril(np.ones((t, t), bool)), (2, t, t))
    idx, selected = select(layer, x, pos, entries, visible)
    z = layer.cfg.index_topk
    assert idx.shape == (2, t, z) and selected.shape == (2, t, z)
    got = np.asarray(scores(layer, x, pos, entries))  # through the module's pieces, keys as cached
    idx, selected = np.asarray(idx), np.asarray(selected)
    for b in range(2):
        ref = reference_scores(layer, np.asarray(x[b], np.float64), np.arange(t))
        np.testing.assert_allclose(got[b], ref, rtol=1e-4, atol=1e-5)
        for i in range(t):
            _check_topk(idx[b, i], selected[b, i], ref[i], np.arange(t) <= i, z)


def test_no_future_token_is_ever_selected():
    """Keys past a query's position are poisoned to score far above every other key; over a cached
    prefix (prefill) and in decode, no query picks one, and each sees min(Z, pos + 1) keys."""
    layer = tiny_dsa_layer()
    cfg = layer.cfg
    p, t = 10, 14
    x = hidden(layer, 2, p + t, seed=3)
    pos = np.broadcast_to(np.arange(p + t, dtype=np.int32), (2, p + t))
    poisoned = np.array(project_entry(layer, x, pos))
    poisoned[..., cfg.kv_width :] *= 1e3  # relu(q.k) becomes huge for some heads
    qpos = pos[:, p:]
    visible = np.arange(p + t)[None, None, :] <= qpos[..., None]
    idx, selected = map(np.asarray, select(layer, x[:, p:], qpos, poisoned, visible))
    for b in range(2):
        for i in range(t):
            chosen = idx[b, i][selected[b, i]]
            assert chosen.size == min(cfg.index_topk, p + i + 1)
            assert chosen.max() <= p + i
    # Decode: unwritten cache slots hold large keys too; decode writes the step's entry first.
    slots = 32
    cache = np.full((2, slots, cfg.cache_width), 50.0, np.float32)
    cache[:, : p + t] = poisoned
    lengths = np.array([5, p + t - 1], np.int32)
    step = hidden(layer, 2, 1, seed=4)[:, 0]
    _, after = decode(layer, step, cache, lengths)
    visible = np.arange(slots)[None, None, :] <= lengths[:, None, None]
    idx, selected = map(np.asarray, select(layer, step[:, None], lengths[:, None], after, visible))
    for b in range(2):
        chosen = idx[b, 0][selected[b, 0]]
        assert chosen.size == min(cfg.index_topk, int(lengths[b]) + 1)
        assert chosen.max() <= int(lengths[b])

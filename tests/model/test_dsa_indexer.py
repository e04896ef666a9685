"""The lightning indexer against a NumPy transcription of DeepSeek-V3.2's indexer (bf16 path, no
Hadamard rotation or FP8: docs/model.md "DeepSeek Sparse Attention"): its scores, its top-k sets
(near-ties allowed) and its causal mask, in prefill (with and without a cached prefix) and decode."""

import numpy as np

from .dsa_helpers import SLOTS, B, P, T, cached_run, hidden, run_decode, tiny_dsa_layer, whole_run
from .dsa_reference import reference_scores

TIE_TOL = 1e-4  # scores this close to the k-th best may fall either side of the cut


def _check_topk(idx, selected, scores, visible, z):
    """idx/selected [Z] for one query against reference scores [L] and visible [L]."""
    n_vis = int(visible.sum())
    chosen = set(idx[selected].tolist())
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
    x = hidden(layer)
    whole, cached = whole_run(layer, x), cached_run(layer, x)  # T queries; T - P over a P prefix
    z = layer.cfg.index_topk
    assert whole.idx.shape == (B, T, z)
    for b in range(B):
        ref = reference_scores(layer, x[b].astype(np.float64), np.arange(T))
        for run, first in ((whole, 0), (cached, P)):
            np.testing.assert_allclose(np.asarray(run.scores[b]), ref[first:], rtol=1e-4, atol=1e-5)
            idx, selected = np.asarray(run.idx[b]), np.asarray(run.selected[b])
            for i in range(T - first):
                _check_topk(idx[i], selected[i], ref[first + i], np.arange(T) <= first + i, z)


def test_no_future_token_is_ever_selected():
    """In prefill over a prefix no query picks a later token; in decode, unwritten cache slots
    hold keys that would outscore every written one, and no query picks one either."""
    layer = tiny_dsa_layer()
    cfg = layer.cfg
    x = hidden(layer, seed=3)
    run = cached_run(layer, x)
    idx, selected = np.asarray(run.idx), np.asarray(run.selected)
    for b in range(B):
        for i in range(T - P):
            chosen = idx[b, i][selected[b, i]]
            assert chosen.size == min(cfg.index_topk, P + i + 1)
            assert chosen.max() <= P + i
    cache = np.zeros((B, SLOTS, cfg.cache_width), np.float32)
    cache[:, :T] = np.asarray(run.keys)
    cache[:, T:] = np.asarray(run.keys)[:, :1]
    cache[:, T:, cfg.kv_width :] *= 1e3  # relu(q.k) huge for some heads: they would win
    pos = np.array([5, T - 1], np.int32)
    cache[0, pos[0] + 1 :] = cache[1, T]  # request 0: everything past its position is poisoned
    step = run_decode(layer, hidden(layer, B, 1, seed=4)[:, 0], cache, pos)
    for b in range(B):
        chosen = np.asarray(step.idx[b, 0])[np.asarray(step.selected[b, 0])]
        assert chosen.size == min(cfg.index_topk, int(pos[b]) + 1)
        assert chosen.max() <= int(pos[b])

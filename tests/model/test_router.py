"""The router against an independent NumPy transcription of the DeepSeek-V3 rule."""

import numpy as np
import pytest

from dualpath_jax.model.moe import route


def v3_router_numpy(logits, bias, top_k, n_group, topk_group, scaling):
    """Plain loops over tokens, written from the rule's description."""
    n_tok, n_exp = logits.shape
    per_group = n_exp // n_group
    weights = np.zeros((n_tok, top_k))
    chosen = np.zeros((n_tok, top_k), dtype=np.int64)
    for t in range(n_tok):
        s = 1.0 / (1.0 + np.exp(-logits[t].astype(np.float64)))  # sigmoid scores
        b = s + bias  # biased, for selection only
        group_scores = []
        for g in range(n_group):
            members = sorted(b[g * per_group : (g + 1) * per_group], reverse=True)
            group_scores.append(sum(members[:2]))
        kept_groups = sorted(range(n_group), key=lambda g: -group_scores[g])[:topk_group]
        candidates = [e for e in range(n_exp) if e // per_group in kept_groups]
        best = sorted(candidates, key=lambda e: -b[e])[:top_k]
        w = np.array([s[e] for e in best])
        weights[t] = w / w.sum() * scaling
        chosen[t] = best
    return weights, chosen


@pytest.mark.parametrize(
    "n_exp,top_k,n_group,topk_group,scaling",
    [
        (16, 4, 4, 2, 2.5),  # the tiny config's rule
        (32, 8, 8, 4, 2.5),  # DeepSeek-V3's grouping, fewer experts
        (16, 6, 1, 1, 1.0),  # no groups (ds16b's rule)
    ],
)
def test_router_matches_numpy(n_exp, top_k, n_group, topk_group, scaling):
    rng = np.random.default_rng(n_exp + top_k)
    logits = rng.normal(size=(40, n_exp)).astype(np.float32) * 2.0
    bias = rng.normal(size=(n_exp,)).astype(np.float32) * 0.5
    w, idx = route(logits, bias, top_k=top_k, n_group=n_group, topk_group=topk_group, scaling=scaling)
    w_ref, idx_ref = v3_router_numpy(logits, bias, top_k, n_group, topk_group, scaling)
    idx = np.asarray(idx)
    # Same expert sets; weights matched per expert (order within the top-k is irrelevant).
    for t in range(logits.shape[0]):
        assert sorted(idx[t]) == sorted(idx_ref[t]), t
        got = dict(zip(idx[t], np.asarray(w)[t]))
        for e, wr in zip(idx_ref[t], w_ref[t]):
            assert abs(got[e] - wr) < 1e-5
    np.testing.assert_allclose(np.asarray(w).sum(-1), scaling, rtol=1e-5)


def test_bias_changes_selection_but_not_weight_rule():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 16)).astype(np.float32)
    bias = np.zeros(16, np.float32)
    bias[3] = 10.0  # force expert 3 in (its group too)
    w, idx = route(logits, bias, top_k=4, n_group=4, topk_group=2, scaling=1.0)
    idx, w = np.asarray(idx), np.asarray(w)
    assert (idx == 3).any(-1).all()
    scores = 1.0 / (1.0 + np.exp(-logits))
    for t in range(8):
        sel = scores[t, idx[t]]
        np.testing.assert_allclose(w[t], sel / sel.sum(), rtol=1e-5)  # unbiased scores

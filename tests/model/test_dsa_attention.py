"""DSA attention (model/sparse.py): it is attention over exactly the keys the indexer selected
(against an expanded-form NumPy reference with the selection as a mask); where index_topk covers
the context it is dense MLA; prefill over a cached prefix and ragged batched decode equal one
prefill of the whole sequence (the cached prefill in chunks of queries)."""

import numpy as np

from dualpath_jax.model.sparse import query_chunk

from .dsa_helpers import CHUNK_QUERIES, SLOTS, B, P, T, cached_run, hidden, run_decode, tiny_dsa_layer, whole_run


def _close(a, b, tol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = np.linalg.norm(a - b) / np.linalg.norm(b)
    assert err < tol, err


def _masked_reference(layer, run, keep):
    """Expanded MLA in float64 of run's queries over its keys where keep [B,T,L] is True -> [B,T,D]."""
    cfg = layer.cfg
    c, m = cfg.kv_lora_rank, cfg.kv_width
    f = lambda a: np.asarray(a, np.float64)  # noqa: E731
    e = f(run.keys)
    k_nope = np.einsum("blc,chk->blhk", e[..., :c], f(layer.w_uk()))
    v = np.einsum("blc,chv->blhv", e[..., :c], f(layer.w_uv()))
    s = np.einsum("bthk,blhk->bthl", f(run.q_nope), k_nope) + np.einsum("bthr,blr->bthl", f(run.q_rope), e[..., c:m])
    s = np.where(keep[:, :, None, :], s * layer.scale, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return np.einsum("bthl,blhv,hvd->btd", w, v, f(layer.wo[...]))


def test_sparse_attention_attends_to_exactly_the_selected_keys():
    layer = tiny_dsa_layer()  # index_topk 8 < T
    run = whole_run(layer, hidden(layer))
    idx, selected = np.asarray(run.idx), np.asarray(run.selected)
    keep = np.zeros((B, T, T), bool)
    for b in range(B):
        for t in range(T):
            keep[b, t, idx[b, t][selected[b, t]]] = True
    assert keep.sum(-1).max() == layer.cfg.index_topk
    _close(run.out, _masked_reference(layer, run, keep))
    dense = _masked_reference(layer, run, np.broadcast_to(np.tril(np.ones((T, T), bool)), (B, T, T)))
    late = slice(layer.cfg.index_topk, T)  # queries that see more keys than they keep
    assert np.linalg.norm(np.asarray(run.out)[:, late] - dense[:, late]) > 1e-2 * np.linalg.norm(dense[:, late])


def test_where_topk_covers_the_context_it_is_dense_mla():
    """Queries at positions < Z see <= Z keys, so DSA keeps them all: MLA's own prefill and
    decode of the same weights give the same outputs."""
    layer = tiny_dsa_layer()
    z = layer.cfg.index_topk
    x = hidden(layer)
    run = whole_run(layer, x)
    _close(run.out[:, :z], run.dense[:, :z])
    # Decode at positions < Z, ragged, over a cache with garbage past them.
    cache = np.full((B, SLOTS, layer.cfg.cache_width), 7.0, np.float32)
    cache[:, :z] = np.asarray(run.entries)[:, :z]
    step = run_decode(layer, x[:, z], cache, np.array([z - 3, z - 1], np.int32))
    _close(step.out, step.dense)


def test_prefix_prefill_and_batched_decode_equal_one_prefill():
    layer = tiny_dsa_layer()
    x = hidden(layer)
    full, cached = whole_run(layer, x), cached_run(layer, x)
    _close(cached.out, full.out[:, P:])
    _close(cached.entries, full.entries[:, P:])
    # Ragged batched decode: request 0 from position 11, request 1 from 14; slots past each
    # request's length hold garbage that must not be read.
    cache = np.full((B, SLOTS, layer.cfg.cache_width), 7.0, np.float32)
    cache[0, :11] = np.asarray(full.entries)[0, :11]
    cache[1, :14] = np.asarray(cached.keys)[1, :14]
    pos = np.array([11, 14], np.int32)
    for _ in range(T - 14):
        step = run_decode(layer, x[np.arange(B), pos], cache, pos)
        for b in range(B):
            _close(step.out[b], full.out[b, pos[b]])
        cache, pos = step.cache, pos + 1
    _close(np.asarray(cache)[1, :T], full.entries[1])


def test_prefill_chunks_are_powers_of_two_within_the_budget():
    """cached_run (compared with one prefill above) runs its 12 queries as 8 + 4 padded."""
    layer = tiny_dsa_layer()
    heads = layer.cfg.index_n_heads
    assert query_chunk(T - P, heads, T, CHUNK_QUERIES * heads * T * 4) == CHUNK_QUERIES
    assert query_chunk(T - P, heads, T, (CHUNK_QUERIES + 3) * heads * T * 4) == CHUNK_QUERIES
    assert query_chunk(T - P, heads, T, 1) == 1  # at least one query
    assert query_chunk(T - P, heads, T) == T - P  # the default budget: one chunk here
    # dsv32 at 4K new over 64K cached: 8 queries' per-head logits (<= 256 MiB) at a time.
    assert query_chunk(4096, 64, 65536 + 4096) == 8

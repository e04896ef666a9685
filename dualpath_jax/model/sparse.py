"""DeepSeek Sparse Attention (DSA): MLA whose every query attends only to the keys the lightning
indexer picks for it (model/indexer.py), in the absorbed form over the selected latent entries.

Axis letters: docs/model.md "Axis letters". Used here: B batch, T query tokens, L key tokens (cache
slots, or prefix + new), D d_model, H heads, K qk_nope, R rope dims, C kv latent, M = C+R the MLA
entry, I indexer head dim, W = M+I the DSA cache entry, V v_head, Z selected keys.

The cache entry of a DSA layer is W = [latent C | k_rope R | index key I] (bf16, DeepSeek-V3.2
shapes: (512 + 64 + 128) * 2 = 1,408 bytes per token per layer); MLA's functions see only its first
M. Prefill and decode both run absorbed MLA (`attention.absorbed_attention`: every head's query is
[q_nope W_UK, q_rope], the key is the M-wide entry, the value its latent) over the Z entries each
query selected, gathered from the prefix + new entries (prefill) or the cache (decode): FLOPs and
bytes scale with Z, not with the context. With index_topk >= the context every visible key is
selected and the function is dense MLA's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .attention import MLA, absorbed_attention
from .config import ModelConfig
from .indexer import Indexer, index_scores, select_topk

# A prefill scores its queries in chunks, so the per-head index logits [chunk, J, L] float32 stay
# under this many bytes (the whole [T, J, L] of 4K queries over 64K keys would be 68 GB).
INDEX_LOGITS_BUDGET_BYTES = 256 * 2**20


def query_chunk(t: int, heads: int, keys: int, budget: int = INDEX_LOGITS_BUDGET_BYTES) -> int:
    """Queries per prefill chunk: a power of two with chunk * heads * keys * 4 <= budget (at least 1),
    and no more than t."""
    fit = max(1, budget // (heads * keys * 4))
    return min(t, 2 ** int(math.log2(fit)))


def over_query_chunks(fn, x, first: int, chunk: int):
    """fn(x_c [B,chunk,D], positions_c [B,chunk]) -> [B,chunk,...], run by lax.map over x [B,T,D]
    (positions first..first+T-1) in chunks of `chunk` queries; the last chunk is padded and the
    padding's outputs dropped -> [B,T,...]."""
    b, t, _ = x.shape
    n = -(-t // chunk)
    xs = jnp.pad(x, ((0, 0), (0, n * chunk - t), (0, 0))).reshape(b, n, chunk, -1).swapaxes(0, 1)
    ps = jnp.broadcast_to((first + jnp.arange(n * chunk, dtype=jnp.int32)).reshape(n, 1, chunk), (n, b, chunk))
    outs = jax.lax.map(lambda c: fn(c[0], c[1]), (xs, ps))  # [n,B,chunk,...]
    return outs.swapaxes(0, 1).reshape(b, n * chunk, *outs.shape[3:])[:, :t]


class DSAttention(MLA):
    """MLA plus a lightning indexer; prefill and decode attend only to the selected keys."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        self.indexer = Indexer(cfg, rngs=rngs)

    def q_latent(self, x):
        """MLA's normed query latent [..., Q], the indexer's input. project_q computes the same ops
        on the same x; under jit XLA's common-subexpression pass keeps one copy."""
        return self.q_norm(jnp.einsum("...D,DQ->...Q", x, self.wq_a[...]))

    def project_entry(self, x, positions):
        """x [..., D] -> the cache entry [..., W]: MLA's entry [M], then the index key [I]."""
        kv = self.project_kv(x, positions)
        return jnp.concatenate([kv, self.indexer.keys(x, positions).astype(kv.dtype)], axis=-1)

    def select(self, x, positions, entries, visible):
        """x [B,T,D] at positions [B,T]; entries [B,L,W]; visible [B,T,L] bool ->
        (idx [B,T,Z], selected [B,T,Z] bool): each query's top-Z visible keys by index score."""
        with jax.named_scope("indexer"):
            q = self.indexer.queries(self.q_latent(x), positions)
            scores = index_scores(q, self.indexer.head_weights(x), entries[..., self.cfg.kv_width :])
            return select_topk(scores, visible, self.cfg.index_topk)

    def sparse_attention(self, q_nope, q_rope, entries, idx, selected):
        """Absorbed MLA of q_nope [B,T,H,K], q_rope [B,T,H,R] over entries [B,L,W] at idx [B,T,Z]
        (selected [B,T,Z] bool masks the unused) -> [B,T,H,V]."""
        b, t, h, _ = q_nope.shape
        with jax.named_scope("sparse_absorbed_mqa"):
            kv = entries[..., : self.cfg.kv_width]
            picked = jax.vmap(lambda kv_b, idx_b: kv_b[idx_b])(kv, idx)  # [B,T,Z,M]
            z = idx.shape[-1]
            out = absorbed_attention(
                q_nope.reshape(b * t, h, -1),
                q_rope.reshape(b * t, h, -1),
                picked.reshape(b * t, z, -1),
                selected.reshape(b * t, z),
                self.w_uk(),
                self.w_uv(),
                self.scale,
            )
            return out.reshape(b, t, h, -1)

    def _attend(self, x, positions, entries):
        """Queries x [B,T,D] at positions [B,T] over entries [B,L,W] (causal by position) -> [B,T,H,V]."""
        q_nope, q_rope = self.project_q(x, positions)
        visible = jnp.arange(entries.shape[1])[None, None, :] <= positions[..., None]
        idx, selected = self.select(x, positions, entries, visible)
        return self.sparse_attention(q_nope, q_rope, entries, idx, selected)

    def prefill(self, x, prefix_kv=None, *, budget: int = INDEX_LOGITS_BUDGET_BYTES):
        """x [B,T,D] new tokens at positions P..P+T-1 after a cached prefix prefix_kv [B,P,W] (or None).

        Returns (out [B,T,D], the new tokens' cache entries [B,T,W]). Queries run in chunks
        (query_chunk, `budget`); a chunk's result does not depend on the chunking.
        """
        b, t, _ = x.shape
        p = 0 if prefix_kv is None else prefix_kv.shape[1]
        positions = jnp.broadcast_to(p + jnp.arange(t, dtype=jnp.int32), (b, t))
        entry = self.project_entry(x, positions)
        entries = entry if not p else jnp.concatenate([prefix_kv.astype(entry.dtype), entry], axis=1)
        chunk = query_chunk(t, self.cfg.index_n_heads, p + t, budget)
        if chunk >= t:
            out = self._attend(x, positions, entries)
        else:
            out = over_query_chunks(lambda xc, pc: self._attend(xc, pc, entries), x, p, chunk)
        return jnp.einsum("BTHV,HVD->BTD", out, self.wo[...]), entry

    def decode(self, x, cache, positions):
        """One token per request: x [B,D] at positions [B]; cache [B,L,W] this layer's entries.

        Writes this token's entry at slot positions[b] (dropped past L), then attends over the
        top-Z of slots 0..positions[b]. Returns (out [B,D], the updated cache)."""
        b = x.shape[0]
        entry = self.project_entry(x, positions)
        cache = cache.at[jnp.arange(b), positions].set(entry.astype(cache.dtype), mode="drop")
        out = self._attend(x[:, None], positions[:, None], cache)[:, 0]
        return jnp.einsum("BHV,HVD->BD", out, self.wo[...]), cache

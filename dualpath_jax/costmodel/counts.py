"""FLOP, parameter and byte counts of a model, from its shape alone.

Linear layers cost 2 FLOPs per parameter per token. Attention costs FLOPs per (query, key) pair:
- MLA prefill, expanded form: QK over qk_nope+qk_rope dims and AV over v_head dims per head, plus the
  up-projection of every cached latent to per-head K/V (kv_lora -> heads*(qk_nope+v_head));
- MLA absorbed form (decode, and DSA's sparse attention): QK over kv_lora+qk_rope, AV over kv_lora;
- DSA: sparse attention over at most `dsa_topk` keys per query, plus the indexer scoring every key
  (indexer_heads x indexer_dim per pair);
- GQA: QK and AV over head_dim per query head.
The engine picks the cheaper MLA form per prefill request (DeepSeek's kernels support both).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..config import ModelSpec


def causal_keys(cached: int, new: int, cap: int | None = None) -> float:
    """Sum over the new queries (positions cached+1..cached+new) of keys seen, each capped at cap."""
    a, b = cached + 1, cached + new
    if cap is None or b <= cap:
        return (a + b) * new / 2
    if a > cap:
        return new * cap
    return (a + cap) * (cap - a + 1) / 2 + (b - cap) * cap


@dataclass(frozen=True)
class ModelCounts:
    spec: ModelSpec

    # ---- parameters -------------------------------------------------------------------------
    @cached_property
    def attn_params_per_layer(self) -> int:
        s = self.spec
        if s.attention in ("mla", "mla_dsa"):
            qk = s.qk_nope + s.qk_rope
            q = s.d_model * s.heads * qk if not s.q_lora else s.d_model * s.q_lora + s.q_lora * s.heads * qk
            kv = s.d_model * (s.kv_lora + s.qk_rope) + s.kv_lora * s.heads * (s.qk_nope + s.v_head)
            o = s.heads * s.v_head * s.d_model
            idx = 0
            if s.attention == "mla_dsa":
                q_in = s.q_lora or s.d_model
                idx = q_in * s.indexer_heads * s.indexer_dim + s.d_model * (s.indexer_dim + s.indexer_heads)
            return q + kv + o + idx
        if s.attention == "gqa":
            return 2 * s.d_model * s.heads * s.head_dim + 2 * s.d_model * s.kv_heads * s.head_dim
        raise ValueError(f"model.attention={s.attention!r} is unknown; known: mla, mla_dsa, gqa")

    @cached_property
    def moe_layers(self) -> int:
        return self.spec.layers - self.spec.dense_layers

    @property
    def _expert_params(self) -> int:
        return 3 * self.spec.d_model * self.spec.expert_ffn

    @cached_property
    def dense_ffn_params(self) -> int:
        """Dense-FFN layers plus shared experts: on every token, replicated on every GPU."""
        s = self.spec
        return s.dense_layers * 3 * s.d_model * s.dense_ffn + self.moe_layers * (
            s.shared_experts * self._expert_params + s.d_model * s.routed_experts
        )

    @cached_property
    def routed_params(self) -> int:
        return self.moe_layers * self.spec.routed_experts * self._expert_params

    @cached_property
    def embedding_params(self) -> int:
        return 2 * self.spec.vocab * self.spec.d_model

    @cached_property
    def total_params(self) -> int:
        return (
            self.spec.layers * self.attn_params_per_layer
            + self.dense_ffn_params
            + self.routed_params
            + self.embedding_params
        )

    @cached_property
    def active_params(self) -> int:
        """Parameters touched per token, excluding embeddings and the LM head."""
        return (
            self.spec.layers * self.attn_params_per_layer
            + self.dense_ffn_params
            + self.moe_layers * self.spec.top_k * self._expert_params
        )

    def weight_bytes_per_gpu(self, role_gpus: int, gpus_per_node: int) -> float:
        """Attention and embeddings replicated (DP attention); dense FFN over `dense_ffn_tp` GPUs;
        routed experts over the role's or the node's GPUs."""
        s = self.spec
        if s.expert_shard not in ("role", "node"):
            raise ValueError(f"model.expert_shard={s.expert_shard!r} is unknown; known: role, node")
        shard = role_gpus if s.expert_shard == "role" else gpus_per_node
        replicated = s.layers * self.attn_params_per_layer + self.embedding_params
        return s.weight_bytes * (replicated + self.dense_ffn_params / s.dense_ffn_tp + self.routed_params / shard)

    # ---- attention FLOPs per (query, key) pair, per layer ----------------------------------------
    @cached_property
    def absorbed_pair(self) -> int:
        s = self.spec
        return 2 * s.heads * (2 * s.kv_lora + s.qk_rope)

    @cached_property
    def indexer_pair(self) -> int:
        """DSA's lightning indexer: every head's query against the key, per (query, key)."""
        return 2 * self.spec.indexer_heads * self.spec.indexer_dim

    @cached_property
    def _expanded_pair(self) -> int:
        s = self.spec
        if s.attention == "gqa":
            return 4 * s.heads * s.head_dim
        return 2 * s.heads * (s.qk_nope + s.qk_rope + s.v_head)

    # ---- per request -----------------------------------------------------------------------------
    def prefill_flops(self, cached: int, new: int) -> float:
        """FLOPs to prefill `new` tokens after `cached` tokens whose KV is loaded, not recomputed."""
        return 2.0 * self.active_params * new + self.prefill_attn_flops(cached, new)

    def prefill_attn_flops(self, cached: int, new: int) -> float:
        """The attention part of `prefill_flops`: what varies between requests of equal length."""
        s = self.spec
        if s.attention == "mla_dsa":
            attn = self.absorbed_pair * causal_keys(cached, new, s.dsa_topk) + self.indexer_pair * causal_keys(
                cached, new
            )
        elif s.attention == "mla":
            pairs = causal_keys(cached, new)
            upproj = 2.0 * s.kv_lora * s.heads * (s.qk_nope + s.v_head) * (cached + new)
            attn = min(self.absorbed_pair * pairs, self._expanded_pair * pairs + upproj)
        else:
            attn = self._expanded_pair * causal_keys(cached, new)
        return s.layers * attn

    def decode_keys(self, context: int) -> int:
        """Keys the main attention reads per decode step for a request of `context` tokens."""
        topk = self.spec.dsa_topk if self.spec.attention == "mla_dsa" else 0
        return min(context, topk) if topk else context

    def decode_flops(self, keys: float, context: float) -> float:
        """FLOPs of one decode token given its attended keys and full context length."""
        s = self.spec
        pair = self.absorbed_pair if s.attention in ("mla", "mla_dsa") else self._expanded_pair
        attn = pair * keys
        if s.attention == "mla_dsa":
            attn += self.indexer_pair * context
        return 2.0 * self.active_params + s.layers * attn

    def ep_bytes_per_token(self, ep_nodes: int) -> float:
        """Bytes one token's MoE all-to-all puts on compute NICs, summed over layers: each of its
        top_k expert copies is dispatched in FP8 and combined in BF16 (1 + 2 bytes per element);
        the share bound for other nodes crosses the CNIC, the rest stays on NVLink."""
        if self.spec.top_k == 0 or ep_nodes <= 1:
            return 0.0
        s = self.spec
        return self.moe_layers * s.top_k * s.d_model * 3.0 * (ep_nodes - 1) / ep_nodes

    # ---- KV bytes --------------------------------------------------------------------------------
    @cached_property
    def kv_parts(self) -> tuple[int, int]:
        """(main, indexer) bytes per token per layer in the configured storage format."""
        fmt = self.spec.kv_bytes_per_token_layer
        if self.spec.kv_format not in fmt:
            known = ", ".join(sorted(fmt))
            raise ValueError(f"model.kv_format={self.spec.kv_format!r} is unknown for {self.spec.name}; known: {known}")
        part = fmt[self.spec.kv_format]
        return int(part["main"]), int(part.get("indexer", 0))

    @cached_property
    def kv_bytes_per_token(self) -> int:
        return self.spec.layers * sum(self.kv_parts)

    def decode_kv_read_bytes(self, keys: float, context: float) -> float:
        main, indexer = self.kv_parts
        return self.spec.layers * (main * keys + indexer * context)

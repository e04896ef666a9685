"""Model configurations: frozen dataclasses, one per model shape, looked up by name.

Shapes follow the public DeepSeek-V2-Lite / DeepSeek-V3 configs. Where our model departs from
them it says so in the field comment (e.g. plain RoPE instead of YaRN, V3's sigmoid router on the
V2-Lite shape). Axis letters in comments (C, R, M, ...) are the ones listed in docs/model.md
"Axis letters".
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

MOE_BACKENDS = ("sort", "ragged", "dense")
# Router rules (moe.route): "noaux_tc" is DeepSeek-V3's (sigmoid scores, selection bias, groups
# scored by their top-2); "greedy" and "group_limited_greedy" are DeepSeek-V2's (softmax scores,
# groups scored by their best expert).
ROUTER_METHODS = {"noaux_tc": "sigmoid", "greedy": "softmax", "group_limited_greedy": "softmax"}
# Prefill attention kernels. "auto" is a request, resolved once when the model is built
# (attention.choose_attn_impl); a built model's cfg.attn_impl is always one of the other three.
ATTN_IMPLS = ("auto", "cudnn-mla", "cudnn", "xla")


@dataclasses.dataclass(frozen=True)
class RopeYarn:
    """YaRN rope scaling as DeepSeek-V2/V3 configs give it (`rope_scaling` type "yarn"); the
    formulas are in rope.py. Defaults are transformers' (beta_fast 32, beta_slow 1)."""

    factor: float
    original_max_position: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 0.0  # 0: absent (the cos/sin factor is then 0.1 ln(factor) + 1)
    mscale_all_dim: float = 0.0  # 0: absent (no factor on the softmax scale)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    # MLA
    q_lora_rank: int  # 0: no query compression (q = W_q x), as in DeepSeek-V2-Lite
    kv_lora_rank: int  # latent width C cached per token
    qk_nope_dim: int
    qk_rope_dim: int  # rope width R cached per token (shared by all heads)
    v_head_dim: int
    # FFN / MoE
    dense_ffn: int  # FFN width of the first `first_k_dense` (dense) layers
    first_k_dense: int
    n_routed_experts: int
    n_shared_experts: int
    expert_ffn: int
    top_k: int
    n_group: int  # router groups (group-limited top-k); 1 = no grouping
    topk_group: int
    routed_scaling_factor: float
    router_method: str = "noaux_tc"  # one of ROUTER_METHODS
    norm_topk_prob: bool = True  # combine weights renormalised to sum 1 before the scaling factor
    # Misc
    rope_theta: float = 10000.0
    rope_yarn: RopeYarn | None = None  # None: plain RoPE (the built-in configs); see rope.py
    rms_eps: float = 1e-6
    dtype: str = "bfloat16"  # parameters and activations; norms, softmax, router in float32
    moe_backend: str = "sort"  # one of MOE_BACKENDS
    # Sort backend: per-expert capacity = ceil(capacity_factor * tokens * top_k / n_experts),
    # clipped to tokens. 0 = never drop (capacity = tokens). Decode always uses 0 (no drop).
    capacity_factor: float = 0.0
    # Prefill attention kernel, one of ATTN_IMPLS: "auto" probes the device when the model is built
    # (cuDNN MLA mode, else cuDNN with V padded, else XLA); the built model's config records the
    # kernel chosen (docs/model.md "Attention kernel").
    attn_impl: str = "auto"
    init_std: float = 0.02
    # DeepSeek Sparse Attention (DeepSeek-V3.2's lightning indexer, model/indexer.py): index_topk 0
    # is dense MLA. The indexer has index_n_heads query heads of width index_head_dim (J, I) and
    # one shared key [I] per token, cached after the MLA entry (cache_width).
    index_n_heads: int = 0
    index_head_dim: int = 0
    index_topk: int = 0
    assumed: str = ""  # free text naming assumptions where we depart from the public config

    def __post_init__(self):
        if self.moe_backend not in MOE_BACKENDS:
            raise ValueError(f"config {self.name!r}: moe_backend={self.moe_backend!r} is not one of {MOE_BACKENDS}")
        if self.n_routed_experts % self.n_group:
            raise ValueError(
                f"config {self.name!r}: n_routed_experts={self.n_routed_experts} is not "
                f"divisible by n_group={self.n_group}"
            )
        if self.topk_group > self.n_group:
            raise ValueError(f"config {self.name!r}: topk_group > n_group")
        if self.top_k > (self.n_routed_experts // self.n_group) * self.topk_group:
            raise ValueError(f"config {self.name!r}: top_k={self.top_k} exceeds the experts in the kept groups")
        if self.router_method not in ROUTER_METHODS:
            raise ValueError(
                f"config {self.name!r}: router_method={self.router_method!r} is not one of {tuple(ROUTER_METHODS)}"
            )
        if self.attn_impl not in ATTN_IMPLS:
            raise ValueError(f"config {self.name!r}: attn_impl={self.attn_impl!r} is not one of {ATTN_IMPLS}")
        self._check_dsa()

    def _check_dsa(self):
        if not (self.index_topk or self.index_n_heads or self.index_head_dim):
            return
        where = f"config {self.name!r}"
        for name in ("index_topk", "index_n_heads", "index_head_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{where}: {name}={getattr(self, name)} must be > 0 when DSA is on (index_* fields)")
        if self.index_head_dim < self.qk_rope_dim:
            raise ValueError(
                f"{where}: index_head_dim={self.index_head_dim} must be >= qk_rope_dim={self.qk_rope_dim} "
                "(the indexer rotates its first qk_rope_dim dims)"
            )
        if not self.q_lora_rank:
            raise ValueError(f"{where}: DSA needs q_lora_rank > 0 (the indexer's query comes from the q latent)")

    # ---- derived sizes ---------------------------------------------------------------------
    @property
    def jdtype(self):
        return jnp.dtype(self.dtype)

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_dim + self.qk_rope_dim

    @property
    def kv_width(self) -> int:
        """M: the width of one cached token's entry per layer, latent [C] then rope [R]."""
        return self.kv_lora_rank + self.qk_rope_dim

    @property
    def is_dsa(self) -> bool:
        """DeepSeek Sparse Attention on: every layer has a lightning indexer."""
        return self.index_topk > 0

    @property
    def cache_width(self) -> int:
        """W: one cached token's entry per layer: the MLA entry [M], then (DSA) the indexer key [I]."""
        return self.kv_width + (self.index_head_dim if self.is_dsa else 0)

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.first_k_dense

    def is_moe_layer(self, i: int) -> bool:
        return i >= self.first_k_dense

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    # ---- parameter and byte counts (analytic) ----------------------------------------------
    def attn_params(self) -> int:
        d, h = self.d_model, self.n_heads
        if self.q_lora_rank:
            q = d * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * h * self.qk_head_dim
        else:
            q = d * h * self.qk_head_dim
        kv = d * (self.kv_lora_rank + self.qk_rope_dim) + self.kv_lora_rank
        kv += self.kv_lora_rank * h * (self.qk_nope_dim + self.v_head_dim)
        o = h * self.v_head_dim * d
        return q + kv + o + self.indexer_params()

    def indexer_params(self) -> int:
        """The lightning indexer's: query up-projection, key projection + LayerNorm, head weights."""
        if not self.is_dsa:
            return 0
        j, i = self.index_n_heads, self.index_head_dim
        return self.q_lora_rank * j * i + self.d_model * i + 2 * i + self.d_model * j

    def mlp_params(self, ffn: int) -> int:
        return 3 * self.d_model * ffn

    def layer_params(self, i: int, active: bool = False) -> int:
        p = self.attn_params() + 2 * self.d_model
        if not self.is_moe_layer(i):
            return p + self.mlp_params(self.dense_ffn)
        n_routed = self.top_k if active else self.n_routed_experts
        p += self.mlp_params(self.expert_ffn) * (self.n_shared_experts + n_routed)
        p += self.d_model * self.n_routed_experts + self.n_routed_experts  # gate + bias
        return p

    def total_params(self) -> int:
        emb = 2 * self.vocab_size * self.d_model  # untied embedding and lm head
        return emb + self.d_model + sum(self.layer_params(i) for i in range(self.n_layers))

    def active_matmul_params(self) -> int:
        """Parameters multiplied per token (the embedding lookup is not a matmul)."""
        return self.vocab_size * self.d_model + sum(self.layer_params(i, active=True) for i in range(self.n_layers))

    def kv_bytes_per_token_layer(self) -> int:
        return self.cache_width * self.jdtype.itemsize


def _tiny() -> ModelConfig:
    return ModelConfig(
        name="tiny",
        vocab_size=256,
        d_model=64,
        n_layers=3,
        n_heads=4,
        q_lora_rank=32,
        kv_lora_rank=32,
        qk_nope_dim=16,
        qk_rope_dim=8,
        v_head_dim=16,
        dense_ffn=128,
        first_k_dense=1,
        n_routed_experts=16,
        n_shared_experts=1,
        expert_ffn=32,
        top_k=4,
        n_group=4,
        topk_group=2,
        routed_scaling_factor=2.5,
        dtype="float32",
        capacity_factor=0.0,
        init_std=0.1,
        assumed="test shape; exercises q_lora, groups, shared experts, first-k dense",
    )


def _ds16b() -> ModelConfig:
    return ModelConfig(
        name="ds16b",
        vocab_size=102400,
        d_model=2048,
        n_layers=27,
        n_heads=16,
        q_lora_rank=0,
        kv_lora_rank=512,
        qk_nope_dim=128,
        qk_rope_dim=64,
        v_head_dim=128,
        dense_ffn=10944,
        first_k_dense=1,
        n_routed_experts=64,
        n_shared_experts=2,
        expert_ffn=1408,
        top_k=6,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=1.0,
        dtype="bfloat16",
        capacity_factor=1.25,
        assumed="DeepSeek-V2-Lite shape; router is DeepSeek-V3's sigmoid+bias rule (V2-Lite uses "
        "softmax); plain RoPE (no YaRN); sort backend drops tokens past 1.25x mean load",
    )


def _dsv3() -> ModelConfig:
    return ModelConfig(
        name="dsv3",
        vocab_size=129280,
        d_model=7168,
        n_layers=61,
        n_heads=128,
        q_lora_rank=1536,
        kv_lora_rank=512,
        qk_nope_dim=128,
        qk_rope_dim=64,
        v_head_dim=128,
        dense_ffn=18432,
        first_k_dense=3,
        n_routed_experts=256,
        n_shared_experts=1,
        expert_ffn=2048,
        top_k=8,
        n_group=8,
        topk_group=4,
        routed_scaling_factor=2.5,
        dtype="bfloat16",
        capacity_factor=1.25,
        assumed="DeepSeek-V3 shape, for profiling a few layers only (no MTP, no sparse attention); "
        "plain RoPE (no YaRN)",
    )


def _dsv3_e32() -> ModelConfig:
    return dataclasses.replace(
        _dsv3(),
        name="dsv3_e32",
        n_routed_experts=32,
        assumed="DeepSeek-V3 shape with 32 routed experts instead of 256 (top-8 of 32, groups of "
        "4), so that a slice of its layers fits one GPU twice over with room for KV; the "
        "compute per token and the KV bytes per token are V3's. Plain RoPE (no YaRN)",
    )


# DeepSeek-V3.2 = V3 + DSA; index_* from DeepSeek-V3.2-Exp's published inference/config_671B_v3.2.json.
_DSV32_INDEXER = dict(index_n_heads=64, index_head_dim=128, index_topk=2048)


def _dsv32() -> ModelConfig:
    return dataclasses.replace(
        _dsv3(),
        name="dsv32",
        **_DSV32_INDEXER,
        assumed="DeepSeek-V3.2 shape (V3 plus DSA's lightning indexer), for eval_shape and loading; no MTP; "
        "the indexer in bf16 without DeepSeek's Hadamard rotation and FP8 scoring (docs/model.md, DSA). "
        "Plain RoPE (no YaRN)",
    )


def _dsv32_e32() -> ModelConfig:
    return dataclasses.replace(
        _dsv3_e32(),
        name="dsv32_e32",
        **_DSV32_INDEXER,
        assumed="dsv32 with 32 routed experts instead of 256, as dsv3_e32 is to dsv3 (testbed size); "
        "the attention, indexer and KV bytes per token are V3.2's. Plain RoPE (no YaRN)",
    )


def _tiny_dsa() -> ModelConfig:
    return dataclasses.replace(
        _tiny(),
        name="tiny_dsa",
        index_n_heads=4,
        index_head_dim=16,
        index_topk=8,
        assumed="test shape: tiny plus a 4-head indexer keeping 8 keys, so 9+ token contexts are sparse",
    )


_CONFIGS = {
    "tiny": _tiny,
    "ds16b": _ds16b,
    "dsv3": _dsv3,
    "dsv3_e32": _dsv3_e32,
    "dsv32": _dsv32,
    "dsv32_e32": _dsv32_e32,
    "tiny_dsa": _tiny_dsa,
}


def known_configs() -> tuple[str, ...]:
    return tuple(_CONFIGS)


def get_config(name: str, **overrides) -> ModelConfig:
    """Config by name; keyword overrides replace fields (e.g. n_layers=2, moe_backend='ragged')."""
    if name not in _CONFIGS:
        raise ValueError(f"unknown model config {name!r}; known configs: {', '.join(_CONFIGS)}")
    cfg = _CONFIGS[name]()
    return dataclasses.replace(cfg, **overrides) if overrides else cfg

"""Multi-head latent attention (MLA), DeepSeek-V2/V3 style.

Axis letters used in einsums here:
  B batch, T new (query) tokens, S key tokens (P cached prefix + T new), L cache slots,
  D d_model, H heads, Q q_lora rank, C kv latent (kv_lora_rank), K per-head no-rope q/k dims
  (qk_nope), R rope dims (shared by all heads for keys), V per-head value dims, A = K + R.

What is cached per token per layer: the RMS-normed latent c_kv [C] and the RoPE-rotated key part
k_rope [R] (bf16: (512 + 64) * 2 = 1,152 bytes for DeepSeek shapes).

Prefill uses the expanded form: the latent of every key token (prefix and new) is up-projected to
per-head k_nope [K] and v [V] with W_kv_b, and attention runs through a flash-attention kernel in
two parts: new queries vs new keys (causal) and new queries vs prefix keys (all visible). The two
partial results are merged with their log-sum-exps, which makes the causal mask's offset by the
prefix length exact without materialising a [T, S] mask.

Decode uses the absorbed form: W_UK (the k_nope half of W_kv_b) is folded into the query,
scores are taken directly against the cached latent, and W_UV is applied after attention, so the
per-head K/V are never materialised and the cache is read as is.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .config import ModelConfig
from .layers import RMSNorm, apply_rope, param, rope_angles

# Which kernel the last traced prefill attention used ("cudnn-mla", "cudnn", "xla").
LAST_ATTN_IMPL: list[str] = []


def _cudnn_private(q, k, v, causal: bool, scale: float):
    """cuDNN flash attention through jax's internal wrapper: float32 log-sum-exp and a value head
    dim that may differ from the query/key head dim (cuDNN's MLA mode, cuDNN >= 9.10, Hopper)."""
    from jax._src.cudnn import fused_attention_stablehlo as fa  # internal API; may move

    mask = fa.MaskType.CAUSAL if causal else fa.MaskType.NO_MASK
    out, lse = fa.dot_product_attention(q, k, v, scale=scale, mask_type=mask, qkv_layout="BTNH", return_residual=True)
    if lse.shape != q.shape[:1] + (q.shape[2], q.shape[1]):
        raise NotImplementedError(f"unexpected residual shape {lse.shape}")
    return out, jnp.transpose(lse, (0, 2, 1)).astype(jnp.float32)


def _public(q, k, v, causal: bool, scale: float, impl):
    """jax.nn.dot_product_attention; value padded to the query/key head dim (the public API needs
    equal dims); log-sum-exp comes back in the input dtype."""
    a, vd = q.shape[-1], v.shape[-1]
    vp = jnp.pad(v, ((0, 0), (0, 0), (0, 0), (0, a - vd))) if vd < a else v
    out, lse = jax.nn.dot_product_attention(
        q, k, vp, scale=scale, is_causal=causal, implementation=impl, return_residual=True
    )
    return out[..., :vd], lse.astype(jnp.float32)


def flash_attention(q, k, v, *, causal: bool, scale: float, impl: str = "auto"):
    """q [B,T,H,A], k [B,S,H,A], v [B,S,H,V] -> (out [B,T,H,V], lse [B,T,H] float32).

    impl: "xla" (jax.nn.dot_product_attention, XLA), "cudnn" (cuDNN only; error if unsupported),
    "auto" (on GPU with 16-bit inputs: cuDNN MLA kernel, else public cuDNN, else XLA).
    """
    on_gpu = jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
    if impl in ("auto", "cudnn") and on_gpu:
        try:
            res = _cudnn_private(q, k, v, causal, scale)
            LAST_ATTN_IMPL.append("cudnn-mla")
            return res
        except Exception:  # noqa: BLE001  (internal API absent or shape unsupported)
            pass
        try:
            res = _public(q, k, v, causal, scale, "cudnn")
            LAST_ATTN_IMPL.append("cudnn")
            return res
        except Exception:  # noqa: BLE001
            if impl == "cudnn":
                raise
    elif impl == "cudnn":
        raise ValueError("attn_impl='cudnn' needs a GPU and bf16/fp16 inputs")
    LAST_ATTN_IMPL.append("xla")
    return _public(q, k, v, causal, scale, "xla")


def merge_attention(o1, l1, o2, l2):
    """Merge two softmax-attention partials over disjoint key sets by their log-sum-exps."""
    m = jnp.maximum(l1, l2)
    w1, w2 = jnp.exp(l1 - m), jnp.exp(l2 - m)
    out = o1.astype(jnp.float32) * w1[..., None] + o2.astype(jnp.float32) * w2[..., None]
    return (out / (w1 + w2)[..., None]).astype(o1.dtype)


def absorbed_attention(q_nope, q_rope, latent, rope, valid, w_uk, w_uv, scale: float):
    """Absorbed MLA over a latent cache.

    q_nope [B,H,K], q_rope [B,H,R] (rotated), latent [B,L,C], rope [B,L,R], valid [B,L] bool,
    w_uk [C,H,K], w_uv [C,H,V] -> [B,H,V].
    """
    f32 = jnp.float32
    q_lat = jnp.einsum("bhk,chk->bhc", q_nope, w_uk, preferred_element_type=f32)
    s = jnp.einsum("bhc,blc->bhl", q_lat.astype(latent.dtype), latent, preferred_element_type=f32)
    s = s + jnp.einsum("bhr,blr->bhl", q_rope, rope, preferred_element_type=f32)
    s = jnp.where(valid[:, None, :], s * scale, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1)
    o_lat = jnp.einsum("bhl,blc->bhc", p.astype(latent.dtype), latent, preferred_element_type=f32)
    return jnp.einsum("bhc,chv->bhv", o_lat.astype(latent.dtype), w_uv, preferred_element_type=f32).astype(latent.dtype)


def expanded_attention(q_nope, q_rope, latent, rope, valid, w_uk, w_uv, scale: float):
    """Same function as absorbed_attention, computed the textbook way (reference for tests)."""
    k_nope = jnp.einsum("blc,chk->blhk", latent, w_uk)
    v = jnp.einsum("blc,chv->blhv", latent, w_uv)
    s = jnp.einsum("bhk,blhk->bhl", q_nope, k_nope) + jnp.einsum("bhr,blr->bhl", q_rope, rope)
    s = jnp.where(valid[:, None, :], s.astype(jnp.float32) * scale, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("bhl,blhv->bhv", p, v)


class MLA(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        dt, std = cfg.jdtype, cfg.init_std
        d, h = cfg.d_model, cfg.n_heads
        self.cfg = cfg
        if cfg.q_lora_rank:
            self.wq_a = param(rngs, (d, cfg.q_lora_rank), dt, std)
            self.q_norm = RMSNorm(cfg.q_lora_rank, cfg.rms_eps, dt)
            self.wq_b = param(rngs, (cfg.q_lora_rank, h, cfg.qk_head_dim), dt, std)
        else:
            self.wq = param(rngs, (d, h, cfg.qk_head_dim), dt, std)
        self.wkv_a = param(rngs, (d, cfg.kv_lora_rank + cfg.qk_rope_dim), dt, std)
        self.kv_norm = RMSNorm(cfg.kv_lora_rank, cfg.rms_eps, dt)
        self.wkv_b = param(rngs, (cfg.kv_lora_rank, h, cfg.qk_nope_dim + cfg.v_head_dim), dt, std)
        self.wo = param(rngs, (h, cfg.v_head_dim, d), dt, std)

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.cfg.qk_head_dim)

    def w_uk(self):
        return self.wkv_b[...][:, :, : self.cfg.qk_nope_dim]

    def w_uv(self):
        return self.wkv_b[...][:, :, self.cfg.qk_nope_dim :]

    def project_q(self, x, positions):
        """x [..., D], positions [...] -> q_nope [..., H, K], q_rope [..., H, R] (rotated)."""
        cfg = self.cfg
        if cfg.q_lora_rank:
            q = jnp.einsum(
                "...q,qha->...ha", self.q_norm(jnp.einsum("...d,dq->...q", x, self.wq_a[...])), self.wq_b[...]
            )
        else:
            q = jnp.einsum("...d,dha->...ha", x, self.wq[...])
        cos, sin = rope_angles(positions, cfg.qk_rope_dim, cfg.rope_theta)
        q_rope = apply_rope(q[..., cfg.qk_nope_dim :], cos[..., None, :], sin[..., None, :])
        return q[..., : cfg.qk_nope_dim], q_rope

    def project_kv(self, x, positions):
        """x [..., D] -> what the cache holds: latent [..., C] (normed), k_rope [..., R] (rotated)."""
        cfg = self.cfg
        kv = jnp.einsum("...d,dn->...n", x, self.wkv_a[...])
        latent = self.kv_norm(kv[..., : cfg.kv_lora_rank])
        cos, sin = rope_angles(positions, cfg.qk_rope_dim, cfg.rope_theta)
        return latent, apply_rope(kv[..., cfg.kv_lora_rank :], cos, sin)

    def expand_kv(self, latent, k_rope):
        """latent [B,S,C], k_rope [B,S,R] -> k [B,S,H,A], v [B,S,H,V]."""
        cfg = self.cfg
        kv = jnp.einsum("bsc,chn->bshn", latent, self.wkv_b[...])
        k_nope, v = kv[..., : cfg.qk_nope_dim], kv[..., cfg.qk_nope_dim :]
        k_r = jnp.broadcast_to(k_rope[:, :, None, :], k_nope.shape[:3] + (cfg.qk_rope_dim,))
        return jnp.concatenate([k_nope, k_r], axis=-1), v

    def prefill(self, x, prefix_latent=None, prefix_rope=None):
        """x [B,T,D] new tokens at positions P..P+T-1, after a cached prefix of P tokens
        (prefix_latent [B,P,C], prefix_rope [B,P,R]; None or P = 0 for no prefix).

        Returns (out [B,T,D], latent [B,T,C], k_rope [B,T,R]) - the last two are the new tokens'
        cache entries. Every request in the batch has the same P; new tokens may be right-padded.
        """
        cfg = self.cfg
        b, t, _ = x.shape
        p = 0 if prefix_latent is None else prefix_latent.shape[1]
        positions = jnp.broadcast_to(p + jnp.arange(t, dtype=jnp.int32), (b, t))
        q_nope, q_rope = self.project_q(x, positions)
        q = jnp.concatenate([q_nope, q_rope], axis=-1)  # [B,T,H,A]
        latent, k_rope = self.project_kv(x, positions)
        k, v = self.expand_kv(latent, k_rope)
        out, lse = flash_attention(q, k, v, causal=True, scale=self.scale, impl=cfg.attn_impl)
        if p:
            kp, vp = self.expand_kv(prefix_latent.astype(x.dtype), prefix_rope.astype(x.dtype))
            out_p, lse_p = flash_attention(q, kp, vp, causal=False, scale=self.scale, impl=cfg.attn_impl)
            out = merge_attention(out, lse, out_p, lse_p)
        return jnp.einsum("bthv,hvd->btd", out, self.wo[...]), latent, k_rope

    def decode(self, x, latent_cache, rope_cache, lengths, *, absorbed: bool = True):
        """One token per request. x [B,D]; latent_cache [B,L,C] and rope_cache [B,L,R] already hold
        this token's entry at slot lengths[b] - 1; slots >= lengths[b] are padding. -> [B,D]."""
        positions = lengths - 1
        q_nope, q_rope = self.project_q(x, positions)
        valid = jnp.arange(latent_cache.shape[1])[None, :] < lengths[:, None]
        fn = absorbed_attention if absorbed else expanded_attention
        o = fn(q_nope, q_rope, latent_cache, rope_cache, valid, self.w_uk(), self.w_uv(), self.scale)
        return jnp.einsum("bhv,hvd->bd", o, self.wo[...])

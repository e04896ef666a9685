"""Multi-head latent attention (MLA), DeepSeek-V2/V3 style.

Axis letters (capitals in the einsum strings): docs/model.md "Axis letters". Used here: B batch,
T new (query) tokens, S key tokens of one prefill attention call, L cache slots, D d_model, H heads,
Q q_lora rank, C kv latent, R rope dims, M = C+R the cached entry, K qk_nope, V v_head, A = K+R,
U = K+V (W_kv_b's output per head).

The cache holds, per token and layer, one joined entry kv [M]: the RMS-normed latent c_kv [C] then
the RoPE-rotated shared key part k_rope [R] (bf16: (512 + 64) * 2 = 1,152 bytes for DeepSeek
shapes). `project_kv` is where an entry is made; nothing outside this file splits one.

Prefill uses the expanded form: the latent of every key token (prefix and new) is up-projected to
per-head k_nope [K] and v [V] with W_kv_b, and attention runs through a flash-attention kernel in
two parts: new queries vs new keys (causal) and new queries vs prefix keys (all visible). The two
partial results are merged with their log-sum-exps, which makes the causal mask's offset by the
prefix length exact without materialising a [T, S] mask.

Decode uses the absorbed form, which is multi-query attention over the cache: W_UK (the k_nope half
of W_kv_b) is folded into the query, so each head's query is [q_nope W_UK, q_rope] of width M and
every head shares one key, the cached entry kv [M], and one value, its latent kv[:C]. W_UV is
applied after attention, so the per-head K/V are never materialised and the cache is read as is.

The prefill kernel is chosen once, when the model is built (`choose_attn_impl`, called by
`Transformer`); the built model's `cfg.attn_impl` records it.
"""

from __future__ import annotations

import functools
import logging
import math

import jax
import jax.numpy as jnp
from flax import nnx

from .config import ModelConfig
from .layers import RMSNorm, apply_rope, param, rope_angles
from .rope import yarn_softmax_factor

log = logging.getLogger(__name__)

# The latent norms (q_norm, kv_norm) use 1e-6 whatever cfg.rms_eps is: DeepSeek's and
# transformers' DeepseekV2/V3 build them with their RMSNorm's default eps, not rms_norm_eps.
LATENT_NORM_EPS = 1e-6

# What a kernel that cannot run here raises while it is traced, lowered or compiled: ImportError /
# AttributeError (jax's internal cuDNN module moved), NotImplementedError / ValueError / TypeError
# (jax's shape, dtype and device checks), RuntimeError (cuDNN missing, or the compile failed:
# jax.errors.JaxRuntimeError is a RuntimeError).
_KERNEL_UNAVAILABLE = (ImportError, AttributeError, NotImplementedError, ValueError, TypeError, RuntimeError)


def _cudnn_mla(q, k, v, causal: bool, scale: float):
    """cuDNN flash attention through jax's internal wrapper: float32 log-sum-exp and a value head
    dim that may differ from the query/key head dim (cuDNN's MLA mode, cuDNN >= 9.10, Hopper)."""
    from jax._src.cudnn import fused_attention_stablehlo as fa  # internal API; may move

    mask = fa.MaskType.CAUSAL if causal else fa.MaskType.NO_MASK
    out, lse = fa.dot_product_attention(q, k, v, scale=scale, mask_type=mask, qkv_layout="BTNH", return_residual=True)
    if lse.shape != q.shape[:1] + (q.shape[2], q.shape[1]):
        raise NotImplementedError(f"unexpected residual shape {lse.shape}")
    return out, jnp.transpose(lse, (0, 2, 1)).astype(jnp.float32)


def _public(q, k, v, causal: bool, scale: float, impl: str):
    """jax.nn.dot_product_attention; value padded to the query/key head dim (the public API needs
    equal dims); log-sum-exp comes back in the input dtype."""
    a, vd = q.shape[-1], v.shape[-1]
    vp = jnp.pad(v, ((0, 0), (0, 0), (0, 0), (0, a - vd))) if vd < a else v
    out, lse = jax.nn.dot_product_attention(
        q, k, vp, scale=scale, is_causal=causal, implementation=impl, return_residual=True
    )
    return out[..., :vd], lse.astype(jnp.float32)


_KERNELS = {
    "cudnn-mla": _cudnn_mla,
    "cudnn": functools.partial(_public, impl="cudnn"),
    "xla": functools.partial(_public, impl="xla"),
}


def flash_attention(q, k, v, *, causal: bool, scale: float, impl: str):
    """q [B,T,H,A], k [B,S,H,A], v [B,S,H,V] -> (out [B,T,H,V], lse [B,T,H] float32).

    impl: a kernel chosen by `choose_attn_impl` ("cudnn-mla", "cudnn" or "xla"); nothing is tried
    and nothing falls back here.
    """
    if impl not in _KERNELS:
        raise ValueError(f"attention kernel {impl!r} is not one of {tuple(_KERNELS)} (choose it with choose_attn_impl)")
    return _KERNELS[impl](q, k, v, causal=causal, scale=scale)


def _gpu_16bit(dtype) -> bool:
    return jax.default_backend() == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)


@functools.cache
def _probe(backend: str, dtype: str, heads: int, qk_dim: int, v_dim: int) -> str:
    """The first cuDNN kernel that compiles for these head dims, causal over new keys and unmasked
    over a prefix of another length (the two calls a prefill makes), else "xla". Cached, so a
    process probes once per shape; `backend` is in the key so that a change of default backend
    probes again."""
    dt = jnp.dtype(dtype)
    q = jax.ShapeDtypeStruct((1, 128, heads, qk_dim), dt)
    calls = [(True, 128), (False, 256)]  # (causal, key tokens)
    for name in ("cudnn-mla", "cudnn"):
        try:
            for causal, s in calls:
                k = jax.ShapeDtypeStruct((1, s, heads, qk_dim), dt)
                v = jax.ShapeDtypeStruct((1, s, heads, v_dim), dt)
                fn = functools.partial(_KERNELS[name], causal=causal, scale=1.0 / math.sqrt(qk_dim))
                jax.jit(fn).lower(q, k, v).compile()
        except _KERNEL_UNAVAILABLE as e:
            log.info("attention kernel %s unavailable on %s (%s): %s: %s", name, backend, dt, type(e).__name__, e)
            continue
        return name
    return "xla"


def probe_attn_impl(cfg: ModelConfig) -> str:
    """The first of cudnn-mla, cudnn that compiles on the default backend for cfg's head dims and
    dtype, else "xla" (choose_attn_impl calls this on a GPU with 16-bit activations)."""
    return _probe(jax.default_backend(), cfg.dtype, cfg.n_heads, cfg.qk_head_dim, cfg.v_head_dim)


def choose_attn_impl(cfg: ModelConfig) -> str:
    """The prefill attention kernel for `cfg` on the default backend, decided once per model build.

    "auto": on a GPU with 16-bit activations, cuDNN's MLA mode if it compiles for cfg's head dims,
    else the public cuDNN kernel (V zero-padded), else XLA; elsewhere XLA. An explicit kernel is
    kept as asked, after checking that a cuDNN one has a GPU and 16-bit activations.
    """
    impl = cfg.attn_impl
    if impl == "auto":
        if not _gpu_16bit(cfg.dtype):
            return "xla"
        return probe_attn_impl(cfg)
    if impl not in _KERNELS:
        raise ValueError(f"config {cfg.name!r}: attn_impl={impl!r} is not one of {('auto',) + tuple(_KERNELS)}")
    if impl != "xla" and not _gpu_16bit(cfg.dtype):
        raise ValueError(f"config {cfg.name!r}: attn_impl={impl!r} needs a GPU and bf16/fp16 (dtype {cfg.dtype})")
    return impl


def merge_attention(o1, l1, o2, l2):
    """Merge two softmax-attention partials over disjoint key sets by their log-sum-exps."""
    m = jnp.maximum(l1, l2)
    w1, w2 = jnp.exp(l1 - m), jnp.exp(l2 - m)
    out = o1.astype(jnp.float32) * w1[..., None] + o2.astype(jnp.float32) * w2[..., None]
    return (out / (w1 + w2)[..., None]).astype(o1.dtype)


def mqa_decode(q, k, v, valid, scale: float):
    """Multi-query attention of one query token per request: q [B,H,M], k [B,L,M] and v [B,L,C]
    shared by all heads, valid [B,L] bool -> [B,H,C] float32. Scores and softmax in float32."""
    s = jnp.einsum("BHM,BLM->BHL", q.astype(k.dtype), k, preferred_element_type=jnp.float32)
    s = jnp.where(valid[:, None, :], s * scale, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1)
    return jnp.einsum("BHL,BLC->BHC", p.astype(v.dtype), v, preferred_element_type=jnp.float32)


def absorbed_attention(q_nope, q_rope, kv, valid, w_uk, w_uv, scale: float):
    """Absorbed MLA over the cache, as MQA with an M-wide key (the entry) and a C-wide value (its
    latent). q_nope [B,H,K], q_rope [B,H,R] (rotated), kv [B,L,M], valid [B,L] bool,
    w_uk [C,H,K], w_uv [C,H,V] -> [B,H,V]."""
    c = w_uk.shape[0]
    q_lat = jnp.einsum("BHK,CHK->BHC", q_nope, w_uk, preferred_element_type=jnp.float32)
    q = jnp.concatenate([q_lat.astype(kv.dtype), q_rope.astype(kv.dtype)], axis=-1)  # [B,H,M]
    o_lat = mqa_decode(q, kv, kv[..., :c], valid, scale)
    return jnp.einsum("BHC,CHV->BHV", o_lat.astype(kv.dtype), w_uv, preferred_element_type=jnp.float32).astype(kv.dtype)


def expanded_attention(q_nope, q_rope, kv, valid, w_uk, w_uv, scale: float):
    """Same function as absorbed_attention, computed the textbook way (reference for tests)."""
    c = w_uk.shape[0]
    latent, rope = kv[..., :c], kv[..., c:]
    k_nope = jnp.einsum("BLC,CHK->BLHK", latent, w_uk)
    v = jnp.einsum("BLC,CHV->BLHV", latent, w_uv)
    s = jnp.einsum("BHK,BLHK->BHL", q_nope, k_nope) + jnp.einsum("BHR,BLR->BHL", q_rope, rope)
    s = jnp.where(valid[:, None, :], s.astype(jnp.float32) * scale, -jnp.inf)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("BHL,BLHV->BHV", p, v)


class MLA(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        if cfg.attn_impl not in _KERNELS:
            raise ValueError(
                f"MLA needs a chosen attention kernel, got attn_impl={cfg.attn_impl!r}: build the model with "
                "Transformer / make_model / abstract_model, which choose it (choose_attn_impl)"
            )
        dt, std = cfg.jdtype, cfg.init_std
        d, h = cfg.d_model, cfg.n_heads
        self.cfg = cfg
        if cfg.q_lora_rank:
            self.wq_a = param(rngs, (d, cfg.q_lora_rank), dt, std)
            self.q_norm = RMSNorm(cfg.q_lora_rank, LATENT_NORM_EPS, dt)
            self.wq_b = param(rngs, (cfg.q_lora_rank, h, cfg.qk_head_dim), dt, std)
        else:
            self.wq = param(rngs, (d, h, cfg.qk_head_dim), dt, std)
        self.wkv_a = param(rngs, (d, cfg.kv_width), dt, std)
        self.kv_norm = RMSNorm(cfg.kv_lora_rank, LATENT_NORM_EPS, dt)
        self.wkv_b = param(rngs, (cfg.kv_lora_rank, h, cfg.qk_nope_dim + cfg.v_head_dim), dt, std)
        self.wo = param(rngs, (h, cfg.v_head_dim, d), dt, std)

    @property
    def scale(self) -> float:
        return yarn_softmax_factor(self.cfg.rope_yarn) / math.sqrt(self.cfg.qk_head_dim)

    def w_uk(self):
        return self.wkv_b[...][:, :, : self.cfg.qk_nope_dim]

    def w_uv(self):
        return self.wkv_b[...][:, :, self.cfg.qk_nope_dim :]

    def project_q(self, x, positions):
        """x [..., D], positions [...] -> q_nope [..., H, K], q_rope [..., H, R] (rotated)."""
        cfg = self.cfg
        with jax.named_scope("project_q"):
            if cfg.q_lora_rank:
                q_a = self.q_norm(jnp.einsum("...D,DQ->...Q", x, self.wq_a[...]))
                q = jnp.einsum("...Q,QHA->...HA", q_a, self.wq_b[...])
            else:
                q = jnp.einsum("...D,DHA->...HA", x, self.wq[...])
            cos, sin = rope_angles(positions, cfg.qk_rope_dim, cfg.rope_theta, cfg.rope_yarn)
            q_rope = apply_rope(q[..., cfg.qk_nope_dim :], cos[..., None, :], sin[..., None, :])
            return q[..., : cfg.qk_nope_dim], q_rope

    def project_kv(self, x, positions):
        """x [..., D] -> the cache entry kv [..., M]: the normed latent [C], then the rotated k_rope [R]."""
        cfg = self.cfg
        with jax.named_scope("project_kv"):
            kv = jnp.einsum("...D,DM->...M", x, self.wkv_a[...])
            latent = self.kv_norm(kv[..., : cfg.kv_lora_rank])
            cos, sin = rope_angles(positions, cfg.qk_rope_dim, cfg.rope_theta, cfg.rope_yarn)
            k_rope = apply_rope(kv[..., cfg.kv_lora_rank :], cos, sin)
            return jnp.concatenate([latent, k_rope.astype(latent.dtype)], axis=-1)

    def expand_kv(self, kv):
        """kv [B,S,M] -> per-head k [B,S,H,A] (k_nope then the shared k_rope), v [B,S,H,V]."""
        cfg = self.cfg
        with jax.named_scope("expand_kv"):
            latent, k_rope = kv[..., : cfg.kv_lora_rank], kv[..., cfg.kv_lora_rank :]
            up = jnp.einsum("BSC,CHU->BSHU", latent, self.wkv_b[...])
            k_nope, v = up[..., : cfg.qk_nope_dim], up[..., cfg.qk_nope_dim :]
            k_r = jnp.broadcast_to(k_rope[:, :, None, :], k_nope.shape[:3] + (cfg.qk_rope_dim,))
            return jnp.concatenate([k_nope, k_r], axis=-1), v

    def prefill(self, x, prefix_kv=None):
        """x [B,T,D] new tokens at positions P..P+T-1, after a cached prefix of P tokens
        (prefix_kv [B,P,M]; None or P = 0 for no prefix).

        Returns (out [B,T,D], kv [B,T,M]): the attention output and the new tokens' cache entries.
        Every request in the batch has the same P; new tokens may be right-padded.
        """
        cfg = self.cfg
        b, t, _ = x.shape
        p = 0 if prefix_kv is None else prefix_kv.shape[1]
        positions = jnp.broadcast_to(p + jnp.arange(t, dtype=jnp.int32), (b, t))
        q_nope, q_rope = self.project_q(x, positions)
        q = jnp.concatenate([q_nope, q_rope], axis=-1)  # [B,T,H,A]
        kv = self.project_kv(x, positions)
        k, v = self.expand_kv(kv)
        with jax.named_scope(f"flash_attention_{cfg.attn_impl}"):
            out, lse = flash_attention(q, k, v, causal=True, scale=self.scale, impl=cfg.attn_impl)
        if p:
            kp, vp = self.expand_kv(prefix_kv.astype(x.dtype))
            with jax.named_scope(f"prefix_attention_{cfg.attn_impl}"):
                out_p, lse_p = flash_attention(q, kp, vp, causal=False, scale=self.scale, impl=cfg.attn_impl)
                out = merge_attention(out, lse, out_p, lse_p)
        return jnp.einsum("BTHV,HVD->BTD", out, self.wo[...]), kv

    def decode(self, x, cache, positions):
        """One token per request: x [B,D] at positions [B]; cache [B,L,M] this layer's entries.

        Writes this token's entry at slot positions[b] (dropped where that is past L; the output
        of such a request is meaningless) and attends over slots 0..positions[b]. Returns
        (out [B,D], the updated cache)."""
        b = x.shape[0]
        entry = self.project_kv(x, positions)
        cache = cache.at[jnp.arange(b), positions].set(entry.astype(cache.dtype), mode="drop")
        q_nope, q_rope = self.project_q(x, positions)
        valid = jnp.arange(cache.shape[1])[None, :] <= positions[:, None]
        with jax.named_scope("absorbed_mqa"):
            o = absorbed_attention(q_nope, q_rope, cache, valid, self.w_uk(), self.w_uv(), self.scale)
        return jnp.einsum("BHV,HVD->BD", o, self.wo[...]), cache

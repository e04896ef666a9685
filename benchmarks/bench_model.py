"""GPU benchmark of the DeepSeek-style model (ds16b by default): matmul peak, HBM bandwidth,
layerwise prefill MFU, batched decode vs the HBM roofline, and the MoE layer per backend.

  PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/bench_model.py --out results/bench/

Writes model_gpu.json and model_gpu.txt under --out and prints the table. Weights are random,
created on the device in bf16 (nothing is downloaded). Every figure is measured in this run:
the MFU denominator is the matmul peak measured here, the roofline uses the copy bandwidth
measured here.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.94")

import argparse  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.report import write_json  # noqa: E402
from dualpath_jax.atomic import atomic_write  # noqa: E402
from dualpath_jax.model import (  # noqa: E402
    KVCache,
    LayerwisePrefill,
    choose_attn_impl,
    get_config,
    jit_decode_step,
    make_model_fast,
)
from dualpath_jax.model import attention as attn_mod  # noqa: E402
from dualpath_jax.model.moe import capacity, moe_dense, moe_ragged, moe_sort  # noqa: E402


def log(*a):
    print(*a, flush=True)


def block(x):
    return jax.block_until_ready(x)


def time_calls(fn, warmup: int, reps: int):
    """Median seconds of fn() (each call blocked on), after warmup calls."""
    for _ in range(warmup):
        block(fn())
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        block(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


# ---- ceilings -----------------------------------------------------------------------------


def bench_matmul(n: int = 8192, reps: int = 10, inner: int = 10):
    keys = jax.random.split(jax.random.key(0), 6)
    mats = [jax.random.normal(k, (n, n), jnp.bfloat16) for k in keys]  # 3 rotating pairs
    f = jax.jit(jnp.dot)  # bf16 in, bf16 out (cuBLAS accumulates in float32)
    block(f(mats[0], mats[1]))

    def run():
        out = None
        for i in range(inner):
            j = 2 * (i % 3)
            out = f(mats[j], mats[j + 1])
        return out

    t, ts = time_calls(run, 2, reps)
    flops = 2 * n**3
    # Check one product against float32 (bf16 operands, f32 accumulation).
    ref = jnp.dot(mats[0].astype(jnp.float32), mats[1].astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
    err = float(jnp.linalg.norm(f(mats[0], mats[1]).astype(jnp.float32) - ref) / jnp.linalg.norm(ref))
    mats = None  # free the device buffers (the closure above names it, so rebind, not del)
    return {"n": n, "tflops": flops * inner / t / 1e12, "sec_per_matmul": t / inner, "rel_err_vs_f32": err}


def bench_hbm(gib: float = 4.0, reps: int = 10):
    n = int(gib * 2**30 / 2)
    xs = [jax.random.normal(jax.random.key(i), (n,), jnp.bfloat16) for i in range(2)]
    f = jax.jit(lambda x: x * jnp.bfloat16(1.5))  # one read + one write per element
    state = {"i": 0}

    def run():
        state["i"] ^= 1
        return f(xs[state["i"]])

    t, _ = time_calls(run, 2, reps)
    xs = None  # free the device buffers
    return {"bytes_per_copy": 2 * n * 2, "tb_per_s": 2 * n * 2 / t / 1e12, "sec": t}


# ---- analytic counts ----------------------------------------------------------------------


def prefill_flops(cfg, t: int, p: int):
    """Model FLOPs of a T-token prefill after P cached tokens (batch 1)."""
    matmul = 2 * cfg.active_matmul_params() * t
    pairs = t * p + t * (t + 1) / 2  # (query, key) pairs under the offset causal mask
    attn = cfg.n_layers * 2 * cfg.n_heads * (cfg.qk_head_dim + cfg.v_head_dim) * pairs
    # Not in the model count: up-projecting the prefix latent to per-head K/V (expanded form).
    prefix_expand = cfg.n_layers * 2 * cfg.kv_lora_rank * cfg.n_heads * (cfg.qk_nope_dim + cfg.v_head_dim) * p
    return matmul, attn, prefix_expand


def decode_bytes(cfg, batch: int, sum_lengths: int):
    """Fewest HBM bytes of one decode step: weights read once + latent cache read once."""
    isz = cfg.jdtype.itemsize
    e, k = cfg.n_routed_experts, cfg.top_k
    touched = e * (1 - (1 - k / e) ** batch)  # expected distinct routed experts per MoE layer
    w = cfg.vocab_size * cfg.d_model  # lm head (embedding rows read are negligible)
    for i in range(cfg.n_layers):
        w += cfg.attn_params() + 2 * cfg.d_model
        if cfg.is_moe_layer(i):
            w += cfg.mlp_params(cfg.expert_ffn) * (cfg.n_shared_experts + touched)
            w += cfg.d_model * e
        else:
            w += cfg.mlp_params(cfg.dense_ffn)
    weights = w * isz
    cache = cfg.n_layers * sum_lengths * cfg.kv_bytes_per_token_layer()
    return weights, cache, touched


def check_attention(cfg, t: int = 1024, p: int = 3072):
    """The prefill attention kernel (the one the model is built with: cuDNN on GPU) with a prefix
    merge, bf16, against a float32 XLA softmax with an explicit offset-causal mask. Fresh random
    inputs."""
    impl = choose_attn_impl(cfg)
    h, a, v = cfg.n_heads, cfg.qk_head_dim, cfg.v_head_dim
    ks = jax.random.split(jax.random.key(42), 3)
    q = jax.random.normal(ks[0], (1, t, h, a), jnp.float32)
    k = jax.random.normal(ks[1], (1, p + t, h, a), jnp.float32)
    vv = jax.random.normal(ks[2], (1, p + t, h, v), jnp.float32)
    scale = 1.0 / math.sqrt(a)

    @jax.jit
    def fast(q, k, vv):
        o1, l1 = attn_mod.flash_attention(q, k[:, p:], vv[:, p:], causal=True, scale=scale, impl=impl)
        o2, l2 = attn_mod.flash_attention(q, k[:, :p], vv[:, :p], causal=False, scale=scale, impl=impl)
        return attn_mod.merge_attention(o1, l1, o2, l2)

    @jax.jit
    def ref(q, k, vv):
        s = jnp.einsum("bthd,bshd->bhts", q, k, precision="highest") * scale
        mask = jnp.arange(p + t)[None, :] <= (p + jnp.arange(t))[:, None]
        pr = jax.nn.softmax(jnp.where(mask, s, -jnp.inf), -1)
        return jnp.einsum("bhts,bshv->bthv", pr, vv, precision="highest")

    def bf(x):
        return x.astype(jnp.bfloat16)

    out = fast(bf(q), bf(k), bf(vv)).astype(jnp.float32)
    r = ref(bf(q).astype(jnp.float32), bf(k).astype(jnp.float32), bf(vv).astype(jnp.float32))
    err = float(jnp.linalg.norm(out - r) / jnp.linalg.norm(r))
    return {"impl": impl, "rel_err": err, "new": t, "prefix": p}


# ---- model benchmarks ---------------------------------------------------------------------


def bench_moe(cfg, model, t: int, reps: int):
    layer = next(lyr for lyr in model.layers if lyr.is_moe)
    moe = layer.ffn
    x = jax.random.normal(jax.random.key(1), (t, cfg.d_model), cfg.jdtype)
    w, idx = jax.jit(lambda m, x: m.router(x))(moe, x)
    ws = (moe.w_gate[...], moe.w_up[...], moe.w_down[...])
    useful = 2 * 3 * cfg.d_model * cfg.expert_ffn * cfg.top_k * t
    cap = capacity(t, cfg.top_k, cfg.n_routed_experts, cfg.capacity_factor)
    counts = np.bincount(np.asarray(idx).ravel(), minlength=cfg.n_routed_experts)
    dropped = int(np.maximum(counts - cap, 0).sum())
    fns = {"sort": partial(moe_sort, capacity_factor=cfg.capacity_factor), "ragged": moe_ragged, "dense": moe_dense}
    ref = None
    rows = {}
    for name in ("dense", "sort", "ragged"):
        f = jax.jit(fns[name])
        t0 = time.perf_counter()
        compiled = f.lower(x, w, idx, *ws).compile()
        ctime = time.perf_counter() - t0
        mem = compiled.memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
        y = block(compiled(x, w, idx, *ws))
        if ref is None:
            ref = y.astype(jnp.float32)
        err = float(jnp.linalg.norm(y.astype(jnp.float32) - ref) / jnp.linalg.norm(ref))
        sec, _ = time_calls(lambda: compiled(x, w, idx, *ws), 2, reps)
        rows[name] = {
            "sec": sec,
            "useful_tflops": useful / sec / 1e12,
            "temp_bytes": temp,
            "rel_err_vs_dense": err,
            "compile_sec": ctime,
        }
        log(
            f"  moe {name:6s}: {sec * 1e3:8.3f} ms  {useful / sec / 1e12:6.1f} TF/s useful  "
            f"temp {temp / 2**20 if temp else float('nan'):9.1f} MiB  err {err:.2e}"
        )
        compiled = y = None  # free the device buffers
    return {
        "tokens": t,
        "capacity": cap,
        "capacity_factor": cfg.capacity_factor,
        "dropped_assignments": dropped,
        "assignments": t * cfg.top_k,
        "expert_load_max_over_mean": float(counts.max() / counts.mean()),
        "backends": rows,
    }


def random_prefix(cfg, p: int, seed: int):
    """Per layer a random cached prefix [1, P, M] (the joined latent+rope entry), or None."""
    if p == 0:
        return None
    return [
        jax.random.normal(jax.random.key(seed + i), (1, p, cfg.cache_width), cfg.jdtype) for i in range(cfg.n_layers)
    ]


def bench_prefill(cfg, model, t: int, prefixes, reps: int, peak_tflops: float):
    lw = LayerwisePrefill(model)
    tokens = jax.random.randint(jax.random.key(2), (1, t), 0, cfg.vocab_size)
    rows = []
    for p in prefixes:
        prefix = random_prefix(cfg, p, 100)
        t0 = time.perf_counter()
        logits = lw(tokens, prefix).logits
        block(logits)
        first = time.perf_counter() - t0
        finite = bool(jnp.isfinite(logits).all())
        sec, ts = time_calls(lambda: lw(tokens, prefix).logits, 1, reps)
        mm, at, pe = prefill_flops(cfg, t, p)
        achieved = (mm + at) / sec
        row = {
            "new_tokens": t,
            "cached_tokens": p,
            "sec": sec,
            "tokens_per_s": t / sec,
            "model_tflop": (mm + at) / 1e12,
            "matmul_tflop": mm / 1e12,
            "attn_tflop": at / 1e12,
            "prefix_expand_tflop": pe / 1e12,
            "achieved_tflops": achieved / 1e12,
            "mfu": achieved / (peak_tflops * 1e12),
            "mfu_incl_prefix_expand": (mm + at + pe) / sec / (peak_tflops * 1e12),
            "attn_impl": lw.cfg.attn_impl,
            "first_call_sec": first,
            "logits_finite": finite,
            "all_sec": ts,
        }
        rows.append(row)
        log(
            f"  prefill T={t} P={p}: {sec * 1e3:8.1f} ms  {t / sec:8.0f} tok/s  "
            f"{achieved / 1e12:6.1f} TF/s  MFU {row['mfu']:.3f}  attn {row['attn_impl']}  "
            f"(first call {first:.1f}s)"
        )
        prefix = logits = None  # free the device buffers
        gc.collect()
    return rows


def bench_decode(cfg, model, batch: int, ctx: int, reps: int, hbm_tbps: float):
    steps = 3 + reps
    # Random cache contents (never zeros), drawn layer by layer so that no draw needs a uint32
    # temporary the size of the whole cache.
    draw = jax.jit(lambda key: jax.random.normal(key, (batch, ctx, cfg.cache_width), cfg.jdtype))
    kv = tuple(block(draw(jax.random.key(1000 + i))) for i in range(cfg.n_layers))
    start = ctx - steps - 1 - jnp.arange(batch, dtype=jnp.int32) % 8  # slightly ragged lengths
    cache = KVCache(kv=kv, lengths=start)
    block(cache)
    graphdef, state = nnx.split(model)
    step = jit_decode_step(graphdef)
    tokens = jax.random.randint(jax.random.key(3), (batch,), 0, cfg.vocab_size)
    box = {"cache": cache}
    cache = kv = None  # free the device buffers

    def run():
        logits, box["cache"] = step(state, tokens, box["cache"])
        return logits

    t0 = time.perf_counter()
    block(run())
    first = time.perf_counter() - t0
    sum_len = int(box["cache"].lengths.sum()) + batch * (1 + reps // 2)  # mid-run lengths
    sec, ts = time_calls(run, 2, reps)
    logits = run()
    finite = bool(jnp.isfinite(logits).all())
    wb, cb, touched = decode_bytes(cfg, batch, sum_len)
    roof = (wb + cb) / (hbm_tbps * 1e12)
    row = {
        "batch": batch,
        "context": ctx,
        "sec_per_step": sec,
        "tokens_per_s": batch / sec,
        "weight_gb": wb / 1e9,
        "cache_gb": cb / 1e9,
        "experts_touched_per_layer": touched,
        "roofline_sec": roof,
        "roofline_fraction": roof / sec,
        "achieved_tb_per_s": (wb + cb) / sec / 1e12,
        "first_call_sec": first,
        "logits_finite": finite,
        "all_sec": ts,
    }
    log(
        f"  decode B={batch} ctx={ctx}: {sec * 1e3:7.2f} ms/step  {batch / sec:7.0f} tok/s"
        f"  {(wb + cb) / 1e9:.1f} GB/step  roofline {roof * 1e3:.2f} ms  "
        f"fraction {roof / sec:.3f}  (first call {first:.1f}s)"
    )
    box = state = None  # free the device buffers
    gc.collect()
    return row


# ---- report -------------------------------------------------------------------------------


def table(res) -> str:
    L = []
    env = res["env"]
    L.append(
        f"# bench_model: {res['config']} ({res['params_b']:.2f}B params, "
        f"{res['active_params_b']:.2f}B active matmul params/token, {res['n_layers']} layers)"
    )
    L.append(f"device: {env['device_kind']} | jax {env['jax']} flax {env['flax']} | {env['time_utc']}")
    c = res["ceilings"]
    ac = res["attention_check"]
    L.append(
        f"prefill attention kernel: {ac['impl']}; bf16 rel err vs f32 offset-causal "
        f"softmax {ac['rel_err']:.1e} ({ac['new']} new over {ac['prefix']} cached)"
    )
    L.append(
        f"bf16 matmul {c['matmul']['n']}^3: {c['matmul']['tflops']:.0f} TFLOP/s (peak used "
        f"for MFU) | HBM copy: {c['hbm']['tb_per_s']:.2f} TB/s (read+write)"
    )
    L.append("")
    L.append("prefill (layerwise, batch 1)   new  cached   ms      tok/s   TF/s   MFU    attn")
    for r in res["prefill"]:
        L.append(
            f"{'':31s}{r['new_tokens']:5d} {r['cached_tokens']:6d} {r['sec'] * 1e3:7.1f} "
            f"{r['tokens_per_s']:8.0f} {r['achieved_tflops']:6.1f} {r['mfu']:.3f}  "
            f"{r['attn_impl']}"
        )
    L.append("")
    L.append("decode (absorbed MLA)  batch   ctx    ms/step   tok/s  GB/step  roofline-ms  fraction")
    for r in res["decode"]:
        L.append(
            f"{'':22s}{r['batch']:6d} {r['context']:5d} "
            f"{r['sec_per_step'] * 1e3:8.2f} {r['tokens_per_s']:7.0f} "
            f"{r['weight_gb'] + r['cache_gb']:8.1f} {r['roofline_sec'] * 1e3:12.2f}  "
            f"{r['roofline_fraction']:.3f}"
        )
    L.append("")
    m = res["moe"]
    L.append(
        f"MoE layer, {m['tokens']} tokens (capacity {m['capacity']}, dropped "
        f"{m['dropped_assignments']}/{m['assignments']} in sort)"
    )
    L.append("  backend     ms    useful TF/s   compiled temp MiB   rel err vs dense")
    for name, r in m["backends"].items():
        temp = r["temp_bytes"] / 2**20 if r["temp_bytes"] is not None else float("nan")
        L.append(
            f"  {name:7s} {r['sec'] * 1e3:8.3f}  {r['useful_tflops']:10.1f}  {temp:18.1f}  {r['rel_err_vs_dense']:.2e}"
        )
    for e in res.get("errors", []):
        L.append(f"ERROR {e}")
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/bench/")
    ap.add_argument("--config", default="ds16b")
    ap.add_argument("--layers", type=int, default=0, help="override n_layers (0: config's)")
    ap.add_argument("--new-tokens", type=int, default=4096)
    ap.add_argument("--prefixes", default="0,16384,32768")
    ap.add_argument("--decode-batch", type=int, default=64)
    ap.add_argument("--decode-ctx", type=int, default=16384)
    ap.add_argument(
        "--moe-backend",
        default="",
        help="backend for the model runs (default: the faster of sort/ragged in the MoE layer benchmark)",
    )
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--name", default="model_gpu")
    ap.add_argument("--matmul-n", type=int, default=8192)
    ap.add_argument("--hbm-gib", type=float, default=4.0)
    args = ap.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)

    def save_json(res):  # after every section, so a crash keeps what was measured
        write_json(os.path.join(args.out, f"{args.name}.json"), res)

    over = {"n_layers": args.layers} if args.layers else {}
    cfg = get_config(args.config, **over)
    import flax

    env = {
        "device_kind": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "python": platform.python_version(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    log("env:", env)
    res = {
        "config": cfg.name,
        "n_layers": cfg.n_layers,
        "env": env,
        "params_b": cfg.total_params() / 1e9,
        "active_params_b": cfg.active_matmul_params() / 1e9,
    }

    log("ceilings ...")
    res["ceilings"] = {"matmul": bench_matmul(args.matmul_n), "hbm": bench_hbm(args.hbm_gib)}
    peak = res["ceilings"]["matmul"]["tflops"]
    hbm = res["ceilings"]["hbm"]["tb_per_s"]
    log(f"  matmul {peak:.1f} TFLOP/s  hbm {hbm:.2f} TB/s")

    res["attention_check"] = check_attention(cfg)
    log("attention check:", res["attention_check"])

    log(f"init {cfg.name} ({cfg.total_params() / 1e9:.2f}B params, {cfg.dtype}) on device ...")
    t0 = time.perf_counter()
    model = make_model_fast(cfg, seed=0)
    block(nnx.state(model))
    cfg = model.cfg  # as built: its attn_impl is the prefill kernel chosen for this device
    res["attn_impl"] = cfg.attn_impl
    res["init_sec"] = time.perf_counter() - t0
    res["weight_bytes"] = int(sum(x.nbytes for x in jax.tree.leaves(nnx.state(model))))
    log(f"  {res['init_sec']:.1f}s, {res['weight_bytes'] / 1e9:.1f} GB of weights")

    save_json(res)
    log("MoE layer per backend ...")
    res["moe"] = bench_moe(cfg, model, args.new_tokens, args.reps * 2)
    backend = args.moe_backend or min(("sort", "ragged"), key=lambda b: res["moe"]["backends"][b]["sec"])
    res["model_moe_backend"] = backend
    if backend != cfg.moe_backend:
        cfg = cfg.replace(moe_backend=backend)
        graphdef, state = nnx.split(model)
        model = nnx.merge(graphdef, state)
        for layer in model.layers:
            layer.attn.cfg = cfg
            if layer.is_moe:
                layer.ffn.cfg = cfg
    log(f"  model runs use moe_backend={backend}")

    save_json(res)
    log("prefill ...")
    prefixes = [int(p) for p in args.prefixes.split(",") if p != ""]
    res["prefill"] = bench_prefill(cfg, model, args.new_tokens, prefixes, args.reps, peak)

    save_json(res)
    log("decode ...")
    res["decode"] = []
    try:
        res["decode"].append(bench_decode(cfg, model, args.decode_batch, args.decode_ctx, args.reps * 2, hbm))
    except jax.errors.JaxRuntimeError as e:  # e.g. out of memory: keep what was measured
        log(f"  decode failed: {type(e).__name__}: {str(e)[:300]}")
        res.setdefault("errors", []).append(f"decode: {type(e).__name__}: {str(e)[:300]}")
        gc.collect()

    save_json(res)
    txt = table(res)
    atomic_write(os.path.join(args.out, f"{args.name}.txt"), txt + "\n")
    log("\n" + txt)


if __name__ == "__main__":
    sys.exit(main())

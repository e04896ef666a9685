"""One attention layer of DeepSeek-V3.2 (DSA: lightning indexer + sparse absorbed MLA) against the
dense MLA layer of DeepSeek-V3, at full size, on one GPU: prefill of new tokens over a cached prefix
and batched decode, with achieved TFLOP/s and MFU.

    PYTHONPATH=. python3 benchmarks/bench_dsa.py --out results/bench --tag h200
    PYTHONPATH=. python3 benchmarks/bench_dsa.py --tiny --out /tmp/dsa   # CPU smoke run, tiny shapes

Per prefill shape (batch 1, `--new` tokens after `--cached` tokens) it times
- `dsa`: DSAttention.prefill as the model runs it (projections, indexer, top-k, sparse attention,
  output projection), with the model's default query chunking and with `--budget-mib` chunks;
- `sparse core`: the sparse absorbed attention alone over given top-k indices, in one call (the part
  FlashMLA's sparse prefill kernel does);
- `indexer`: index scores and top-k alone (the chunking of the `--budget-mib` run);
- `dense`: MLA.prefill (expanded form through the chosen kernel, cuDNN on GPU) at the same shape.
Per decode shape (`--decode-batch` requests at `--decode-context`): DSAttention.decode, its sparse
core and indexer alone, and dense MLA.decode (absorbed form over every cached key).

FLOPs are counted as the cost model counts them (costmodel/counts.py, through the testbed's
ModelConfig -> ModelSpec mapping): projections 2 x attention params per token; sparse attention
2H(2C+R) per (query, selected key); the indexer 2JI per (query, key); dense MLA the cheaper of its
expanded and absorbed forms. MFU is against the H200 datasheet's dense BF16 peak and the matmul
peak measured in this run; decode also reports bytes read (the KV entries and the layer's weights)
against the copy bandwidth measured here. Weights and inputs are random (nothing is downloaded).
Writes dsa_vs_mla_<tag>.{json,txt} under --out.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.94")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_model import bench_hbm, bench_matmul, time_calls  # noqa: E402
from benchmarks.cli import ints  # noqa: E402
from benchmarks.report import machine, write_json, write_report  # noqa: E402
from dualpath_jax.costmodel.counts import ModelCounts, causal_keys  # noqa: E402
from dualpath_jax.model import choose_attn_impl, get_config  # noqa: E402
from dualpath_jax.model.attention import MLA  # noqa: E402
from dualpath_jax.model.sparse import INDEX_LOGITS_BUDGET_BYTES, DSAttention, over_query_chunks, query_chunk  # noqa: E402
from dualpath_jax.paths import load_named  # noqa: E402
from dualpath_jax.serving.simcheck import model_spec  # noqa: E402

# Published reference figures, for comparison only (nothing here is fitted to them).
H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H200 SXM datasheet, BF16 Tensor Core, dense (no sparsity)
FLASHMLA_SPARSE_TFLOPS = {  # deepseek-ai/FlashMLA README (sparse kernels for DSA, 2025-09), on H800 SXM5
    "prefill": 640.0,
    "decode": 410.0,  # with its FP8 KV cache
}


def log(*a):
    print(*a, flush=True)


def layer_fn(layer, method: str, **kw):
    """A jitted function of (state, *args) calling layer.<method>: the weights are arguments, not
    constants folded into the program."""
    graphdef, state = nnx.split(layer)

    @jax.jit
    def run(st, *args):
        return getattr(nnx.merge(graphdef, st), method)(*args, **kw)

    return lambda *args: run(state, *args)


class DonatedDecode:
    """layer.decode over a cache that is donated and fed back each call, as the model's decode step
    does (without donation every step would copy the whole cache)."""

    def __init__(self, layer, cache):
        graphdef, self.state = nnx.split(layer)
        self.cache = cache
        self.run = jax.jit(lambda st, x, c, pos: nnx.merge(graphdef, st).decode(x, c, pos), donate_argnums=(2,))

    def __call__(self, x, positions):
        out, self.cache = self.run(self.state, x, self.cache, positions)
        return out


def select_fn(layer: DSAttention, p: int, chunk: int):
    """The indexer alone: queries x [B,T,D] (positions p..p+T-1) over entries [B,L,W], in query
    chunks of `chunk` as the model's prefill runs them -> idx [B,T,Z]."""
    graphdef, state = nnx.split(layer)

    @jax.jit
    def run(st, x, entries):
        lay, keys = nnx.merge(graphdef, st), jnp.arange(entries.shape[1])[None, None, :]
        return over_query_chunks(lambda xc, pc: lay.select(xc, pc, entries, keys <= pc[..., None])[0], x, p, chunk)

    return lambda *args: run(state, *args)


def random_topk(key, t: int, p: int, z: int):
    """z random key indices per query, each visible to it (key index <= p + query), drawn with
    repeats: the work is the gather of z entries either way. Where a query sees fewer than z keys,
    `selected` masks the surplus out."""
    visible = p + 1 + jnp.arange(t)[:, None]  # keys each query sees
    u = jax.random.uniform(key, (t, z))
    idx = jnp.minimum((u * visible).astype(jnp.int32), visible - 1)
    selected = jnp.arange(z)[None, :] < visible
    return idx[None], selected[None]


class Bench:
    def __init__(self, args, peak_tflops: float):
        self.args, self.peak = args, peak_tflops
        self.rows: list[dict] = []
        over = {"n_layers": 1}
        if args.tiny:
            dsa_cfg, dense_cfg = get_config("tiny_dsa", **over), get_config("tiny", **over)
        else:
            dsa_cfg, dense_cfg = get_config("dsv32", **over), get_config("dsv3", **over)
        self.dsa_cfg = dsa_cfg.replace(attn_impl=choose_attn_impl(dsa_cfg))
        self.dense_cfg = dense_cfg.replace(attn_impl=choose_attn_impl(dense_cfg))
        self.dsa = DSAttention(self.dsa_cfg, rngs=nnx.Rngs(0))
        self.dense = MLA(self.dense_cfg, rngs=nnx.Rngs(0))
        self.dsa_counts = ModelCounts(model_spec(self.dsa_cfg))
        self.dense_counts = ModelCounts(model_spec(self.dense_cfg))
        self.key = jax.random.key(1)

    def normal(self, shape, scale=1.0):
        self.key, k = jax.random.split(self.key)
        return (scale * jax.random.normal(k, shape, jnp.float32)).astype(self.dsa_cfg.jdtype)

    def timed(self, fn, *args):
        sec, _ = time_calls(lambda: fn(*args), self.args.warmup, self.args.reps)
        return sec

    def add(self, phase: str, shape: dict, what: str, sec: float, flops: float, note: str = "", read: float = 0.0):
        row = {"phase": phase, **shape, "what": what, "sec": sec, "tflop": flops / 1e12, "tflops": flops / sec / 1e12}
        row["mfu_datasheet"] = row["tflops"] / H200_BF16_DENSE_TFLOPS
        row["mfu_measured_peak"] = row["tflops"] / self.peak
        if read:
            row["gb_read"] = read / 1e9
            row["tb_per_s"] = read / sec / 1e12
        if note:
            row["note"] = note
        self.rows.append(row)
        bw = f"  {row['tb_per_s']:.2f} TB/s" if read else ""
        log(f"  {phase} {shape} {what:<22} {sec * 1e3:9.3f} ms  {row['tflops']:7.1f} TFLOP/s{bw}  {note}")

    # ---- prefill -----------------------------------------------------------------------------
    def prefill(self, t: int, p: int):
        cfg, d = self.dsa_cfg, self.dsa_cfg.d_model
        shape = {"new": t, "cached": p}
        x = self.normal((1, t, d))
        proj = 2.0 * self.dsa_counts.attn_params_per_layer * t
        c = self.dsa_counts
        sparse = c.absorbed_pair * causal_keys(p, t, c.spec.dsa_topk)
        index = c.indexer_pair * causal_keys(p, t)
        dsa_flops = proj + c.prefill_attn_flops(p, t)  # one layer: sparse + index
        prefix = self.normal((1, p, cfg.cache_width))
        big = self.args.budget_mib * 2**20
        for budget, label in ((INDEX_LOGITS_BUDGET_BYTES, "dsa (model default)"), (big, "dsa (budget)")):
            chunk = query_chunk(t, cfg.index_n_heads, p + t, budget)
            fn = layer_fn(self.dsa, "prefill", budget=budget)
            self.add("prefill", shape, label, self.timed(fn, x, prefix), dsa_flops, f"query chunk {chunk}")
        chunk = query_chunk(t, cfg.index_n_heads, p + t, big)
        entries = jnp.concatenate([prefix, self.normal((1, t, cfg.cache_width))], axis=1)
        self.add("prefill", shape, "indexer", self.timed(select_fn(self.dsa, p, chunk), x, entries), index,
                 f"query chunk {chunk}")  # fmt: skip
        z = min(cfg.index_topk, p + t)
        idx, sel = random_topk(self.key, t, p, z)
        h = cfg.n_heads
        q_nope, q_rope = self.normal((1, t, h, cfg.qk_nope_dim)), self.normal((1, t, h, cfg.qk_rope_dim))
        core = layer_fn(self.dsa, "sparse_attention")
        self.add("prefill", shape, "sparse core", self.timed(core, q_nope, q_rope, entries, idx, sel), sparse,
                 f"{z} keys per query")  # fmt: skip
        del prefix, entries
        dense_flops = 2.0 * self.dense_counts.attn_params_per_layer * t + self.dense_counts.prefill_attn_flops(p, t)
        dense_prefix = self.normal((1, p, self.dense_cfg.kv_width))
        dense = layer_fn(self.dense, "prefill")
        self.add("prefill", shape, f"dense ({self.dense_cfg.attn_impl})", self.timed(dense, x, dense_prefix),
                 dense_flops)  # fmt: skip

    # ---- decode ------------------------------------------------------------------------------
    def decode(self, b: int, ctx: int):
        cfg, d = self.dsa_cfg, self.dsa_cfg.d_model
        shape = {"batch": b, "context": ctx}
        x = self.normal((b, d))
        positions = jnp.full((b,), ctx - 1, jnp.int32)  # the new token is the ctx-th
        proj = 2.0 * self.dsa_counts.attn_params_per_layer * b
        keys = self.dsa_counts.decode_keys(ctx)
        attn = self.dsa_counts.decode_flops(keys, ctx) - 2.0 * self.dsa_counts.active_params  # 1 layer
        w_bytes = self.dsa_counts.attn_params_per_layer * 2.0
        cache = self.normal((b, ctx, cfg.cache_width))
        read = b * self.dsa_counts.decode_kv_read_bytes(keys, ctx) + w_bytes  # as costmodel, bf16 entries
        step = DonatedDecode(self.dsa, cache)
        self.add("decode", shape, "dsa", self.timed(step, x, positions), proj + b * attn, read=read)
        cache = step.cache
        index = b * self.dsa_counts.indexer_pair * ctx
        index_read = b * ctx * cfg.index_head_dim * 2.0  # every cached index key, bf16
        indexer = select_fn(self.dsa, ctx - 1, 1)
        self.add("decode", shape, "indexer", self.timed(indexer, x[:, None], cache), index, read=index_read)
        idx, sel = random_topk(self.key, 1, ctx - 1, keys)
        idx, sel = jnp.broadcast_to(idx, (b, 1, keys)), jnp.broadcast_to(sel, (b, 1, keys))
        h = cfg.n_heads
        q_nope, q_rope = self.normal((b, 1, h, cfg.qk_nope_dim)), self.normal((b, 1, h, cfg.qk_rope_dim))
        core = layer_fn(self.dsa, "sparse_attention")
        core_read = b * keys * cfg.kv_width * 2.0
        self.add("decode", shape, "sparse core", self.timed(core, q_nope, q_rope, cache, idx, sel),
                 b * self.dsa_counts.absorbed_pair * keys, read=core_read, note=f"{keys} keys per query")  # fmt: skip
        del cache
        dense_cache = self.normal((b, ctx, self.dense_cfg.kv_width))
        dc = self.dense_counts
        dense_attn = dc.decode_flops(ctx, ctx) - 2.0 * dc.active_params
        dense_read = b * dc.decode_kv_read_bytes(ctx, ctx) + dc.attn_params_per_layer * 2.0
        self.add("decode", shape, "dense (absorbed)", self.timed(DonatedDecode(self.dense, dense_cache), x, positions),
                 2.0 * dc.attn_params_per_layer * b + b * dense_attn, read=dense_read)  # fmt: skip


def report(args, argv, bench, matmul, hbm, wall_s: float, complete: bool) -> dict:
    full_dsa, full_dense = get_config("dsv32"), get_config("dsv3")
    fmt = load_named("model", "ds660b")["kv_bytes_per_token_layer"]
    return {
        "device_kind": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
        "machine": machine(),
        "jax": jax.__version__,
        "dtype": bench.dsa_cfg.dtype,
        "dsa_config": bench.dsa_cfg.name,
        "dense_config": bench.dense_cfg.name,
        "attn_impl": bench.dense_cfg.attn_impl,
        "matmul_tflops": matmul["tflops"],
        "hbm_tb_per_s": hbm["tb_per_s"],
        "reference_tflops": {"h200_bf16_dense": H200_BF16_DENSE_TFLOPS, "flashmla_sparse_h800": FLASHMLA_SPARSE_TFLOPS},
        "statistic": f"median of {args.reps} after {args.warmup} warm-up",
        "rows": bench.rows,
        "bytes_per_token": {
            "DSA, bf16 entry (this model: 704 x 2 per layer)": full_dsa.n_layers * full_dsa.kv_bytes_per_token_layer(),
            "dense MLA, bf16 entry (576 x 2 per layer)": full_dense.n_layers * full_dense.kv_bytes_per_token_layer(),
            "DSA, FP8 + indexer (simulator's ds660b kv_format)": full_dsa.n_layers * sum(fmt["fp8_indexer"].values()),
            "MLA, FP8 (simulator's ds660b fp8)": full_dsa.n_layers * sum(fmt["fp8"].values()),
        },
        "command": " ".join(["benchmarks/bench_dsa.py", *(argv if argv is not None else sys.argv[1:])]),
        "wall_s": wall_s,
        "complete": complete,
    }


def table(res: dict) -> list[str]:
    lines = [
        f"DSA (dsv32) vs dense MLA (dsv3), one full-size attention layer, {res['dtype']}, {res['device_kind']}",
        f"machine: {res['machine']}; jax {res['jax']}",
        f"ceilings measured here: matmul {res['matmul_tflops']:.1f} TFLOP/s, copy {res['hbm_tb_per_s']:.2f} TB/s; "
        f"datasheet BF16 dense {H200_BF16_DENSE_TFLOPS:.0f} TFLOP/s",
        "FlashMLA sparse kernels (H800, published): prefill ~640, decode ~410 TFLOP/s",
        "",
        f"{'phase':<8}{'shape':<18}{'what':<24}{'ms':>10}{'TFLOP/s':>9}{'MFU ds':>8}{'MFU pk':>8}{'TB/s':>7}  note",
    ]
    for r in res["rows"]:
        shape = f"{r['new']} / {r['cached']}" if r["phase"] == "prefill" else f"b{r['batch']} @ {r['context']}"
        bw = f"{r['tb_per_s']:7.2f}" if "tb_per_s" in r else " " * 7
        lines.append(
            f"{r['phase']:<8}{shape:<18}{r['what']:<24}{r['sec'] * 1e3:10.3f}{r['tflops']:9.1f}"
            f"{r['mfu_datasheet']:8.1%}{r['mfu_measured_peak']:8.1%}{bw}  {r.get('note', '')}"
        )
    lines += ["", "bytes per cached token (61 layers of DeepSeek-V3.2 / V3):"]
    for k, v in res["bytes_per_token"].items():
        lines.append(f"  {k:<52}{v:>10,} B")
    lines += ["", f"command: {res['command']}", f"wall {res['wall_s']:.1f} s"]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--tag", default="gpu")
    ap.add_argument("--new", default="512,4096", help="new tokens per prefill (comma list)")
    ap.add_argument("--cached", default="16384,32768,65536", help="cached tokens before them (comma list)")
    ap.add_argument("--decode-batch", default="16,64")
    ap.add_argument("--decode-context", default="32768,65536")
    ap.add_argument("--budget-mib", type=int, default=4096, help="index-logits budget of the second DSA run")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="tiny_dsa vs tiny (a CPU smoke run)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    new, cached = ints(args.new, "--new", 1), ints(args.cached, "--cached", 1)
    batches, contexts = ints(args.decode_batch, "--decode-batch", 1), ints(args.decode_context, "--decode-context", 2)

    log(f"ceilings ({jax.devices()[0].device_kind}) ...")
    n = 1024 if args.tiny else 8192
    matmul, hbm = bench_matmul(n), bench_hbm(0.25 if args.tiny else 4.0)
    bench = Bench(args, matmul["tflops"])
    log(f"  matmul {matmul['tflops']:.1f} TFLOP/s, copy {hbm['tb_per_s']:.2f} TB/s")

    def save(final: bool):
        res = report(args, argv, bench, matmul, hbm, time.perf_counter() - t0, final)
        if final:
            write_report(args.out, f"dsa_vs_mla_{args.tag}", res, table(res))
        else:  # a run cut short keeps every shape it measured
            write_json(Path(args.out) / f"dsa_vs_mla_{args.tag}.json", res)

    for t in new:
        for p in cached:
            bench.prefill(t, p)
            save(final=False)
    for b in batches:
        for ctx in contexts:
            bench.decode(b, ctx)
            save(final=False)
    save(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m dualpath_jax.model.hf DIR [--dtype float32] [--tokens 3,17,42]

Checks a Hugging Face DeepSeek-V2/V3/V3.2 checkpoint directory, prints the model config it maps to,
loads it and, with --tokens, prints the next-token argmax after a prefill of those ids. A
checkpoint the loader refuses exits 2 with the file and field named (no traceback).
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualpath_jax.model.hf", description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="directory with config.json and *.safetensors")
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--tokens", default="", help="comma-separated token ids to prefill")
    args = ap.parse_args(argv)
    from .config import CheckpointError, read_config

    try:
        tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    except ValueError:
        print(f"--tokens: {args.tokens!r} is not comma-separated integers", file=sys.stderr)
        return 2
    try:
        hf = read_config(args.checkpoint, dtype=args.dtype)
        cfg = hf.model
        print(f"{hf.source}: {hf.model_type}, {cfg.n_layers} layers, d {cfg.d_model}, {cfg.n_heads} heads, "
              f"{cfg.n_routed_experts} experts top-{cfg.top_k} ({cfg.router_method}), "
              f"rope {'yarn' if cfg.rope_yarn else 'plain'}, fp8 {hf.fp8_block or 'no'}, "
              + (f"DSA top-{cfg.index_topk} ({cfg.index_n_heads} index heads x {cfg.index_head_dim}), " if cfg.is_dsa else "")
              + f"{cfg.total_params() / 1e6:.2f}M params")  # fmt: skip
        if any(t < 0 or t >= cfg.vocab_size for t in tokens):
            print(f"--tokens: ids must be in [0, {cfg.vocab_size})", file=sys.stderr)
            return 2
        from .weights import load_checkpoint

        model = load_checkpoint(args.checkpoint, dtype=args.dtype)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"loaded: {cfg.assumed}")
    if tokens:
        import jax.numpy as jnp

        from ..model import prefill

        logits = prefill(model, jnp.asarray([tokens], jnp.int32)).logits[0, -1]
        print(f"next token after {tokens}: {int(jnp.argmax(logits))} (logit {float(logits.max()):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

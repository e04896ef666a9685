"""Text generation from a Hugging Face DeepSeek-V2/V3 checkpoint, one-shot or as a multi-turn chat
whose turns reuse their prefix KV through the project's TensorStore KV store.

    python -m experiments.generate checkpoint=DIR prompt="the agent reads"
    python -m experiments.generate checkpoint=DIR prompt="a" prompt="b" temperature=0.8 top_p=0.9 seed=1
    python -m experiments.generate checkpoint=DIR chat=true prompts=turns.txt block_tokens=16

Arguments are key=value (`--help` lists them; dualpath_jax/generate/options.py says why not
Hydra). Several prompts run as one batch; with chat=true they are the turns of one conversation,
and each turn prints the tokens it loaded from the store (hit) and the tokens it prefilled (new).
Bad input (a missing checkpoint, tokenizer.json or option, an out-of-range temperature or top_p)
exits 2 with the file or option named. docs/model.md "Text generation".
"""

from __future__ import annotations

import sys
import tempfile
import time

from dualpath_jax.generate.options import HELP, GenerateOptions, OptionError, parse  # no JAX: bad options exit at once


def max_positions(checkpoint) -> int | None:
    import json

    return json.loads((checkpoint / "config.json").read_text()).get("max_position_embeddings")


def run(opts: GenerateOptions, out=sys.stdout) -> None:
    from dualpath_jax.generate.engine import Generator
    from dualpath_jax.generate.stops import StopText
    from dualpath_jax.generate.tokenizer import Tokenizer
    from dualpath_jax.model.hf import load_checkpoint, read_config

    cfg = read_config(opts.checkpoint, dtype=opts.dtype).model  # checks config.json before the tokenizer
    tokenizer = Tokenizer(opts.checkpoint, vocab_size=cfg.vocab_size)
    start = time.perf_counter()
    model = load_checkpoint(opts.checkpoint, dtype=opts.dtype)
    print(f"loaded {opts.checkpoint} ({opts.dtype}) in {time.perf_counter() - start:.1f} s; "
          f"stop ids {list(tokenizer.stop_ids)}" + (f", stop text {list(opts.stop)}" if opts.stop else ""), file=out)  # fmt: skip
    stop_text = StopText(tokenizer, opts.stop) if opts.stop else None
    positions = max_positions(opts.checkpoint)
    if opts.chat:
        chat(opts, model, tokenizer, stop_text, positions, out)
        return
    prompts = [tokenizer.encode(p) for p in opts.prompts]
    generator = Generator(model, max_positions=positions)
    stop_when = None if stop_text is None else (lambda b, tokens: stop_text.reached(tokens))
    start = time.perf_counter()
    result = generator.generate(prompts, opts.sampling, stop_ids=tokenizer.stop_ids, stop_when=stop_when)
    seconds = time.perf_counter() - start
    for i, (prompt, gen) in enumerate(zip(prompts, result.generations)):
        text = stop_text.cut(gen.tokens) if stop_text else tokenizer.decode(gen.tokens)
        print(f"[{i}] prompt {len(prompt)} tokens, generated {len(gen.tokens)} tokens (finish: {gen.finish})", file=out)
        print(f"[{i}] {opts.prompts[i]}{text}", file=out)
    print(f"{sum(len(g.tokens) for g in result.generations)} tokens in {seconds:.2f} s (compiling included)", file=out)


def chat(opts: GenerateOptions, model, tokenizer, stop_text, positions, out) -> None:
    from dualpath_jax.generate.chat import ChatSession
    from dualpath_jax.generate.engine import Generator, bucket
    from dualpath_jax.generate.prefix_store import PrefixStore, checkpoint_namespace

    # one cache length for every turn (one compiled decode step): all the turns' text and replies
    longest = sum(len(tokenizer.encode(p)) for p in opts.prompts) + len(opts.prompts) * opts.sampling.max_new_tokens
    cache_len = bucket(longest) if positions is None else min(bucket(longest), positions)
    generator = Generator(model, max_positions=positions, cache_len=cache_len)
    with tempfile.TemporaryDirectory(prefix="generate-kv-") as scratch:
        path = opts.store or f"{scratch}/kv"
        store = PrefixStore.open(
            path, model.cfg, tokens_per_block=opts.block_tokens, capacity_blocks=opts.store_blocks,
            namespace=checkpoint_namespace(opts.checkpoint, opts.dtype),
        )  # fmt: skip
        print(f"KV store {path}: {opts.block_tokens} tokens per block, {len(store.store)} blocks stored", file=out)
        try:
            session = ChatSession(
                generator, tokenizer, store, opts.sampling, stop_ids=tokenizer.stop_ids, stop_text=stop_text
            )
            for text in opts.prompts:
                t = session.turn(text)
                print(f"turn {t.turn}: {t.hit_tokens} hit tokens loaded from the store, {t.new_tokens} new tokens "
                      f"prefilled, {len(t.reply_tokens)} generated (finish: {t.finish}), {t.stored_blocks} blocks "
                      f"stored, {t.seconds:.2f} s", file=out)  # fmt: skip
                print(f"  user: {text}", file=out)
                print(f"  model: {t.text}", file=out)
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "help") for a in argv):
        print(HELP, end="")
        return 0
    try:
        opts = parse(argv)
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from dualpath_jax.kvstore import KVStoreError
    from dualpath_jax.model.hf import CheckpointError

    try:
        run(opts)
    except (CheckpointError, KVStoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # a request the model cannot take (e.g. longer than max_position_embeddings)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Text generation on the tiny v3 fixture (float32, CPU): greedy decoding equals argmax over full
recomputes, the seed decides the sample, top_p -> 0 is greedy, stop tokens and stop text stop, a
chat turn loads its prefix from the KV store and computes what a full recompute computes, and bad
input exits 2 naming the option or file.

Every generation here shares three compiled programs (prefill without and with a store prefix,
one decode step: batch 1, prompts of at most 16 tokens, one fixed cache length) compiled at XLA's
CPU optimisation level 0, which halves compile time on this machine."""

import json
import shutil

import numpy as np
import pytest

from dualpath_jax.generate.chat import ChatSession
from dualpath_jax.generate.engine import Generator
from dualpath_jax.generate.params import SamplingParams
from dualpath_jax.generate.prefix_store import PrefixStore, checkpoint_namespace
from dualpath_jax.generate.stops import StopText
from dualpath_jax.generate.tokenizer import Tokenizer, stop_token_ids
from dualpath_jax.model.hf import CheckpointError, load_checkpoint
from experiments import generate as cli

from ..helpers import ROOT, run_cli
from .hf_fixtures import path, reference

F32_ATOL = 1e-5  # as tests/model/test_hf_load.py: float32 logits through 3 layers land near 1e-6
CACHE_LEN = 32
FAST_COMPILE = {"xla_backend_optimization_level": 0}
PROMPT_LEN = 6  # reference.npz's prompt[:6]: its logits at token 5 are transformers' (causal)
NEW = 8


@pytest.fixture(scope="module")
def generator():
    model = load_checkpoint(path("v3"), dtype="float32")
    return Generator(model, max_positions=256, cache_len=CACHE_LEN, compiler_options=FAST_COMPILE)


@pytest.fixture(scope="module")
def dsa_generator():
    model = load_checkpoint(path("v32"), dtype="float32")  # DSA: the cache entries carry index keys
    return Generator(model, max_positions=256, cache_len=CACHE_LEN, compiler_options=FAST_COMPILE)


@pytest.fixture(scope="module")
def prompt():
    return reference("v3")["prompt"][:PROMPT_LEN].tolist()


@pytest.fixture(scope="module")
def greedy(generator, prompt):
    return generator.generate([prompt], SamplingParams(max_new_tokens=NEW)).generations[0].tokens


def argmax_by_recompute(generator, tokens):
    """The next token by a fresh prefill of the whole sequence (no decode step, no reused cache)."""
    out = generator.generate([tokens], SamplingParams(max_new_tokens=1))
    return out.generations[0].tokens[0], out.first_logits[0]


def test_prefill_logits_match_transformers(generator, prompt):
    _, logits = argmax_by_recompute(generator, prompt)
    want = reference("v3")["logits"][PROMPT_LEN - 1]
    assert np.abs(np.asarray(logits) - want).max() < F32_ATOL


def test_greedy_equals_argmax_step_by_step(generator, prompt, greedy):
    sequence = list(prompt)
    for _ in range(NEW):
        sequence.append(argmax_by_recompute(generator, sequence)[0])
    assert greedy == sequence[PROMPT_LEN:]


def test_the_seed_decides_the_sample(generator, prompt, greedy):
    def sample(seed, top_p=1.0):
        params = SamplingParams(max_new_tokens=NEW, temperature=1.0, top_p=top_p, seed=seed)
        return generator.generate([prompt], params).generations[0].tokens

    first = sample(seed=1)
    assert sample(seed=1) == first
    assert sample(seed=2) != first  # 8 draws from a nearly flat 96-token distribution
    assert first != greedy
    assert sample(seed=2, top_p=1e-6) == greedy  # the nucleus is the top token alone


def test_stop_tokens_and_stop_text_stop(generator, prompt, greedy):
    at = next(i for i in range(1, NEW) if greedy[i] not in greedy[:i])  # a token not seen before it
    out = generator.generate([prompt], SamplingParams(max_new_tokens=NEW), stop_ids=[greedy[at]])
    assert out.generations[0].tokens == greedy[: at + 1] and out.generations[0].finish == "stop"
    full = generator.generate([prompt], SamplingParams(max_new_tokens=NEW)).generations[0]
    assert full.finish == "length"

    tokenizer = Tokenizer(path("v3"))
    text = tokenizer.decode(greedy)
    word = text[len(text) // 2 :][:3]
    stop = StopText(tokenizer, [word])
    assert stop.cut(greedy) == text[: text.find(word)]
    stopped = generator.generate(
        [prompt], SamplingParams(max_new_tokens=NEW), stop_when=lambda b, tokens: stop.reached(tokens)
    ).generations[0]
    assert stopped.finish == "stop" and word in tokenizer.decode(stopped.tokens)
    assert word not in tokenizer.decode(stopped.tokens[:-1])


@pytest.mark.parametrize("name,which", [("v3", "generator"), ("v32", "dsa_generator")])
def test_chat_turn_two_loads_its_prefix_from_the_store(name, which, request, tmp_path):
    generator = request.getfixturevalue(which)
    block = 2  # several blocks per hit, so their order matters
    cfg = generator.cfg
    store = PrefixStore.open(
        tmp_path / "kv", cfg, tokens_per_block=block, capacity_blocks=64,
        namespace=checkpoint_namespace(path(name), "float32"),
    )  # fmt: skip
    session = ChatSession(generator, Tokenizer(path(name)), store, SamplingParams(max_new_tokens=4))
    first = session.turn("the agent reads")
    assert first.hit_tokens == 0
    known = len(session.history) - 1  # the last reply token was sampled, never fed: no KV for it
    assert first.stored_blocks == known // block > 0
    second = session.turn("the cache")
    assert second.hit_tokens == block * (known // block)  # every whole stored block, no more
    assert second.hit_tokens + second.new_tokens == len(session.history) - len(second.reply_tokens)
    sequence = session.history[: second.hit_tokens + second.new_tokens]
    _, recomputed = argmax_by_recompute(generator, sequence)
    assert np.abs(np.asarray(second.first_logits) - np.asarray(recomputed)).max() < F32_ATOL
    for i, token in enumerate(second.reply_tokens):  # greedy decode over the loaded prefix, too
        assert token == argmax_by_recompute(generator, sequence + second.reply_tokens[:i])[0]
    store.close()


def test_stop_ids_come_from_generation_config_then_config(tmp_path):
    assert stop_token_ids(path("v3")) == (1,)  # config.json's eos_token_id
    ckpt = tmp_path / "ckpt"
    shutil.copytree(path("v3"), ckpt)
    (ckpt / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 5]}))
    assert stop_token_ids(ckpt) == (1, 5)
    (ckpt / "generation_config.json").write_text(json.dumps({"eos_token_id": "x"}))
    with pytest.raises(CheckpointError, match="generation_config.json: field 'eos_token_id'"):
        stop_token_ids(ckpt)


def test_tokenizer_round_trip_and_bos(tmp_path):
    tokenizer = Tokenizer(path("v3"), vocab_size=96)
    assert tokenizer.decode(tokenizer.encode("the agent reads the cache")) == "the agent reads the cache"
    ckpt = tmp_path / "ckpt"
    shutil.copytree(path("v3"), ckpt)
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "bos_token": "<bos>"}))
    with_bos = Tokenizer(ckpt)
    assert with_bos.encode("the")[0] == 0 and with_bos.encode("the", first=False)[0] != 0
    with pytest.raises(CheckpointError, match="more than the model's vocab_size 50"):
        Tokenizer(path("v3"), vocab_size=50)


BAD = [
    (["prompt=x"], "checkpoint: missing"),
    (["checkpoint=/nonexistent/ckpt", "prompt=x"], "checkpoint: /nonexistent/ckpt is not a directory"),
    (["checkpoint={v3}"], "prompt: give at least one"),
    (["checkpoint={v3}", "prompt=x", "temperature=-1"], "temperature: must be a finite number >= 0"),
    (["checkpoint={v3}", "prompt=x", "temperature=hot"], "temperature: 'hot' is not a number"),
    (["checkpoint={v3}", "prompt=x", "top_p=0"], "top_p: must be in (0, 1]"),
    (["checkpoint={v3}", "prompt=x", "top_p=1.5"], "top_p: must be in (0, 1]"),
    (["checkpoint={v3}", "prompt=x", "max_new_tokens=0"], "max_new_tokens: must be an integer >= 1"),
    (["checkpoint={v3}", "prompt=x", "dtype=int8"], "dtype: 'int8' is not one of"),
    (["checkpoint={v3}", "prompt=x", "stop="], "stop: empty stop text"),
    (["checkpoint={v3}", "prompt=x", "colour=red"], "colour: unknown option"),
    (["checkpoint={v3}", "prompt=x", "seed=1", "seed=2"], "seed: given twice"),
    (["checkpoint={v3}", "prompts=/nonexistent/turns.txt"], "prompts: /nonexistent/turns.txt is not a file"),
    (["checkpoint={v3}", "prompt=x", "max_new_tokens=300"], "more than the checkpoint's max_position_embeddings"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_input_exits_2_naming_it(args, message, capsys):
    assert cli.main([a.format(v3=path("v3")) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_checkpoint_without_tokenizer_json_exits_2(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(path("v3"), ckpt)
    (ckpt / "tokenizer.json").unlink()
    assert cli.main([f"checkpoint={ckpt}", "prompt=x"]) == 2
    assert f"{ckpt / 'tokenizer.json'}: no tokenizer.json" in capsys.readouterr().err


def test_the_command_exits_2_without_a_traceback(tmp_path):
    proc = run_cli("experiments.generate", [f"checkpoint={path('v3')}", "prompt=x", "top_p=2"], cwd=ROOT)
    assert proc.returncode == 2 and "top_p: must be in (0, 1]" in proc.stderr and "Traceback" not in proc.stderr

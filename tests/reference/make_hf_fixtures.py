"""Build tiny random Hugging Face DeepSeek checkpoints and transformers' outputs for them.

Run in a separate venv (torch and transformers are never dependencies of the package or the tests):

    python -m venv /tmp/hfvenv
    /tmp/hfvenv/bin/pip install torch==2.13.0 transformers==5.24.0 safetensors accelerate tokenizers numpy
    /tmp/hfvenv/bin/python tests/reference/make_hf_fixtures.py            # all fixtures
    /tmp/hfvenv/bin/python tests/reference/make_hf_fixtures.py v3 v2_lite # some

Each fixture is a directory under tests/reference/fixtures/NAME/ holding a checkpoint as a user
would download it (config.json, *.safetensors, model.safetensors.index.json where sharded), a tiny
tokenizer.json, and reference.npz: transformers' float32 outputs (eager attention) for a fixed
prompt. manifest.json records the versions, seeds and file hashes. Everything is seeded, so a
rerun with the same versions writes the same bytes on the same machine; on another CPU the
checkpoints and configs are the same bytes but transformers' float32 outputs may differ in their
last bits (v3_fp8 and v32 rebuilt on another VM: up to 7e-7 off), so rebuild only the fixtures
you add or change (name them).

reference.npz holds:
  prompt [T] int32, logits [T,N]: one forward over the prompt;
  hidden [Y+1,T,D]: the embedding output and each decoder layer's output (transformers'
    output_hidden_states; its last entry is after the final norm);
  prefill_len (), decode_logits [T-P,N]: a prefill of prompt[:P] with a cache, then one decode
    step per remaining prompt token (teacher forcing), the logits of each step;
  rope_inv_freq [R/2], rope_attention_scaling (): the rotary embedding's frequencies and the factor
    on cos/sin; softmax_scale (): the attention's score scale;
  router_logits [Z,E], router_weights [Z,J], router_indices [Z,J]: the first MoE layer's router
    on random hidden states (top-k in transformers' order, unsorted);
  index_topk [Y,T,Z] (DeepseekV32 only): each layer's DSA indexer selection for the prompt.

To add a fixture, write a function that returns a Fixture and register it in FIXTURES;
`build_fixture` does the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from safetensors.torch import save_file

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
PROMPT = [3, 17, 42, 5, 88, 23, 61, 9, 70, 14, 33, 50]
PREFILL_LEN = 7
ROUTER_TOKENS = 64
WEIGHT_STD = 0.15  # large enough that each mapping moves the logits well above float32 noise
FP8_BLOCK = (128, 128)  # DeepSeek-V3's weight_block_size
FP8_MAX = 448.0  # largest finite float8_e4m3fn
# Names of linear weights that DeepSeek's FP8 checkpoints store quantized: embeddings, norms, the
# router and the lm head stay in bf16 there, and so does V3.2's indexer head-weight projection
# (weights_proj), while the indexer's query and key projections (wq_b, wk) are FP8.
FP8_SUFFIXES = ("_proj.weight", "kv_a_proj_with_mqa.weight", ".indexer.wq_b.weight", ".indexer.wk.weight")
FP8_KEPT = (".mlp.gate.", ".indexer.weights_proj.")  # match a suffix above, but stay unquantized
TOKENIZER_TEXT = (
    "the agent reads the cache and the cache holds the prefix; a turn appends tokens and the next "
    "turn reads them back. prefill engines compute, decode engines generate, and storage sits "
    "between them. "
) * 4


@dataclasses.dataclass
class Fixture:
    name: str
    model_cls: type
    config: transformers.PretrainedConfig
    seed: int
    fp8: bool = False  # store the quantizable weights as FP8 with weight_scale_inv
    shard_bytes: int = 0  # > 0: split into shards of about this size with an index file
    config_json: Callable[[dict], dict] | None = None  # rewrite config.json (e.g. DeepSeek's own keys)
    mtp_layers: int = 0  # extra layers >= num_hidden_layers written to the files (loaders skip them)
    note: str = ""


def yarn(theta, factor, orig, mscale, mscale_all_dim):
    return {
        "rope_type": "yarn",
        "rope_theta": theta,
        "factor": factor,
        "original_max_position_embeddings": orig,
        "mscale": mscale,
        "mscale_all_dim": mscale_all_dim,
        "beta_fast": 32,
        "beta_slow": 1,
    }


def _v3_config(**kw):
    base = dict(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=160,  # > 128 so the FP8 variant has zero-padded edge blocks
        moe_intermediate_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        n_shared_experts=1,
        n_routed_experts=8,
        kv_lora_rank=16,
        q_lora_rank=24,
        qk_rope_head_dim=8,
        v_head_dim=12,
        qk_nope_head_dim=12,
        n_group=4,
        topk_group=2,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        norm_topk_prob=True,
        routed_scaling_factor=2.5,
        rms_norm_eps=1e-5,  # != the latent norms' fixed 1e-6, so using rms_norm_eps there shows
        max_position_embeddings=256,
        rope_interleave=True,
        # mscale != mscale_all_dim: both the cos/sin factor and the softmax factor are non-trivial
        rope_parameters=yarn(10000.0, 4.0, 64, 1.0, 0.8),
        num_nextn_predict_layers=1,
        bos_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
    base.update(kw)
    return transformers.DeepseekV3Config(**base)


def _v2_config(**kw):
    base = dict(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        n_shared_experts=2,
        n_routed_experts=8,
        kv_lora_rank=16,
        q_lora_rank=None,  # V2-Lite: no query compression
        qk_rope_head_dim=8,
        v_head_dim=12,
        qk_nope_head_dim=12,
        num_experts_per_tok=3,
        first_k_dense_replace=1,
        norm_topk_prob=False,
        topk_method="greedy",
        n_group=None,
        topk_group=None,
        routed_scaling_factor=1.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=256,
        rope_parameters=yarn(10000.0, 4.0, 64, 0.707, 0.707),  # V2-Lite's mscale values
        bos_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
    base.update(kw)
    return transformers.DeepseekV2Config(**base)


def _deepseek_style_v2(cfg: dict) -> dict:
    """config.json as DeepSeek's own V2 repos write it (rope_scaling + rope_theta, scoring_func,
    moe_layer_freq, training-only keys), the form a user downloads."""
    rp = cfg.pop("rope_parameters")
    out = {k: v for k, v in cfg.items() if k not in ("head_dim", "qk_head_dim", "dtype", "mlp_bias")}
    out["rope_theta"] = rp["rope_theta"]
    out["rope_scaling"] = {
        "type": "yarn",
        "factor": rp["factor"],
        "original_max_position_embeddings": rp["original_max_position_embeddings"],
        "mscale": rp["mscale"],
        "mscale_all_dim": rp["mscale_all_dim"],
        "beta_fast": rp["beta_fast"],
        "beta_slow": rp["beta_slow"],
    }
    out.update(scoring_func="softmax", moe_layer_freq=1, aux_loss_alpha=0.001, seq_aux=True, torch_dtype="float32")
    out["n_group"] = out["n_group"] or 1
    out["topk_group"] = out["topk_group"] or 1
    return out


def v3() -> Fixture:
    return Fixture("v3", transformers.DeepseekV3ForCausalLM, _v3_config(), seed=3, mtp_layers=1,
                   note="V3: q_lora, yarn (mscale 1.0, mscale_all_dim 0.8), interleaved rope, 4 groups keep 2, "
                   "selection bias, norm_topk_prob, rms_norm_eps 1e-5, an MTP layer in the files")  # fmt: skip


def v3_fp8() -> Fixture:
    return Fixture("v3_fp8", transformers.DeepseekV3ForCausalLM, _v3_config(), seed=4, fp8=True,
                   note="v3's shape with FP8 e4m3 weights and 128x128 weight_scale_inv blocks (edge blocks "
                   "zero-padded); reference = transformers on the dequantized weights")  # fmt: skip


def v2_lite() -> Fixture:
    return Fixture("v2_lite", transformers.DeepseekV2ForCausalLM, _v2_config(), seed=2, shard_bytes=40_000,
                   config_json=_deepseek_style_v2,
                   note="V2-Lite: no q_lora, softmax greedy routing, norm_topk_prob false, yarn (mscale 0.707), "
                   "sharded with an index file, DeepSeek's own config.json keys")  # fmt: skip


def v2_group() -> Fixture:
    cfg = _v2_config(q_lora_rank=24, topk_method="group_limited_greedy", n_group=4, topk_group=2,
                     routed_scaling_factor=1.5, num_experts_per_tok=2)  # fmt: skip
    return Fixture("v2_group", transformers.DeepseekV2ForCausalLM, cfg, seed=5,
                   note="V2 (236B's rule): q_lora, softmax group_limited_greedy routing, 4 groups keep 2")  # fmt: skip


def _v32_config():
    base = {k: v for k, v in _v3_config().to_dict().items() if k in transformers.DeepseekV32Config.__annotations__}
    # 16 index heads: with few heads the relu zeroes every head for some keys, and equal (zero) scores
    # make the top-k a coin toss that transformers itself breaks differently in prefill and decode.
    base.update(num_hidden_layers=3, index_n_heads=16, index_head_dim=16, index_topk=4)
    return transformers.DeepseekV32Config(
        **{k: v for k, v in base.items() if k not in ("head_dim", "layer_types", "mlp_layer_types")}
    )


def v32() -> Fixture:
    return Fixture("v32", transformers.DeepseekV32ForCausalLM, _v32_config(), seed=6,
                   note="V3.2: v3's shape plus DSA (indexer 16 heads x 16, top-4 of the 12-token prompt), "
                   "yarn (mscale 1.0, mscale_all_dim 0.8), interleaved main rope, half-split indexer rope")  # fmt: skip


def v32_fp8() -> Fixture:
    return Fixture("v32_fp8", transformers.DeepseekV32ForCausalLM, _v32_config(), seed=7, fp8=True,
                   note="v32's shape with FP8 weights as v3_fp8's, the indexer's wq_b and wk included "
                   "(weights_proj stays unquantized, as in DeepSeek's files); reference = transformers on "
                   "the dequantized weights")  # fmt: skip


# Register new fixtures here (name -> builder).
FIXTURES: dict[str, Callable[[], Fixture]] = {
    "v3": v3,
    "v3_fp8": v3_fp8,
    "v2_lite": v2_lite,
    "v2_group": v2_group,
    "v32": v32,
    "v32_fp8": v32_fp8,
}


# ---- building ------------------------------------------------------------------------------


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every tensor random (norm weights and the selection bias too, so a swapped or skipped
    mapping of any of them moves the logits)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.state_dict(keep_vars=True).items()):
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("e_score_correction_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(WEIGHT_STD * torch.randn(p.shape, generator=g))


def quantize_fp8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's block quantization: one float32 scale per 128x128 block (edge blocks partial),
    w ~= fp8 * scale_inv. Returns (fp8 weight, scale_inv [ceil(O/128), ceil(I/128)])."""
    bo, bi = FP8_BLOCK
    o, i = w.shape
    no, ni = math.ceil(o / bo), math.ceil(i / bi)
    padded = torch.zeros(no * bo, ni * bi)
    padded[:o, :i] = w
    blocks = padded.view(no, bo, ni, bi)
    amax = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12)
    scale_inv = amax / FP8_MAX
    q = (blocks / scale_inv[:, None, :, None]).to(torch.float8_e4m3fn)
    return q.view(no * bo, ni * bi)[:o, :i].contiguous(), scale_inv.float()


def dequantize_fp8(q: torch.Tensor, scale_inv: torch.Tensor) -> torch.Tensor:
    bo, bi = FP8_BLOCK
    s = scale_inv.repeat_interleave(bo, 0).repeat_interleave(bi, 1)[: q.shape[0], : q.shape[1]]
    return q.float() * s


def to_file_names(state: dict) -> dict:
    """transformers 5 keeps each layer's experts fused (experts.gate_up_proj [E,2F,D],
    experts.down_proj [E,D,F]); checkpoints on disk, DeepSeek's and what save_pretrained writes,
    have one tensor per expert and projection (experts.e.gate_proj.weight [F,D], ...)."""
    out = {}
    for k, v in state.items():
        if k.endswith(".mlp.experts.gate_up_proj"):
            base, f = k[: -len("gate_up_proj")], v.shape[1] // 2
            for e in range(v.shape[0]):
                out[f"{base}{e}.gate_proj.weight"] = v[e, :f].clone()
                out[f"{base}{e}.up_proj.weight"] = v[e, f:].clone()
        elif k.endswith(".mlp.experts.down_proj"):
            base = k[: -len("down_proj")]
            for e in range(v.shape[0]):
                out[f"{base}{e}.down_proj.weight"] = v[e].clone()
        else:
            out[k] = v
    return out


def from_file_names(files_state: dict, like: dict) -> dict:
    """The inverse of to_file_names, for the keys of `like` (a transformers state dict)."""
    out = {}
    for k, v in like.items():
        if k.endswith(".mlp.experts.gate_up_proj"):
            base = k[: -len("gate_up_proj")]
            out[k] = torch.stack([torch.cat([files_state[f"{base}{e}.gate_proj.weight"],
                                             files_state[f"{base}{e}.up_proj.weight"]]) for e in range(v.shape[0])])  # fmt: skip
        elif k.endswith(".mlp.experts.down_proj"):
            base = k[: -len("down_proj")]
            out[k] = torch.stack([files_state[f"{base}{e}.down_proj.weight"] for e in range(v.shape[0])])
        else:
            out[k] = files_state[k]
    return out


def mtp_tensors(state: dict, layer: int, src_layer: int) -> dict:
    """Stand-ins for DeepSeek's MTP layer (model.layers.{num_hidden_layers}.*): a copy of a decoder
    layer plus the MTP-only projections, so a loader must skip them by index, not by failing."""
    out = {}
    prefix = f"model.layers.{src_layer}."
    for k, v in state.items():
        if k.startswith(prefix):
            out[f"model.layers.{layer}." + k[len(prefix) :]] = v.clone()
    d = state["model.norm.weight"].shape[0]
    out[f"model.layers.{layer}.eh_proj.weight"] = torch.zeros(d, 2 * d)
    out[f"model.layers.{layer}.enorm.weight"] = torch.ones(d)
    out[f"model.layers.{layer}.hnorm.weight"] = torch.ones(d)
    out[f"model.layers.{layer}.shared_head.norm.weight"] = torch.ones(d)
    return out


def write_safetensors(directory: Path, tensors: dict, shard_bytes: int) -> list[str]:
    """One model.safetensors, or shards model-0000i-of-0000n.safetensors plus the index file."""
    names = sorted(tensors)
    if not shard_bytes:
        save_file({k: tensors[k].contiguous() for k in names}, directory / "model.safetensors", {"format": "pt"})
        return ["model.safetensors"]
    shards, cur, size = [], [], 0
    for k in names:
        nbytes = tensors[k].numel() * tensors[k].element_size()
        if cur and size + nbytes > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append(k)
        size += nbytes
    shards.append(cur)
    files, weight_map = [], {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in shard}, directory / fname, {"format": "pt"})
        files.append(fname)
        weight_map.update({k: fname for k in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return files + ["model.safetensors.index.json"]


def write_tokenizer(directory: Path, vocab_size: int) -> None:
    """A byte-level BPE trained on a fixed text, vocabulary at most the model's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<bos>", "<eos>", "<unk>"],  # ids 0, 1, 2 = the configs' bos/eos
        initial_alphabet=sorted(set(pre_tokenizers.ByteLevel.alphabet()) & set(_byte_chars(TOKENIZER_TEXT))),
        show_progress=False,
    )
    tok.train_from_iterator([TOKENIZER_TEXT], trainer=trainer)
    assert tok.get_vocab_size() <= vocab_size, tok.get_vocab_size()
    tok.save(str(directory / "tokenizer.json"))


def _byte_chars(text: str) -> list[str]:
    """The ByteLevel alphabet characters the text's bytes map to."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, map(chr, cs)))
    return [table[b] for b in text.encode()]


@torch.no_grad()
def reference_outputs(model, cfg) -> dict:
    model.eval()
    prompt = torch.tensor([PROMPT])
    out = model(prompt, output_hidden_states=True, use_cache=False)
    ref = {
        "prompt": np.asarray(PROMPT, np.int32),
        "logits": out.logits[0].float().numpy(),
        "hidden": torch.stack([h[0] for h in out.hidden_states]).float().numpy(),
        "prefill_len": np.int32(PREFILL_LEN),
    }
    step = model(prompt[:, :PREFILL_LEN], use_cache=True)
    cache, decode = step.cache, []
    for t in range(PREFILL_LEN, len(PROMPT)):
        step = model(prompt[:, t : t + 1], cache=cache, use_cache=True)
        cache = step.cache
        decode.append(step.logits[0, -1].float().numpy())
    ref["decode_logits"] = np.stack(decode)
    rot = model.model.rotary_emb
    ref["rope_inv_freq"] = rot.inv_freq.float().numpy()
    ref["rope_attention_scaling"] = np.float64(rot.attention_scaling)
    ref["softmax_scale"] = np.float64(model.model.layers[0].self_attn.scaling)
    moe = model.model.layers[cfg.first_k_dense_replace].mlp
    g = torch.Generator().manual_seed(1234)
    h = torch.randn(ROUTER_TOKENS, cfg.hidden_size, generator=g)
    logits, weights, indices = moe.gate(h)
    ref["router_hidden"] = h.numpy()
    ref["router_logits"] = logits.float().numpy()
    ref["router_weights"] = weights.float().numpy()
    ref["router_indices"] = indices.numpy().astype(np.int32)
    if hasattr(model.model.layers[0].self_attn, "indexer"):
        ref["index_topk"] = index_topk(model, prompt)
    return ref


@torch.no_grad()
def index_topk(model, prompt) -> np.ndarray:
    """DSA: each layer's indexer selection for the prompt, [Y, T, Z] int32 (transformers' order;
    where a query sees fewer than Z keys the rest point at keys it may not see)."""
    picked = []
    hooks = [layer.self_attn.indexer.register_forward_hook(lambda mod, args, out: picked.append(out[0].numpy()))
             for layer in model.model.layers]  # fmt: skip
    model(prompt, use_cache=False)
    for h in hooks:
        h.remove()
    return np.stack(picked).astype(np.int32)


def build_fixture(fx: Fixture, root: Path) -> dict:
    torch.manual_seed(fx.seed)
    directory = root / fx.name
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    cfg = fx.config
    cfg._attn_implementation = "eager"
    model = fx.model_cls(cfg).float()
    randomise(model, fx.seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    files_state = to_file_names(state)
    if fx.fp8:
        dequantized = dict(files_state)
        for k in sorted(files_state):
            if k.startswith("model.layers.") and k.endswith(FP8_SUFFIXES) and not any(x in k for x in FP8_KEPT):
                q, s = quantize_fp8(files_state[k])
                files_state[k] = q
                files_state[k + "_scale_inv"] = s
                dequantized[k] = dequantize_fp8(q, s)  # transformers runs the weights the file encodes
        model.load_state_dict(from_file_names(dequantized, state))
    plain = to_file_names(state)
    for m in range(fx.mtp_layers):
        files_state.update(mtp_tensors(plain, cfg.num_hidden_layers + m, cfg.num_hidden_layers - 1))

    files = write_safetensors(directory, files_state, fx.shard_bytes)
    config = json.loads(cfg.to_json_string())  # what save_pretrained writes: fields at their defaults left out
    config["architectures"] = [fx.model_cls.__name__]
    config.pop("_attn_implementation_autoset", None)
    if fx.fp8:
        config["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": list(FP8_BLOCK),
        }
    if fx.config_json:
        config = fx.config_json(config)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_tokenizer(directory, cfg.vocab_size)

    if fx.fp8:
        ref_model = model  # transformers' FP8 path wants a GPU; the dequantized weights are loaded above
    else:
        # The reference runs the checkpoint as transformers reads it back from disk, so the
        # config.json as written (DeepSeek's own keys included) is what is checked.
        ref_model = fx.model_cls.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32)
    ref = reference_outputs(ref_model, ref_model.config)
    np.savez(directory / "reference.npz", **ref)
    files += ["config.json", "tokenizer.json", "reference.npz"]
    return {
        "model_class": fx.model_cls.__name__,
        "seed": fx.seed,
        "note": fx.note,
        "files": {f: hashlib.sha256((directory / f).read_bytes()).hexdigest() for f in sorted(files)},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"fixtures to build (default all: {', '.join(FIXTURES)})")
    ap.add_argument("--out", type=Path, default=FIXTURES_DIR)
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in FIXTURES]
    if unknown:
        print(f"unknown fixture(s) {unknown}; known: {', '.join(FIXTURES)}", file=sys.stderr)
        return 2
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"fixtures": {}}
    for name in args.names or list(FIXTURES):
        manifest["fixtures"][name] = build_fixture(FIXTURES[name](), args.out)
        print(f"{name}: {sum((args.out / name / f).stat().st_size for f in manifest['fixtures'][name]['files'])} bytes")
    manifest["versions"] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    manifest["script"] = "tests/reference/make_hf_fixtures.py"
    manifest["prompt"] = PROMPT
    manifest["prefill_len"] = PREFILL_LEN
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

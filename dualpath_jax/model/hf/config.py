"""config.json of a Hugging Face DeepSeek-V2 / V3 / V3.2 checkpoint -> ModelConfig, every field checked.

Both spellings of the rope settings are read: transformers 5's `rope_parameters` and DeepSeek's
own `rope_scaling` + `rope_theta`. A field with a value the model does not implement, a missing
architecture field, or a field this module does not know is a CheckpointError naming the field
and the file. Fields that do not change the function computed (token ids, training-only
settings, metadata) are listed in IGNORED.
"""

from __future__ import annotations

import dataclasses
import json
import os

from ..config import ModelConfig, RopeYarn


class CheckpointError(ValueError):
    """A checkpoint the loader refuses: the message names the file and the field or tensor."""


MODEL_TYPES = ("deepseek_v2", "deepseek_v3", "deepseek_v32")
# DeepSeek-V3.2's sparse attention (model/indexer.py): required for deepseek_v32, refused elsewhere.
DSA_FIELDS = ("index_topk", "index_head_dim", "index_n_heads")
REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "moe_intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "kv_lora_rank",
    "q_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "n_routed_experts",
    "n_shared_experts",
    "num_experts_per_tok",
    "first_k_dense_replace",
    "routed_scaling_factor",
    "rms_norm_eps",
    "norm_topk_prob",
)
# Read for their value (checked below) besides REQUIRED.
CHECKED = (
    "model_type",
    "hidden_act",
    "attention_bias",
    "mlp_bias",
    "tie_word_embeddings",
    "num_key_value_heads",
    "moe_layer_freq",
    "n_group",
    "topk_group",
    "topk_method",
    "scoring_func",
    "rope_parameters",
    "rope_scaling",
    "rope_theta",
    "rope_interleave",
    "quantization_config",
    "num_nextn_predict_layers",
    "pretraining_tp",
    "head_dim",
    "qk_head_dim",
    "max_position_embeddings",
    *DSA_FIELDS,
    "layer_types",
    "mlp_layer_types",
)
# No effect on the function computed: token ids and generation defaults, training-only settings,
# provenance.
IGNORED = (
    "architectures",
    "auto_map",
    "transformers_version",
    "_name_or_path",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "use_cache",
    "initializer_range",
    "attention_dropout",
    "aux_loss_alpha",
    "seq_aux",
    "ep_size",
    "output_router_logits",
    "router_aux_loss_coef",
    "dtype",
    "torch_dtype",
)
YARN_KEYS = (
    "rope_type",
    "type",
    "rope_theta",
    "factor",
    "original_max_position_embeddings",
    "beta_fast",
    "beta_slow",
    "mscale",
    "mscale_all_dim",
    "truncate",
    "attention_factor",
)


@dataclasses.dataclass(frozen=True)
class HFConfig:
    """What the loader needs beyond the ModelConfig."""

    model: ModelConfig
    model_type: str
    rope_interleaved: bool  # rope dims paired (2i, 2i+1): the loader permutes them (weights.py)
    fp8_block: tuple[int, int] | None  # weight_block_size of FP8 weights, None if unquantized
    mtp_layers: int  # layers >= num_hidden_layers in the files (multi-token prediction), skipped
    source: str  # the config.json path


def _fail(source: str, field: str, problem: str):
    raise CheckpointError(f"{source}: field {field!r}: {problem}")


def _rope(cfg: dict, source: str) -> tuple[float, RopeYarn | None]:
    if cfg.get("rope_parameters") is not None:
        rp, where = dict(cfg["rope_parameters"]), "rope_parameters"
        theta = rp.get("rope_theta", cfg.get("rope_theta"))
    else:
        rp, where = dict(cfg.get("rope_scaling") or {}), "rope_scaling"
        theta = cfg.get("rope_theta")
    if theta is None:
        _fail(source, "rope_theta", "missing")
    kind = rp.get("rope_type", rp.get("type", "default"))
    if kind == "default":
        extra = sorted(set(rp) - {"rope_type", "type", "rope_theta"})
        if extra:
            _fail(source, f"{where}.{extra[0]}", "set for plain (default) rope, which takes no parameters")
        return float(theta), None
    if kind != "yarn":
        key = "rope_type" if "rope_type" in rp else "type"
        _fail(source, f"{where}.{key}", f"{kind!r} is not implemented (only 'default' and 'yarn')")
    for key in sorted(rp):
        if key not in YARN_KEYS:
            _fail(source, f"{where}.{key}", "unknown yarn parameter")
    if rp.get("attention_factor") is not None:
        _fail(source, f"{where}.attention_factor", "an explicit attention factor is not implemented")
    if rp.get("truncate", True) is not True:
        _fail(source, f"{where}.truncate", "only truncate=true (DeepSeek's) is implemented")
    for key in ("factor", "original_max_position_embeddings"):
        if rp.get(key) is None:
            _fail(source, f"{where}.{key}", "missing (needed for yarn)")
    return float(theta), RopeYarn(
        factor=float(rp["factor"]),
        original_max_position=int(rp["original_max_position_embeddings"]),
        beta_fast=float(rp.get("beta_fast") or 32),
        beta_slow=float(rp.get("beta_slow") or 1),
        mscale=float(rp.get("mscale") or 0.0),
        mscale_all_dim=float(rp.get("mscale_all_dim") or 0.0),
    )


def _fp8_block(cfg: dict, source: str) -> tuple[int, int] | None:
    q = cfg.get("quantization_config")
    if q is None:
        return None
    want = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic"}
    for key in sorted(q):
        if key not in (*want, "weight_block_size"):
            _fail(source, f"quantization_config.{key}", "unknown quantization setting")
    for key, value in want.items():
        if q.get(key, value) != value:
            _fail(source, f"quantization_config.{key}", f"{q[key]!r} is not supported (only {value!r})")
    block = q.get("weight_block_size")
    if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
        _fail(source, "quantization_config.weight_block_size", f"{block!r} is not two positive integers")
    return int(block[0]), int(block[1])


def _dsa(cfg: dict, model_type: str, source: str) -> dict:
    """ModelConfig's index_* fields; V3.2's per-layer type lists checked against what it models."""
    n, dense = cfg["num_hidden_layers"], cfg["first_k_dense_replace"]
    mlp = cfg.get("mlp_layer_types")
    if mlp is not None and list(mlp) != ["dense"] * min(dense, n) + ["sparse"] * max(n - dense, 0):
        _fail(source, "mlp_layer_types", f"{mlp!r} is not first_k_dense_replace={dense} dense layers then MoE")
    if model_type != "deepseek_v32":
        for key in (*DSA_FIELDS, "layer_types"):
            if key in cfg:
                _fail(source, key, f"is a deepseek_v32 field (sparse attention), not {model_type}'s")
        return {}
    for key in DSA_FIELDS:
        if not isinstance(cfg.get(key), int) or cfg[key] <= 0:
            _fail(source, key, f"{cfg.get(key)!r}: deepseek_v32 needs a positive integer")
    types = cfg.get("layer_types")
    if types is not None and list(types) != ["indexed_attention"] * n:
        _fail(source, "layer_types", f"{types!r}: only every layer 'indexed_attention' (DSA) is implemented")
    return {
        "index_topk": cfg["index_topk"],
        "index_head_dim": cfg["index_head_dim"],
        "index_n_heads": cfg["index_n_heads"],
    }


def _router(cfg: dict, model_type: str, source: str) -> str:
    if model_type in ("deepseek_v3", "deepseek_v32"):
        method, scoring = cfg.get("topk_method", "noaux_tc"), "sigmoid"
        allowed = ("noaux_tc",)
    else:
        method, scoring = cfg.get("topk_method", "greedy"), "softmax"
        allowed = ("greedy", "group_limited_greedy")
        if cfg["norm_topk_prob"]:
            # transformers' DeepseekV2 ignores it and DeepSeek's code renormalises: refused
            # rather than guessed (every published V2 config has false).
            _fail(source, "norm_topk_prob", "true is not supported for deepseek_v2 (transformers ignores it)")
    if method not in allowed:
        _fail(source, "topk_method", f"{method!r} is not implemented for {model_type} (only {', '.join(allowed)})")
    if cfg.get("scoring_func", scoring) != scoring:
        _fail(source, "scoring_func", f"{cfg['scoring_func']!r}: {model_type} scores experts with {scoring}")
    return method


def read_config(directory: str | os.PathLike, *, dtype: str = "bfloat16") -> HFConfig:
    source = os.path.join(os.fspath(directory), "config.json")
    if not os.path.isfile(source):
        raise CheckpointError(f"{source}: no config.json in the checkpoint directory")
    try:
        with open(source) as f:
            cfg = json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{source}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{source}: not a JSON object")
    for key in sorted(cfg):
        if key not in REQUIRED + CHECKED + IGNORED:
            _fail(source, key, "unknown field (not mapped by the loader)")
    model_type = cfg.get("model_type")
    if model_type not in MODEL_TYPES:
        _fail(source, "model_type", f"{model_type!r} is not supported (only {', '.join(MODEL_TYPES)})")
    for key in REQUIRED:
        if key not in cfg:
            _fail(source, key, "missing")
    for key, value in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
        if cfg.get(key, value) != value:
            _fail(source, key, f"{cfg[key]!r} is not implemented (only {value!r})")
    if cfg.get("tie_word_embeddings", False):
        _fail(source, "tie_word_embeddings", "true is not supported (DeepSeek models have a separate lm_head)")
    heads = cfg["num_attention_heads"]
    if cfg.get("num_key_value_heads") not in (None, heads):
        _fail(source, "num_key_value_heads", f"{cfg['num_key_value_heads']} != num_attention_heads {heads} (MLA)")
    if cfg.get("moe_layer_freq", 1) != 1:
        _fail(source, "moe_layer_freq", f"{cfg['moe_layer_freq']} is not supported (only 1)")
    if cfg.get("pretraining_tp", 1) != 1:
        _fail(source, "pretraining_tp", f"{cfg['pretraining_tp']} is not supported (only 1)")
    rope_dim, nope_dim = cfg["qk_rope_head_dim"], cfg["qk_nope_head_dim"]
    if cfg.get("head_dim") not in (None, rope_dim):
        _fail(source, "head_dim", f"{cfg['head_dim']} != qk_rope_head_dim {rope_dim}")
    if cfg.get("qk_head_dim") not in (None, rope_dim + nope_dim):
        _fail(source, "qk_head_dim", f"{cfg['qk_head_dim']} != qk_nope_head_dim + qk_rope_head_dim")
    interleaved = cfg.get("rope_interleave", True)
    if model_type == "deepseek_v2" and interleaved is not True:
        _fail(source, "rope_interleave", "deepseek_v2 always pairs rope dims (2i, 2i+1)")
    theta, yarn = _rope(cfg, source)
    method = _router(cfg, model_type, source)
    dsa = _dsa(cfg, model_type, source)
    mtp = cfg.get("num_nextn_predict_layers") or 0
    notes = [f"loaded from {os.path.abspath(os.fspath(directory))} ({model_type})"]
    if mtp:
        notes.append(f"{mtp} MTP layer(s) in the files are not loaded (multi-token prediction is not modelled)")
    try:
        model = ModelConfig(
            name=f"hf:{os.path.basename(os.path.abspath(os.fspath(directory)))}",
            vocab_size=cfg["vocab_size"],
            d_model=cfg["hidden_size"],
            n_layers=cfg["num_hidden_layers"],
            n_heads=heads,
            q_lora_rank=cfg["q_lora_rank"] or 0,
            kv_lora_rank=cfg["kv_lora_rank"],
            qk_nope_dim=nope_dim,
            qk_rope_dim=rope_dim,
            v_head_dim=cfg["v_head_dim"],
            dense_ffn=cfg["intermediate_size"],
            first_k_dense=cfg["first_k_dense_replace"],
            n_routed_experts=cfg["n_routed_experts"],
            n_shared_experts=cfg["n_shared_experts"],
            expert_ffn=cfg["moe_intermediate_size"],
            top_k=cfg["num_experts_per_tok"],
            n_group=cfg.get("n_group") or 1,
            topk_group=cfg.get("topk_group") or 1,
            routed_scaling_factor=float(cfg["routed_scaling_factor"]),
            router_method=method,
            norm_topk_prob=bool(cfg["norm_topk_prob"]),
            rope_theta=theta,
            rope_yarn=yarn,
            rms_eps=float(cfg["rms_norm_eps"]),
            dtype=dtype,
            capacity_factor=0.0,  # a loaded checkpoint never drops tokens
            **dsa,
            assumed="; ".join(notes),
        )
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: {e}") from None
    return HFConfig(
        model=model,
        model_type=model_type,
        rope_interleaved=bool(interleaved),
        fp8_block=_fp8_block(cfg, source),
        mtp_layers=int(mtp),
        source=source,
    )

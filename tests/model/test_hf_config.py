"""config.json mapping: each fixture's fields land where they should; a field the model does not
implement, an unknown or a missing one is an error naming the field and the file; the CLI
exits 2 on one, without a traceback."""

import json
import shutil

import pytest

from dualpath_jax.model.config import RopeYarn
from dualpath_jax.model.hf import CheckpointError, read_config
from dualpath_jax.model.hf.__main__ import main

from .hf_fixtures import path


def test_fixture_configs_map_every_feature():
    v3 = read_config(path("v3"))
    m = v3.model
    assert (m.q_lora_rank, m.kv_lora_rank, m.n_group, m.topk_group, m.top_k) == (24, 16, 4, 2, 2)
    assert m.router_method == "noaux_tc" and m.norm_topk_prob and m.rms_eps == 1e-5
    assert m.rope_yarn == RopeYarn(factor=4.0, original_max_position=64, mscale=1.0, mscale_all_dim=0.8)
    assert v3.rope_interleaved and v3.mtp_layers == 1 and v3.fp8_block is None and m.capacity_factor == 0.0
    assert read_config(path("v3_fp8")).fp8_block == (128, 128)
    v32, v32_fp8 = read_config(path("v32")), read_config(path("v32_fp8"))
    assert v32.fp8_block is None and v32_fp8.fp8_block == (128, 128)
    same = dict(name=v32.model.name, assumed=v32.model.assumed)  # (the directory's name and path)
    assert v32_fp8.model.replace(**same) == v32.model and v32.model.is_dsa  # one shape, v32's compiles
    v2 = read_config(path("v2_lite")).model  # DeepSeek's own keys: rope_scaling, rope_theta, scoring_func
    assert (v2.q_lora_rank, v2.router_method, v2.norm_topk_prob) == (0, "greedy", False)
    assert v2.rope_yarn.mscale == v2.rope_yarn.mscale_all_dim == 0.707
    assert read_config(path("v2_group")).model.router_method == "group_limited_greedy"


def _with(tmp_path, name, edit):
    d = tmp_path / name
    shutil.copytree(path(name), d)
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


BAD = [
    ("v3", lambda c: c["rope_parameters"].update(rope_type="linear"), "rope_parameters.rope_type"),
    ("v2_lite", lambda c: c["rope_scaling"].update(type="dynamic"), "rope_scaling.type"),
    ("v3", lambda c: c.update(hidden_act="gelu"), "hidden_act"),
    ("v3", lambda c: c.update(model_type="deepseek_v4"), "model_type"),
    ("v3", lambda c: c.update(model_type="deepseek_v32"), "index_topk"),  # V3.2 without its indexer
    ("v3", lambda c: c.update(index_topk=4), "index_topk"),  # a V3.2 field on V3
    ("v32", lambda c: c.update(index_n_heads=0), "index_n_heads"),
    ("v32", lambda c: c["layer_types"].__setitem__(1, "full_attention"), "layer_types"),
    ("v32", lambda c: c.update(mlp_layer_types=["dense"] * 3), "mlp_layer_types"),
    ("v3", lambda c: c.update(frobnicate=1), "frobnicate"),
    ("v3", lambda c: c.pop("kv_lora_rank"), "kv_lora_rank"),
    ("v3", lambda c: c.update(topk_method="greedy"), "topk_method"),
    ("v2_lite", lambda c: c.update(norm_topk_prob=True), "norm_topk_prob"),
    ("v2_lite", lambda c: c.update(scoring_func="sigmoid"), "scoring_func"),
    ("v3", lambda c: c.update(tie_word_embeddings=True), "tie_word_embeddings"),
    ("v3_fp8", lambda c: c["quantization_config"].update(fmt="e5m2"), "quantization_config.fmt"),
    (
        "v32_fp8",
        lambda c: c["quantization_config"].update(weight_block_size=[128]),
        "quantization_config.weight_block_size",
    ),
    ("v3", lambda c: c.update(num_key_value_heads=1), "num_key_value_heads"),
]


@pytest.mark.parametrize("name,edit,field", BAD, ids=[b[2] for b in BAD])
def test_unsupported_field_is_an_error_naming_it(tmp_path, name, edit, field):
    d = _with(tmp_path, name, edit)
    with pytest.raises(CheckpointError, match=f"config.json: field '{field}'"):
        read_config(d)


def test_cli_exits_2_naming_the_field(tmp_path, capsys):
    d = _with(tmp_path, "v3", lambda c: c["rope_parameters"].update(rope_type="longrope"))
    assert main([str(d)]) == 2  # returned, not raised: no traceback
    err = capsys.readouterr().err
    assert "field 'rope_parameters.rope_type'" in err and str(d) in err
    assert main([str(tmp_path / "missing")]) == 2
    assert "no config.json" in capsys.readouterr().err

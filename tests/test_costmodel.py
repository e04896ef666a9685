import pytest

from dualpath_jax.config import ModelSpec, from_dict
from dualpath_jax.costmodel import CostModel, ModelCounts, calibrate, causal_keys

from .helpers import load, small_config


def brute_keys(cached, new, cap=None):
    return sum(min(p, cap) if cap else p for p in range(cached + 1, cached + new + 1))


@pytest.mark.parametrize(
    "cached, new, cap", [(0, 10, None), (5, 7, None), (0, 10, 4), (3, 9, 6), (20, 5, 6), (6, 1, 6), (0, 1, 1)]
)
def test_causal_keys_matches_brute_force(cached, new, cap):
    assert causal_keys(cached, new, cap) == brute_keys(cached, new, cap)


def counts(name):
    return ModelCounts(from_dict(ModelSpec, load("model", name)))


def test_parameter_counts_of_public_models():
    # Published totals: DeepSeek-V3/V3.2 671B (685B with the MTP module), Qwen2.5-32B 32.8B.
    assert counts("dsv3").total_params == pytest.approx(671e9, rel=0.01)
    assert counts("ds660b").total_params == pytest.approx(671e9, rel=0.02)
    assert counts("dsv3").active_params == pytest.approx(37e9, rel=0.05)
    assert counts("qwen32b").total_params == pytest.approx(32.8e9, rel=0.02)
    assert counts("ds27b").total_params == pytest.approx(27e9, rel=0.05)


def test_kv_bytes_per_token():
    assert counts("qwen32b").kv_bytes_per_token == 256 * 1024
    assert counts("ds660b").kv_bytes_per_token == 61 * (656 + 132)


def test_unknown_kv_format_names_field():
    spec = from_dict(ModelSpec, dict(load("model", "ds660b"), kv_format="fp4"))
    with pytest.raises(ValueError, match="model.kv_format='fp4'.*known: bf16_indexer, fp8, fp8_indexer"):
        ModelCounts(spec).kv_bytes_per_token


def test_sparse_attention_caps_attention_flops():
    c = counts("ds660b")
    long_minus_short = c.prefill_flops(60000, 100) - c.prefill_flops(30000, 100)
    # Only the indexer grows with context beyond the top-k window.
    indexer = 61 * 2 * 64 * 128 * 100 * 30000
    assert long_minus_short == pytest.approx(indexer)


def test_calibration_reproduces_anchor_throughputs():
    cfg = small_config()
    hw = cfg.hardware
    anchor = from_dict(ModelSpec, load("model", "dsv3"))
    eff = calibrate(anchor, hw)
    cal = hw.calibration
    cost = CostModel(
        anchor, cfg.cluster.__class__(**{**cfg.cluster.__dict__, "decode_nodes": cal.decode_gpus // 8}), hw, eff
    )
    prompt = cal.prefill_prompt_tokens
    cached = round(prompt * cal.prefill_hit_ratio)
    t = cost.prefill_time(cost.counts.prefill_flops(cached, prompt - cached))
    assert 8 * prompt / t == pytest.approx(cal.prefill_tokens_per_s_node, rel=1e-9)
    b = cal.decode_tokens_per_s_node / 8 / cal.decode_tokens_per_s_request
    ctx = cal.decode_context_tokens
    step = cost.decode_step_time(b, b * cost.counts.decode_keys(ctx), b * ctx)
    assert 8 * b / step == pytest.approx(cal.decode_tokens_per_s_node, rel=1e-9)
    assert 0 < eff.prefill < 1 and 0 < eff.decode < 1

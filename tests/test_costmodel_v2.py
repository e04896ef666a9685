"""Cost model v2 (docs/costmodel.md, "v2 terms"): each term does what its source says, and v1 is
untouched by it."""

from dataclasses import replace

import pytest

from dualpath_jax.config import CostModelSpec, ModelSpec, from_dict
from dualpath_jax.costmodel import CostModel, calibrate
from dualpath_jax.costmodel.ep import ep_group, ep_layer_latency_s
from dualpath_jax.sim import Simulation

from .helpers import growing_agents, load, small_config

V1, V2 = CostModelSpec(), CostModelSpec(version="v2")
ANCHOR = from_dict(ModelSpec, load("model", "dsv3"))


def cost(model="ds660b", cluster="2p4d", terms=V2, **cluster_overrides):
    cfg = small_config(model=model, cluster=cluster, **cluster_overrides)
    eff = calibrate(ANCHOR, cfg.hardware, cfg.cluster.gpus_per_node, terms)
    return CostModel(cfg.model, cfg.cluster, cfg.hardware, eff, terms)


def test_ep_latency_follows_the_deepep_table_between_and_beyond_its_sizes():
    assert ep_layer_latency_s(V2, 8) == pytest.approx((77 + 114) * 1e-6)
    assert ep_layer_latency_s(V2, 32) == pytest.approx((155 + 273) * 1e-6)
    # EP 24 is between 16 and 32 on a log2 scale (0.585 of the way)
    w = 0.5849625007211562
    assert ep_layer_latency_s(V2, 24) == pytest.approx((313 + w * (428 - 313)) * 1e-6)
    assert ep_layer_latency_s(V2, 4) == ep_layer_latency_s(V2, 8)  # held flat outside the table
    assert ep_layer_latency_s(V2, 1024) == ep_layer_latency_s(V2, 256)
    assert ep_layer_latency_s(V2, 1) == 0.0
    assert ep_layer_latency_s(replace(V2, ep_latency_scale=2.0), 32) == pytest.approx(2 * 428e-6)
    assert ep_group(704, 144) == 144 and ep_group(32, 144) == 32


def test_tpot_floor_grows_with_ep_size_and_stops_at_the_bounded_group():
    models = [cost(decode_nodes=n) for n in (1, 2, 4, 16, 88)]
    floors = [c.decode_ep_floor_s for c in models]
    assert all(a < b for a, b in zip(floors[:4], floors[1:4])), floors
    moe = 58  # DeepSeek-V3: 61 layers, the first 3 dense
    assert floors[2] == pytest.approx(moe * 428e-6)  # 4 nodes: EP32
    assert models[4].decode_ep == 144 and floors[4] == pytest.approx(moe * ep_layer_latency_s(V2, 144))
    for c in models:  # every step, however small its batch, takes at least the floor
        assert c.decode_step_time(1, 0, 0) >= c.decode_ep_floor_s
    # v1 has no floor: one request's step is only its weight read (14.5 ms at EP32) and compute
    assert cost(terms=V1, decode_nodes=4).decode_step_time(1, 0, 0) < floors[2] * 0.7


def test_without_overlap_the_anchor_step_cannot_hold_the_all_to_all():
    # DeepSeek's 47.6 ms step at EP144 holds 19.6 ms of memory time and a 32.5 ms all-to-all
    # floor only if the two overlap (Day 6: two micro-batches); serial, calibration must refuse.
    with pytest.raises(ValueError, match="plus the EP all-to-all floor 32.5 ms"):
        calibrate(ANCHOR, small_config().hardware, 8, replace(V2, decode_ep_overlap=False))
    serial = CostModel(ANCHOR, small_config(cluster="2p4d").cluster, small_config().hardware,
                       calibrate(ANCHOR, small_config().hardware, 8, V1), replace(V2, decode_ep_overlap=False))  # fmt: skip
    over = CostModel(serial.model, serial.cluster, serial.hardware, serial.eff, V2)
    assert serial.decode_step_time(64, 64 * 2048, 64 * 60000) > over.decode_step_time(64, 64 * 2048, 64 * 60000)


def per_token_prefill_s(c: CostModel, requests: int, cached: int = 60000, new: int = 429) -> float:
    """One step of `requests` agent turns (a long cached context, a short append) per new token."""
    attn, lin = c.prefill_split(cached, new)
    return c.prefill_step(requests * (attn + lin), 0.0) / (requests * new)


def test_a_bigger_prefill_batch_lowers_per_token_time_in_v2_only():
    v2 = [per_token_prefill_s(cost(), n) for n in (1, 4, 16, 38)]  # 38 x 429: the 16K budget
    assert all(a > b for a, b in zip(v2, v2[1:])), v2
    assert v2[0] > 1.05 * v2[-1]  # a one-turn step pays the whole EP latency (~18 ms at EP16) alone
    v1 = [per_token_prefill_s(cost(terms=V1), n) for n in (1, 38)]
    assert v1[0] == pytest.approx(v1[1], rel=1e-12)  # v1: batch-independent


def test_v2_calibration_reproduces_the_anchor_with_its_fixed_costs():
    cfg = small_config(model="dsv3", cluster="2p4d")
    hw, cal, t = cfg.hardware, cfg.hardware.calibration, V2
    eff = calibrate(ANCHOR, hw, 8, t)
    # prefill: the anchor's 16K-token step at EP32 takes what DeepSeek's per-node rate implies
    prompt = cal.prefill_prompt_tokens
    cached = round(prompt * cal.prefill_hit_ratio)
    c = CostModel(ANCHOR, replace(cfg.cluster, prefill_nodes=4), hw, eff, t)  # 32 GPUs: EP32
    prompts = t.prefill_anchor_batch_tokens / (prompt - cached)
    attn, lin = c.prefill_split(cached, prompt - cached)
    step = c.prefill_step(prompts * (attn + lin), 0.0)
    assert 8 * prompts * prompt / step == pytest.approx(cal.prefill_tokens_per_s_node, rel=1e-9)
    # decode: EP144 at the anchor's batch and context reproduces the per-node token rate
    c = CostModel(ANCHOR, replace(cfg.cluster, decode_nodes=cal.decode_gpus // 8), hw, eff, t)
    b = cal.decode_tokens_per_s_node / 8 / cal.decode_tokens_per_s_request
    ctx = cal.decode_context_tokens
    step = c.decode_step_time(b, b * c.counts.decode_keys(ctx), b * ctx)
    assert 8 * b / step == pytest.approx(cal.decode_tokens_per_s_node, rel=1e-9)
    assert eff.prefill > calibrate(ANCHOR, hw, 8, V1).prefill  # the fixed costs take step time


def test_calibration_refuses_an_ep_floor_above_the_anchor_step():
    hw = small_config().hardware
    with pytest.raises(ValueError, match="EP all-to-all floor"):
        calibrate(ANCHOR, hw, 8, replace(V2, ep_latency_scale=2.0))


def run_jct(terms: CostModelSpec, system: str = "basic") -> float:
    cfg = small_config(model="ds27b", cluster="1p1d", snic_gbps=25)  # a slow NIC: I/O bound
    eff = calibrate(ANCHOR, cfg.hardware, 8, terms)
    c = CostModel(cfg.model, cfg.cluster, cfg.hardware, eff, terms)
    spec = next(s for s in cfg.systems if s.name == system)
    return Simulation(cfg, spec, growing_agents(16, turns=4, preloaded=20000), c).run().jct_s


def test_storage_efficiency_and_latency_slow_an_io_bound_run():
    base = run_jct(replace(V2, storage_read_latency_ms=0.0))
    slower_nic = run_jct(replace(V2, storage_read_latency_ms=0.0, storage_efficiency=0.5))
    latency = run_jct(replace(V2, storage_read_latency_ms=50.0))
    assert slower_nic > base * 1.2
    assert latency > base
    assert run_jct(V2, system="oracle") < base  # the oracle reads nothing


def test_v1_cost_model_ignores_the_v2_fields():
    a, b = cost(terms=V1), cost(terms=replace(V1, storage_efficiency=0.5))
    assert (a.storage_efficiency, a.storage_read_latency_s, a.decode_ep_floor_s) == (1.0, 0.0, 0.0)
    assert b.storage_efficiency == 1.0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("ep_sizes", [8, 8], "strictly increasing"),
        ("ep_combine_us", [1, 2], "one value per ep_sizes entry"),
        ("storage_efficiency", 1.5, r"must be in \(0, 1\]"),
        ("assumed", ["nope"], "not a field of this section"),
    ],
)
def test_bad_costmodel_fields_name_the_field(field, value, message):
    raw = dict(load("costmodel", "v2"), **{field: value})
    with pytest.raises(ValueError, match=f"config.costmodel.{field}.*{message}"):
        from_dict(CostModelSpec, raw, "config.costmodel")


def test_the_v2_config_file_holds_the_documented_defaults():
    # configs/costmodel/v2.yaml and CostModelSpec's defaults are one set of values
    assert from_dict(CostModelSpec, load("costmodel", "v2"), "config.costmodel") == V2
    assert from_dict(CostModelSpec, load("costmodel", "v1"), "config.costmodel") == V1


def test_the_online_experiment_runs_on_v2_with_its_tpot_floor(tmp_path):
    from experiments.figures import cells

    overrides = ["model=ds27b", "cluster=1p1d", "+len=32k", "workload.trajectories=12", "costmodel=v2",
                 "online.duration_s=120", "online.warmup_s=20"]  # fmt: skip
    data = cells.online(overrides, aps=0.5, results_dir=tmp_path)
    assert "_costv2-" in data["_path"]
    floor = 29 * ep_layer_latency_s(V2, 8)  # DS 27B: 30 layers, 1 dense; decode EP8 on 1P1D
    for name, summary in data["systems"].items():
        assert summary["latency"]["tpot_s"]["p50"] >= floor * (1 - 1e-9), name

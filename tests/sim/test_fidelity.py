"""The simulator's mechanisms: traffic manager, DP-attention barrier, chunked prefill, layerwise,
split reads, the DRAM store tier, tensor-parallel engines, the ablation ladder."""

from collections import deque
from dataclasses import replace

import pytest

from dualpath_jax.config import SystemSpec
from dualpath_jax.costmodel.deploy import engine_view
from dualpath_jax.sim import Simulation
from dualpath_jax.sim.turn import SimTurn

from ..helpers import cost_for, growing_agents, load, small_config


def system(name, **kw):
    base = dict(layerwise=True, dual_path=True, scheduler="dualpath", batching="quota")
    base.update(kw)
    return SystemSpec(name=name, **base)


def run(cfg, sys_spec, agents):
    return Simulation(cfg, sys_spec, agents, cost_for(cfg)).run()


def test_qos_keeps_model_traffic_ahead_of_kv():
    # Two PE nodes (EP all-to-all crosses the CNIC) and a slow CNIC: collectives and KV contend.
    cfg = small_config(cluster="2p1d", agents=32, cnic_gbps=50.0)
    agents = growing_agents(32, turns=3, first=2000, append=1500, preloaded=20000)
    on = run(cfg, system("qos"), agents)
    off = run(cfg, system("fair", qos=False), agents)
    assert off.prefill_layer_ms > 1.05 * on.prefill_layer_ms
    assert off.jct_s > on.jct_s


def test_dp_attention_barrier_leaves_bubbles_with_uneven_batches():
    cfg = small_config(agents=16)
    agents = growing_agents(16, turns=2, first=300, append=100, preloaded=0)
    # uneven: half the agents carry a long cached prefix (costly attention), half do not
    agents = [
        replace(
            a,
            turns=tuple(
                replace(t, input=t.input + 30000 * (i % 2), cached=t.cached + 30000 * (i % 2)) for t in a.turns
            ),
        )
        for i, a in enumerate(agents)
    ]
    m = run(cfg, system("dp"), agents)
    assert m.prefill_barrier_idle > 0 and m.attn_max_avg > 1.0


def test_chunked_prefill_splits_a_long_prompt_over_steps():
    cfg = replace(small_config(agents=1), sim=replace(small_config().sim, quota_ms=20.0))
    agents = growing_agents(1, turns=1, first=60000)
    sim = Simulation(cfg, system("chunks"), agents, cost_for(cfg))
    m = sim.run()
    assert m.turns == 1 and m.tokens_prefilled == 60000
    node = next(iter(sim.pe_nodes.values()))
    assert node.steps > 5  # 60K tokens cannot fit one 20 ms quota


def test_without_layerwise_a_prefill_batch_fits_hbm():
    cfg = small_config(agents=4)
    agents = growing_agents(4, turns=1, first=300, preloaded=20000)
    sim = Simulation(cfg, system("basic", layerwise=False, batching="tokens"), agents, cost_for(cfg))
    node = next(iter(sim.pe_nodes.values()))
    node.kv_room = 2.5 * 20300 * sim.kvb  # room for two requests' KV, not three
    queue = deque(SimTurn(a, 0, agents[a].turns[0], 0.0, sim.kvb, 0) for a in range(4))
    assert len(node.pack(queue)) == 2
    node.system = system("lw", batching="tokens")
    assert len(node.pack(queue)) == 4  # layerwise: only one layer's KV at a time


def test_split_read_uses_both_nodes_for_one_request():
    cfg = small_config(agents=24)
    agents = growing_agents(24, turns=3, first=300, preloaded=20000)
    whole = run(cfg, system("whole"), agents)
    split = run(cfg, system("split", split_read=True), agents)
    for m in (whole, split):
        assert m.bytes_read == pytest.approx(m.hit_bytes)
    assert split.bytes_read_de_nodes > 0 and split.bytes_read_pe_nodes > 0
    assert split.jct_s <= 1.02 * whole.jct_s


def test_dram_tier_serves_repeat_turns_from_memory():
    cfg = small_config(agents=8)
    agents = growing_agents(8, turns=4, first=2000)
    m = run(
        cfg,
        system("sgl", layerwise=False, dual_path=False, scheduler="round_robin", batching="tokens", dram_tier_tb=1.0),
        agents,
    )
    assert m.tier_hit_bytes > 0
    assert m.bytes_read + m.tier_hit_bytes == pytest.approx(m.hit_bytes)
    assert m.bytes_read_de_nodes == 0


def test_tensor_parallel_engines_for_dense_models_only():
    qwen = small_config(model="qwen32b", cluster="1p2d")
    tp = engine_view(qwen, system("sgl", tp_dense=8))
    assert tp.cluster.gpus_per_node == 1 and tp.cluster.cnic_gbps == 8 * qwen.cluster.cnic_gbps
    assert tp.hardware.gpu.hbm_gb == 8 * qwen.hardware.gpu.hbm_gb and tp.model.dense_ffn_tp == 1
    ds = small_config()
    assert engine_view(ds, system("sgl", tp_dense=8)) is ds


def test_ablation_ladder_rungs():
    cfg = small_config(agents=48)
    agents = growing_agents(48, turns=4, first=300, preloaded=20000)
    ladder = {
        name: run(cfg, SystemSpec(name=name, **spec), agents)
        for name, spec in load("system", "ablation")["system"].items()
    }
    assert list(ladder) == ["basic", "+layerwise", "+dualpath", "+scheduling"]
    assert ladder["+layerwise"].bytes_read_de_nodes == 0 < ladder["+dualpath"].bytes_read_de_nodes
    assert ladder["+dualpath"].jct_s < ladder["basic"].jct_s

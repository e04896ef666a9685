from collections import Counter

import pytest

from dualpath_jax.cluster import check_pd_ratio
from dualpath_jax.sim import Simulation
from dualpath_jax.sim.simulator import TurnObserver

from ..helpers import cost_for, growing_agents, small_config


def run_all(cfg, agents):
    cost = cost_for(cfg)
    sims = {s.name: Simulation(cfg, s, agents, cost) for s in cfg.systems}
    return {name: (sim, sim.run()) for name, sim in sims.items()}, cost


@pytest.fixture(scope="module")
def io_bound_runs():
    # Many agents reloading long contexts on one PE node: storage reads dominate.
    cfg = small_config(agents=48)
    return run_all(cfg, growing_agents(48, turns=5, first=300, append=200, output=30, preloaded=20000))


def test_storage_bytes_equal_hit_kv_of_all_turns(io_bound_runs):
    runs, cost = io_bound_runs
    agents = runs["basic"][0].agents
    hit = sum(t.cached for a in agents for t in a.turns) * cost.kv_bytes_per_token
    for name in ("basic", "dualpath"):
        m = runs[name][1]
        assert m.bytes_read == pytest.approx(hit)
        assert m.hit_bytes == pytest.approx(hit)
    new = sum(t.new + t.output for a in agents for t in a.turns) * cost.kv_bytes_per_token
    assert runs["dualpath"][1].bytes_written == pytest.approx(new)


def test_every_turn_completes_exactly_once(io_bound_runs):
    runs, _ = io_bound_runs
    for name, (sim, m) in runs.items():
        done = Counter((r.agent, r.index) for r in sim.finished)
        expected = {(a, k) for a, tr in enumerate(sim.agents) for k in range(len(tr.turns))}
        assert set(done) == expected and set(done.values()) == {1}, name
        assert m.turns == len(expected)
        # turns of one agent ran in order, each after the previous one finished
        by_agent = {}
        for r in sim.finished:
            by_agent.setdefault(r.agent, []).append(r)
        for reqs in by_agent.values():
            assert [r.index for r in reqs] == sorted(r.index for r in reqs)
            for prev, nxt in zip(reqs, reqs[1:]):
                assert nxt.arrive >= prev.finished


def test_jct_respects_io_and_compute_lower_bounds(io_bound_runs):
    runs, _ = io_bound_runs
    for name, (_, m) in runs.items():
        assert m.jct_s >= m.io_bound_s * (1 - 1e-9), name
        assert m.jct_s >= m.compute_bound_s * (1 - 1e-9), name
    assert runs["basic"][1].io_bound_s > runs["basic"][1].compute_bound_s  # the test is I/O-bound


def test_oracle_le_dualpath_le_basic(io_bound_runs):
    runs, _ = io_bound_runs
    jct = {n: m.jct_s for n, (_, m) in runs.items()}
    assert jct["oracle"] <= jct["dualpath"] <= jct["basic"]
    assert jct["dualpath"] < 0.8 * jct["basic"]  # the second path must actually help here


def test_read_paths(io_bound_runs):
    runs, _ = io_bound_runs
    basic, dual, oracle = (runs[n][1] for n in ("basic", "dualpath", "oracle"))
    assert basic.bytes_read_de_nodes == 0 and basic.bytes_read_pe_nodes > 0
    assert dual.bytes_read_de_nodes > 0 and dual.bytes_read_pe_nodes > 0
    assert oracle.bytes_read == 0


def test_decode_respects_hbm_capacity():
    # Shrink decode HBM so only a few requests fit at once: the run must still finish every turn,
    # and the peak reserved KV on each DE never exceeds its room.
    cfg = small_config(agents=12, activation_reserve_gb=74.2)
    cost = cost_for(cfg)
    room = cost.kv_room_bytes("decode")
    low = [room]

    class Watch(TurnObserver):
        def scheduled(self, sim):
            low.append(min(g.free_kv for g in sim.dispatcher.de_groups))
            low.extend(e.free_kv for g in sim.dispatcher.de_groups for e in g.engines)

    m = Simulation(cfg, cfg.systems[1], growing_agents(12, turns=3, first=8000), cost, observer=Watch()).run()
    assert m.turns == 36 and min(low) >= 0 and min(low) < room / 2  # it was full at times


def test_same_inputs_same_metrics():
    cfg = small_config(agents=8)
    agents = growing_agents(8, turns=3)
    a = Simulation(cfg, cfg.systems[1], agents, cost_for(cfg)).run()
    b = Simulation(cfg, cfg.systems[1], agents, cost_for(cfg)).run()
    assert a == b


def test_pd_bound_warning_names_term():
    assert check_pd_ratio(small_config(cluster="2p4d").cluster, warn=False) == []
    cfg = small_config(cluster="2p1d", prefill_nodes=8, decode_nodes=1, name="8p1d")
    with pytest.warns(UserWarning) as record:
        check_pd_ratio(cfg.cluster)
    messages = [str(w.message) for w in record]
    assert (
        "cluster 8p1d: P/D = 8.000 breaks upper: (g-2s)/s (DE CNICs carry DE-path reads) = 6.000" in messages
        and len(messages) == 3
    )
    cfg = small_config(cluster="1p1d", prefill_nodes=1, decode_nodes=8, name="1p8d")
    assert any("lower: s/(g-s)" in w for w in check_pd_ratio(cfg.cluster, warn=False))

"""The real testbed on CPU devices (tiny model, fp32): every turn's first-token logits, with the
prefix KV moved through the PE path, the DE path, both at once (a split read), Basic's
whole-prefix load and the oracle's staged KV, equal a full recompute of that prompt; bytes per
link match the data-path plan."""

from contextlib import contextmanager
from dataclasses import replace

import jax
import numpy as np
import pytest

from dualpath_jax.config import ClusterSpec, from_dict
from dualpath_jax.serving import Testbed, TestbedSpec
from dualpath_jax.workload import Trajectory, Turn
from tests.helpers import load, small_config, systems

BT = 16
# The testbed tests share one pytest-xdist worker, in file order, so hosts built later find the
# shapes (and devices) compiled earlier in the run's XLA cache (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("testbed")


def agents(n=3, turns=3, first=40, append=21, out=7):
    """Every turn reloads the whole previous context; sizes not block-aligned (tails recomputed)."""
    res = []
    for a in range(n):
        ctx, tl = 0, []
        for k in range(turns):
            p = ctx + (first + 5 * a if k == 0 else append + a)
            tl.append(Turn(input=p, cached=ctx, output=out))
            ctx = p + out
        res.append(Trajectory(f"a{a}", tuple(tl)))
    return res


def config(cluster="testbed_1p1d", gbps=0.02):
    cfg = small_config()
    return replace(cfg, cluster=from_dict(ClusterSpec, dict(load("cluster", cluster), snic_gbps=gbps)))


@contextmanager
def compile_requests():
    """The compile requests made inside the block (a list, filled as they happen). A
    persistent-cache hit is a request too, so a shape compiled by an earlier test counts."""
    import jax.monitoring

    requests, active = [], [True]

    def listen(name, *args, **kw):
        if active[0] and (name.endswith("backend_compile_duration") or name.endswith("compile_requests_use_cache")):
            requests.append(name)

    jax.monitoring.register_event_listener(listen)  # JAX has no unregister: the flag retires it
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield requests
    finally:
        active[0] = False


@pytest.fixture(scope="module")
def runs():
    """Every system served once on one host; `compiles` lists the compile requests each serve made
    (warm-up compiles every shape the timed part uses: a compile there would count as serving
    time)."""
    cfg = config()
    spec = TestbedSpec(tokens_per_block=BT, max_context=256, keep_logits=True)
    tb = Testbed(cfg, spec, agents())
    by = {s.name: s for s in systems()}
    split = replace(by["dualpath"], name="dualpath_split", split_read=True)
    out, compiles = {}, {}
    for name, system, side in (
        ("basic", by["basic"], ""),
        ("pe_path", by["dualpath"], "pe"),
        ("de_path", by["dualpath"], "de"),
        ("dualpath", by["dualpath"], ""),
        ("split", split, ""),
        ("oracle", by["oracle"], ""),
    ):
        tb.spec = replace(spec, force_read_side=side)
        with tb.system_run(system) as run:  # prepared: warm-up and staging are done here
            with compile_requests() as requests:
                out[name] = (run.serve(), run.finished)
            compiles[name] = requests
    return tb, out, compiles


def test_every_system_completes_every_turn(runs):
    tb, out, _ = runs
    total = sum(len(a.turns) for a in tb.agents)
    for name, (m, reqs) in out.items():
        assert m.turns == total == len(reqs), name
        assert m.jct_s > 0 and m.tokens_generated == sum(t.output for a in tb.agents for t in a.turns)
        assert m.tokens_cached > 0, name  # later turns hit the store (or the oracle's staged KV)


def test_first_token_logits_equal_full_recompute(runs):
    tb, out, _ = runs
    assert_first_logits_equal_recompute(tb, out)


def assert_first_logits_equal_recompute(tb, out):
    """Each served turn's first-token logits (out: {name: (metrics, finished requests)}) equal one
    prefill of its whole prompt on the first PE; every later turn hit the store in whole blocks."""
    lw, dev = tb.lw[tb.pe_ids[0]], tb.devices[tb.pe_ids[0]]
    ref = {}
    for k, ids in enumerate(tb.ids):
        for t in tb.agents[k].turns:
            logits, _, _ = lw(jax.device_put(ids[None, : t.input], dev))
            ref[(k, t.input)] = np.asarray(logits[0, -1])
    for name, (m, reqs) in out.items():
        for r in reqs:
            want = ref[(r.agent, r.input)]
            np.testing.assert_allclose(
                r.first_logits,
                want,
                rtol=1e-4,
                atol=1e-4,
                err_msg=f"{name} agent {r.agent} turn {r.index} (hit {r.hit})",
            )
            if r.index > 0:
                assert r.hit > 0 and r.hit % BT == 0


def test_paths_read_through_their_node(runs):
    tb, out, _ = runs
    hit = out["basic"][0].hit_bytes
    assert hit > 0
    for name in ("basic", "pe_path"):
        m = out[name][0]
        assert m.bytes_read_pe_nodes == hit and m.bytes_read_de_nodes == 0, name
    m = out["de_path"][0]
    assert m.bytes_read_de_nodes == hit and m.bytes_read_pe_nodes == 0
    assert m.link_bytes["d2d[1->0]"] == hit  # DE buffer -> DE device -> PE device
    assert out["oracle"][0].bytes_read == 0 and out["oracle"][0].link_bytes == {}


def test_a_split_read_reads_each_share_through_its_node_in_whole_blocks(runs):
    """The split system reads each turn's first hit blocks through the PE node and the last
    `de_hit` tokens through the DE node, in the policy's proportion rounded to whole blocks, and
    some turn really reads through both."""
    _, out, _ = runs
    m, reqs = out["split"]
    for r in reqs:
        blocks = r.hit // BT
        assert r.de_hit % BT == 0 and 0 <= r.de_hit <= r.hit
        assert r.de_read_fraction * blocks == pytest.approx(r.de_hit // BT, abs=1e-9)
    both = [r for r in reqs if 0 < r.de_hit < r.hit]
    assert both, [(r.hit, r.de_hit) for r in reqs]
    assert m.bytes_read_pe_nodes + m.bytes_read_de_nodes == m.hit_bytes
    assert m.bytes_read_pe_nodes > 0 and m.bytes_read_de_nodes > 0
    assert m.link_bytes["d2d[1->0]"] == m.bytes_read_de_nodes  # the DE share crosses DE device -> PE device
    assert m.link_bytes["de_h2d_stage[1]"] == m.bytes_read_de_nodes
    assert {row["de_hit"] for row in m.timeline} == {r.de_hit for r in reqs}


def test_bytes_per_link_match_the_plan(runs):
    tb, out, _ = runs
    assert_bytes_per_link_match_the_plan(tb, out, tb.kvb)


def assert_bytes_per_link_match_the_plan(tb, out, kvb):
    """Each link's bytes equal the data-path plan of the turns as placed, and the bytes read are
    the hit tokens times `kvb`, the KV bytes per token."""
    for name, (m, reqs) in out.items():
        lb, plan = m.link_bytes, m.plan_bytes
        if name == "oracle":
            assert all(v == 0 for v in plan.values())
            continue
        # the plan of each turn's fraction as placed (a split's in whole blocks): equal to the byte
        # (approx only for the float products of a split fraction)
        assert lb.get("snic_read[0]", 0) == pytest.approx(plan["snic_read_pe_read"], rel=1e-12), name
        assert lb.get("snic_read[1]", 0) == pytest.approx(plan["snic_read_de_read"], rel=1e-12), name
        assert m.bytes_read_pe_nodes + m.bytes_read_de_nodes == sum(r.hit for r in reqs) * kvb
        assert lb["pe_cnic_in[0]"] == plan["pe_cnic_in"], name
        assert lb["pe_cnic_out[0]"] == pytest.approx(plan["pe_cnic_out"], rel=1e-12), name
        assert lb["de_cnic_in[1]"] == plan["de_cnic_in"], name
        # writes: only whole blocks are stored, so at most the plan's (new + output) KV
        bt = tb.spec.tokens_per_block
        whole = sum(((r.input + r.output) // bt - r.hit // bt) * bt for r in reqs) * kvb
        assert lb["snic_write[1]"] == m.bytes_written == whole <= plan["snic_write"]


def test_metrics_are_sane(runs):
    _, out, _ = runs
    for name, (m, _) in out.items():
        assert 0 < m.gpu_busy["pe0"] <= 1.0 and 0 < m.gpu_busy["de1"] <= 1.0, name
        assert m.ttft_s["mean"] > 0 and m.tpot_s["mean"] > 0
        assert m.jct_s >= m.compute_bound_s


def test_2p2d_runs_on_four_devices():
    cfg = config("testbed_2p2d")
    spec = TestbedSpec(tokens_per_block=BT, max_context=256, keep_logits=True)
    tb = Testbed(cfg, spec, agents(n=2, turns=2))
    m = tb.run_system({s.name: s for s in systems()}["dualpath"])
    assert m.turns == 4
    assert set(m.gpu_busy) == {"pe0", "pe1", "de2", "de3"}
    assert m.bytes_read == m.hit_bytes > 0


def test_each_turn_passes_its_stages_in_order(runs):
    """The stage timeline adds up: every timestamp is set and ordered, the stage means sum to the
    mean arrive -> persisted time, TTFT is the stages up to the first token, and the read and
    staging stages are empty exactly where there is nothing to read or stage."""
    from dualpath_jax.serving.report import STAGES

    _, out, _ = runs
    order = [
        "arrive",
        "placed",
        "ready",
        "queued",
        "prefill_start",
        "first_token",
        "joined",
        "finished",
        "persisted",
    ]
    for name, (m, reqs) in out.items():
        for r in reqs:
            ts = [getattr(r, k) for k in order]
            assert min(ts) > 0 and ts == sorted(ts), (name, r.rid, ts)
        mean_life = sum(r.persisted - r.arrive for r in reqs) / len(reqs)
        assert sum(m.stages_s.values()) == pytest.approx(mean_life, rel=1e-9), name
        ttft = sum(m.stages_s[s] for s in list(STAGES)[:5])
        assert ttft == pytest.approx(m.ttft_s["mean"], rel=1e-9), name
        if name == "oracle":  # nothing read or staged: straight from placement into the PE queue
            assert m.stages_s["read"] == 0 and m.stages_s["stage"] < 1e-2
        else:
            assert m.stages_s["read"] > 0, name
        if name in ("basic", "pe_path"):
            assert m.stages_s["stage"] < m.stages_s["read"], name  # no DE staging on the PE path


def test_timeline_and_pe_thread_time_account_for_the_run(runs):
    """The per-turn timeline is the turns' own placement, path and timestamps; the PE thread's
    idle + load + inputs + busy seconds fit in the run, and busy is the engine's busy time."""
    _, out, _ = runs
    for name, (m, reqs) in out.items():
        assert len(m.timeline) == len(reqs), name
        by = {(r.agent, r.index): r for r in reqs}
        for row in m.timeline:
            r = by[(row["agent"], row["turn"])]
            assert (row["pe"], row["de"], row["read_on_de"], row["hit"], row["de_hit"]) == (
                r.pe,
                r.de,
                r.read_on_de,
                r.hit,
                r.de_hit,
            )
            assert 0 <= row["arrive"] <= row["first_token"] <= row["persisted"] <= m.jct_s + 1e-9, (name, row)
        for pe, t in m.pe_time_s.items():
            thread = t["idle"] + t["load"] + t["inputs"] + t["busy"]
            assert t["busy"] == pytest.approx(m.gpu_busy[pe] * m.jct_s, rel=1e-9), name
            assert 0 < thread <= m.wall_s + 0.5, (name, t)  # + 0.5: it may wait briefly past the end
            if name != "oracle":
                assert t["send"] > 0, name  # the oracle sends nothing


def test_a_non_positive_count_names_its_testbed_field():
    from dualpath_jax.config import ConfigError

    for field in ("send_threads", "prefetch_layers"):
        with pytest.raises(ConfigError, match=f"testbed.{field}: must be a positive integer, got 0"):
            Testbed(config(), TestbedSpec(tokens_per_block=BT, **{field: 0}), agents())


def test_timed_serving_compiles_nothing(runs):
    _, _, compiles = runs
    assert compiles == {name: [] for name in compiles}

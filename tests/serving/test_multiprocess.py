"""The testbed across processes (testbed.processes=N, serving/mp): each emulated node its own OS
process of a jax.distributed job on loopback, the scheduler in the test's process. 1P1D (2
processes, the DSA model: its entries carry the index key) with every hit read through the PE node
and then through the DE node, and 2P2D (4 processes, the MLA model): every turn's first-token logits equal a full recompute, bytes per link equal the
plan, the metrics are the single-process testbed's; a node that dies fails the run at once and
is named. JAX start-up and compiles are costly on CPU: one job per process count."""

import time
from dataclasses import fields, replace

import numpy as np
import pytest

from dualpath_jax.serving import TestbedMetrics, TestbedSpec
from dualpath_jax.serving.mp.host import MPHost
from dualpath_jax.serving.mp.scheduler import MPSystemRun, NodeFailure
from dualpath_jax.serving.report import STAGES
from dualpath_jax.workload import Trajectory, Turn
from tests.helpers import systems
from tests.serving.test_testbed import BT, config

DUALPATH = {s.name: s for s in systems()}["dualpath"]


def agents(n=2):
    """Two turns each, the second reloading the first's whole blocks (its tail recomputed); every
    agent has the same sizes (its own token stream), so the node processes compile few shapes."""
    return [Trajectory(f"a{a}", (Turn(input=40, cached=0, output=7), Turn(input=68, cached=47, output=7))) for a in range(n)]  # fmt: skip


def spec(processes: int, **kw) -> TestbedSpec:
    # two layers (one dense, one MoE) and batches of one: fewer compiles in every node process
    return TestbedSpec(tokens_per_block=BT, max_context=96, n_layers=2, max_prefill_batch=1, keep_logits=True,
                       processes=processes, **kw)  # fmt: skip


def serve(host, system, index, side=""):
    host.spec = replace(host.spec, force_read_side=side)
    with MPSystemRun(host, system, index) as run:
        return run.serve(), list(run.finished)


def recomputed(host, turns) -> dict:
    prompts = sorted({(t.agent, t.input) for t in turns})
    return dict(zip(prompts, host.recompute(prompts)))


@pytest.fixture(scope="module")
def one_p_one_d():
    with MPHost(config(), spec(2, model="tiny_dsa"), agents()) as host:
        runs = {side: serve(host, DUALPATH, k, side) for k, side in enumerate(("pe", "de"))}
        ref = recomputed(host, runs["pe"][1])
    return host, runs, ref


@pytest.fixture(scope="module")
def two_p_two_d():
    with MPHost(config("testbed_2p2d"), spec(4), agents()) as host:
        m, turns = serve(host, DUALPATH, 0)
        ref = recomputed(host, turns)
        # a decode node's process dies: the run fails at once and names it
        host.procs[3].kill()
        t0 = time.perf_counter()
        with pytest.raises(NodeFailure) as failed:
            serve(host, DUALPATH, 1)
        fail_s = time.perf_counter() - t0
    return (m, turns, ref), (str(failed.value), fail_s)


def assert_logits(turns, ref):
    for t in turns:
        np.testing.assert_allclose(t.first_logits, ref[(t.agent, t.input)], rtol=1e-4, atol=1e-4,
                                   err_msg=f"agent {t.agent} turn {t.index} (hit {t.hit}, de_hit {t.de_hit})")  # fmt: skip


def test_first_token_logits_through_both_paths_equal_a_recompute(one_p_one_d):
    host, runs, ref = one_p_one_d
    for side, (m, turns) in runs.items():
        assert m.turns == len(turns) == 4, side
        assert_logits(turns, ref)
        later = [t for t in turns if t.index > 0]
        assert later and all(t.hit > 0 for t in later), side  # later turns hit the store
        assert all(t.de_hit == (t.hit if side == "de" else 0) for t in turns), side


def test_bytes_per_link_equal_the_plan(one_p_one_d):
    host, runs, _ = one_p_one_d
    for side, (m, turns) in runs.items():
        lb, plan = m.link_bytes, m.plan_bytes
        hit = sum(t.hit for t in turns) * host.kvb
        assert lb.get("snic_read[0]", 0) == plan["snic_read_pe_read"] == (hit if side == "pe" else 0), side
        assert lb.get("snic_read[1]", 0) == plan["snic_read_de_read"] == (hit if side == "de" else 0), side
        assert lb["pe_cnic_in[0]"] == plan["pe_cnic_in"], side
        assert lb["pe_cnic_out[0]"] == plan["pe_cnic_out"], side
        assert lb["de_cnic_in[1]"] == plan["de_cnic_in"], side
        if side == "de":  # the DE node's share crossed DE device -> PE device, between the processes
            assert lb["d2d[1->0]"] == lb["de_h2d_stage[1]"] == hit
        whole = sum(((t.input + t.output) // BT - t.hit // BT) * BT for t in turns) * host.kvb
        assert lb["snic_write[1]"] == m.bytes_written == whole <= plan["snic_write"], side


def test_metrics_have_the_single_process_schema(one_p_one_d):
    _, runs, _ = one_p_one_d
    m, turns = runs["de"]
    assert type(m) is TestbedMetrics and {f.name for f in fields(m)} == {f.name for f in fields(TestbedMetrics)}
    assert set(m.gpu_busy) == {"pe0", "de1"} and 0 < m.gpu_busy["pe0"] <= 1 and 0 < m.gpu_busy["de1"] <= 1
    assert set(m.stages_s) == set(STAGES)
    assert set(m.pe_time_s["pe0"]) >= {"idle", "load", "inputs", "busy", "send"}
    assert m.hop_sizes and all(n > 0 and s > 0 for n, s in m.hop_sizes.values())
    assert m.nic_pace["snic_read[1]"]["transfers"] > 0
    order = ["arrive", "placed", "ready", "queued", "prefill_start", "first_token", "joined", "finished", "persisted"]
    for t in turns:
        stamps = [getattr(t, k) for k in order]
        assert min(stamps) > 0 and stamps == sorted(stamps), (t.rid, stamps)
    assert sum(m.stages_s.values()) == pytest.approx(sum(t.persisted - t.arrive for t in turns) / len(turns))


def test_2p2d_on_four_processes(two_p_two_d):
    (m, turns, ref), _ = two_p_two_d
    assert m.turns == 4 and set(m.gpu_busy) == {"pe0", "pe1", "de2", "de3"}
    assert m.bytes_read == m.hit_bytes > 0
    assert_logits(turns, ref)


def test_a_dead_node_fails_the_run_fast_and_is_named(two_p_two_d):
    _, (message, fail_s) = two_p_two_d
    # whichever is seen first: the process's exit, or its socket dropping
    assert "node 3 (decode node, engines [3]" in message, message
    assert "exited with status -9" in message or "is not connected" in message, message
    assert fail_s < 5.0, fail_s


def test_a_process_count_other_than_the_node_count_names_its_field():
    from dualpath_jax.config import ConfigError

    with pytest.raises(ConfigError, match=r"testbed.processes: must be the cluster's node count \(2: .*got 3"):
        MPHost(config(), spec(3), agents())

"""The online experiment: arrivals, latencies on a hand-made timeline, capacity search, a small run."""

import re

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dualpath_jax.config import ConfigError, ModelSpec, SLOSpec, ThinkSpec, from_dict
from dualpath_jax.configure import build_config
from dualpath_jax.online import find_capacity, poisson_arrivals, request_latencies, slo_met, think_sampler
from dualpath_jax.online.run import run_capacity, run_online
from dualpath_jax.paths import load_named

from .helpers import ROOT


@pytest.mark.parametrize("rate, duration", [(0.5, 20000.0), (4.0, 5000.0)])
def test_poisson_arrivals_have_the_requested_rate(rate, duration):
    t = poisson_arrivals(rate, duration, seed=3)
    n = rate * duration
    assert abs(len(t) - n) < 4 * np.sqrt(n)  # within 4 sigma of the Poisson count
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    assert gaps.std() == pytest.approx(1 / rate, rel=0.08)  # exponential: std = mean
    assert t.min() >= 0 and t.max() < duration and np.all(gaps > 0)
    assert np.array_equal(t, poisson_arrivals(rate, duration, seed=3))


def test_latencies_on_a_hand_made_timeline():
    # request A: arrives 0, first token 1.0, joins decode 1.2, second token 1.25, 5 tokens done 1.4
    # request B: arrives 2, first token 2.5, a single output token
    lat = request_latencies(
        arrive=[0.0, 2.0],
        first_token=[1.0, 2.5],
        second_token=[1.25, -1.0],
        finished=[1.4, 2.6],
        joined=[1.2, 2.55],
        output=[5, 1],
    )
    assert lat["ttft_s"].tolist() == [1.0, 0.5]
    assert lat["ttst_s"].tolist() == [1.25]
    assert lat["tpot_s"] == pytest.approx([0.05])
    ok, ttft, tpot = slo_met(lat, SLOSpec(ttft_s=1.0, tpot_s=0.06, percentile=100))
    assert ok and ttft == 1.0 and tpot == pytest.approx(0.05)
    assert not slo_met(lat, SLOSpec(ttft_s=0.9, tpot_s=0.06, percentile=100))[0]
    assert not slo_met(lat, SLOSpec(ttft_s=4.0, tpot_s=0.04, percentile=100))[0]


@pytest.mark.parametrize("threshold", [0.07, 1.0, 3.7, 55.0])
def test_capacity_search_brackets_a_known_threshold(threshold):
    cap, probes = find_capacity(lambda aps: aps <= threshold, lo=0.05, rel_tol=0.02, max_probes=40)
    assert threshold / 1.02 <= cap <= threshold
    failing = [a for a, ok in probes if not ok]
    assert min(failing) / cap - 1 <= 0.02 + 1e-9


def test_capacity_search_when_nothing_passes():
    assert find_capacity(lambda aps: False, lo=0.05)[0] == 0.0


def test_think_time_sampler():
    assert think_sampler(ThinkSpec(), 0)() == 0.0
    assert think_sampler(ThinkSpec("fixed", 3.0), 0)() == 3.0
    draws = [think_sampler(ThinkSpec("exponential", 10.0), 1)() for _ in range(1)]
    s = think_sampler(ThinkSpec("exponential", 10.0), 1)
    draws = np.array([s() for _ in range(20000)])
    assert draws.mean() == pytest.approx(10.0, rel=0.05)
    with pytest.raises(ValueError, match="online.think.kind='gamma'"):
        think_sampler(ThinkSpec("gamma", 1.0), 0)


def online_cfg(extra=()):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        raw = OmegaConf.to_container(
            compose(
                "online",
                overrides=[
                    "+aps=0.2",
                    "+len=32k",
                    "model=ds27b",
                    "cluster=1p1d",
                    "workload.trajectories=20",
                    "online.duration_s=120",
                    "online.warmup_s=20",
                    "tracking.wandb=false",
                    *extra,
                ],
            ),
            resolve=True,
        )
    return build_config(raw, online=True)


def test_small_online_run_and_think_time_grows_the_working_set():
    anchor = from_dict(ModelSpec, load_named("model", "dsv3"))
    base = run_online(online_cfg(), anchor)
    slow = run_online(online_cfg(["online.think.kind=fixed", "online.think.mean_s=20"]), anchor)
    for res in (base, slow):
        assert set(res) == {"basic", "dualpath", "oracle"}
        d = res["dualpath"]
        assert d["agents"] > 0 and d["window_requests"] > 0
        br = d["ttft_breakdown_s"]
        assert all(v >= 0 for v in br.values())
        assert d["latency"]["ttst_s"]["p50"] >= d["latency"]["ttft_s"]["p50"]
    # Agents that pause between turns stay alive longer, so more of their KV sits in storage.
    assert slow["dualpath"]["working_set_bytes"]["mean"] > base["dualpath"]["working_set_bytes"]["mean"]
    assert slow["dualpath"]["agent_jct_s"]["mean"] > base["dualpath"]["agent_jct_s"]["mean"]


def test_online_needs_aps_or_capacity():
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        raw = OmegaConf.to_container(compose("online", overrides=["+len=32k"]), resolve=True)
    with pytest.raises(ConfigError, match=r"\+aps=<agents per second>"):
        build_config(raw, online=True)


def test_online_says_it_has_no_real_backend():
    with pytest.raises(ConfigError, match=r"backend='real': the online experiment runs on the simulator only"):
        online_cfg(["backend=real"])


def test_the_capacity_search_gives_the_same_numbers_with_its_systems_side_by_side():
    cfg = online_cfg(["online.capacity_lo=0.4", "online.capacity_max_probes=3"])
    anchor = from_dict(ModelSpec, load_named("model", "dsv3"))
    logs = {1: [], 3: []}
    results = {jobs: run_capacity(cfg, anchor, log=logs[jobs].append, jobs=jobs) for jobs in logs}
    assert results[1] == results[3] and list(results[3]) == ["basic", "dualpath", "oracle"]
    assert all(len(r["probes"]) == 3 for r in results[1].values())
    assert logs[1] == logs[3] and len(logs[1]) == 9  # every probe logged, each system's together


def test_the_online_command_shows_a_turns_bar_per_system(tmp_path):
    from .helpers import project_workdir, run_cli

    work = project_workdir(tmp_path)
    args = ["model=ds27b", "cluster=1p1d", "+aps=1", "+len=32k", "workload.trajectories=8", "tracking.wandb=false"]
    out = run_cli(
        "experiments.online", [*args, "online.duration_s=30", "online.warmup_s=5", f"results_dir={work / 'r'}"], work
    )
    assert out.returncode == 0, out.stderr
    done = [re.match(r"\s*(\w+) .* (\d+)/(\d+) turns", ln) for ln in out.stdout.splitlines()]
    bars = [m.group(1) for m in done if m and m.group(2) == m.group(3)]  # each bar ran to its total
    assert bars == ["basic", "dualpath", "oracle"]

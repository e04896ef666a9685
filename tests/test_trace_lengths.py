"""+len and +aps are asked for only where they shape the run, and name only the files they shaped:
a trace workload (jsonl, mooncake) brings its own turns (no +len), trace arrivals replay the
trace's timestamps (no +aps)."""

import pytest

from dualpath_jax.config import ConfigError
from dualpath_jax.configure import build_config
from dualpath_jax.results import cell_of
from experiments.figures import cells

BASE = [*cells.QUIET, "model=ds27b", "cluster=1p1d"]


def offline(overrides):
    return build_config(cells.compose("offline", [*BASE, "+agents=6", *overrides]))


def online(overrides):
    return build_config(cells.compose("online", [*BASE, *overrides]), online=True)


def test_a_trace_workload_needs_no_len_and_names_none():
    cfg = offline(["workload=mooncake"])
    assert (cfg.workload.mal, cfg.workload.mal_label) == (0, "")
    name = cell_of(cfg, "offline", "res").path.name
    assert name.startswith("agents6_mooncake_costv2-") and "len" not in name
    with pytest.raises(ConfigError, match=r"^\+len=32k: workload=mooncake replays .* drop it"):
        offline(["workload=mooncake", "+len=32k"])


def test_trace_arrivals_need_no_aps_and_name_none():
    cfg = online(["workload=mooncake", "online.arrivals=trace"])
    name = cell_of(cfg, "online", "res").path.name
    assert name.startswith("trace_mooncake_costv2-") and "aps" not in name
    with pytest.raises(ConfigError, match=r"^\+aps=0\.5: online\.arrivals=trace .* drop it"):
        online(["workload=mooncake", "online.arrivals=trace", "+aps=0.5"])


def test_where_they_shape_the_run_they_are_still_required():
    with pytest.raises(ConfigError, match=r"^missing 'len': .*\+len=64k"):
        offline([])  # workload=synthetic: +len picks the trace statistics
    with pytest.raises(ConfigError, match=r"^\+aps: missing; append \+aps="):
        online(["workload=mooncake"])  # Poisson arrivals need their rate


def test_trace_arrivals_report_the_traces_own_rate():
    """The summary's aps under trace arrivals is the agents that arrived over the window, not 0."""
    from dualpath_jax.configure import anchor_model
    from dualpath_jax.online.run import _arrivals, run_online
    from dualpath_jax.paths import ROOT
    from dualpath_jax.workload import load_trajectories

    cfg = online(["workload=mooncake", "online.arrivals=trace", "online.duration_s=20", "online.warmup_s=0"])
    agents, _, replay = _arrivals(cfg, load_trajectories(cfg.workload, ROOT), 0.0)
    assert replay and agents
    [summary] = run_online(cfg, anchor_model(cfg), systems=cfg.systems[:1]).values()
    assert summary["aps"] == len(agents) / 20

"""Bottleneck attribution (cost model v2 runs): no JCT is below any of its floors, and the floor
named as the one that sets it is the largest."""

from pathlib import Path

import pytest

from dualpath_jax.attribution import FLOORS, chain_floor_s
from experiments.figures import cells

from .helpers import cost_for, growing_agents, small_config

TINY = ["model=ds27b", "cluster=1p1d", "+agents=8", "+len=32k", "workload.trajectories=8"]


@pytest.mark.parametrize(
    "extra",
    [[], ["cluster.snic_gbps=25"], ["model=ds660b", "cluster=2p4d", "system=all"]],
    ids=["paper NIC", "slow NIC", "ds660b all systems"],
)
def test_no_jct_below_its_floors_and_the_largest_floor_sets_it(tmp_path, extra):
    data = cells.offline([*TINY, "costmodel=v2", *extra], results_dir=tmp_path)
    assert set(data["attribution"]) == set(data["systems"])
    for name, a in data["attribution"].items():
        jct = data["systems"][name]["jct_s"]
        assert all(a["floors_s"][f] <= jct * (1 + 1e-9) for f in FLOORS), (name, a, jct)
        assert a["floors_s"][a["set_by"]] == max(a["floors_s"].values())
        assert a["jct_over_floor"] == pytest.approx(jct / a["floors_s"][a["set_by"]])
    if "cluster.snic_gbps=25" in extra:  # a slow storage NIC makes Basic's reads the floor that sets its JCT
        basic = data["attribution"]["basic"]
        assert basic["set_by"] == "io"
        # Basic reads through the one PE node, at 86% of its 25 Gb/s (costmodel.storage_efficiency)
        read = data["systems"]["basic"]["bytes_read"]
        assert basic["floors_s"]["io"] == pytest.approx(read / (25e9 / 8 * 0.86), rel=1e-12)


def test_v1_results_carry_no_attribution_and_v2_ones_do(tmp_path):
    v1 = cells.offline([*TINY, "costmodel=v1"], results_dir=tmp_path)
    assert "attribution" not in v1 and "fidelity" not in v1
    v2 = cells.offline([*TINY, "costmodel=v2"], results_dir=tmp_path)
    assert "_costv2-" in v2["_path"] and set(v2["fidelity"]) == set(v2["attribution"]) == set(v2["systems"])
    # the table stored beside the file says which floor sets each JCT, whichever entry point ran it
    text = Path(v2["_path"]).with_suffix(".txt").read_text()
    assert all(f"{s}: floors I/O" in text for s in v2["systems"]) and "set by" in text
    assert "floors" not in Path(v1["_path"]).with_suffix(".txt").read_text()


def test_the_chain_floor_is_the_longest_agent_sum():
    cfg = small_config()
    cost = cost_for(cfg)
    one, two = growing_agents(1, turns=3), growing_agents(1, turns=6)
    assert 0 < chain_floor_s(one, cost) < chain_floor_s(two, cost)
    assert chain_floor_s(one + two, cost) == chain_floor_s(two, cost)

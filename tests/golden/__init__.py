"""Golden results files: tiny cells whose results files are compared byte for byte.

A change that moves any number changes one of these files and fails `tests/test_golden.py`. If the
change is meant, bump `dualpath_jax.results.provenance.SIM_SEMANTICS`, regenerate them with
`python -m tests.golden.regenerate`, and say in the commit why the numbers moved.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY = ["workload.trajectories=12", "+agents=12", "+len=32k"]
ONLINE = [
    "workload.trajectories=12",
    "+len=32k",
    "online.duration_s=120",
    "online.warmup_s=20",
    "online.capacity_max_probes=4",
]
# name -> cell spec (experiments.figures.cells): every system set, both batchings, a DRAM tier,
# split reads, tensor parallelism, the Mooncake import, online latency with think time, and the
# capacity search; each under cost model v1 and the main ones under v2.
V1, V2 = "costmodel=v1", "costmodel=v2"  # explicit, so that a change of the default moves no golden file
CELLS = {
    "offline_ds27b_1p1d_all": ("offline", ["model=ds27b", "cluster=1p1d", "system=all", V1, *TINY]),
    "offline_ds660b_2p4d_ablation": ("offline", ["model=ds660b", "system=ablation", V1, *TINY]),
    "offline_ds660b_2p4d_schedulers": ("offline", ["model=ds660b", "system=schedulers", V1, *TINY]),
    "offline_qwen32b_1p2d_all": ("offline", ["model=qwen32b", "system=all", V1, *TINY]),
    "offline_ds27b_1p1d_mooncake": (
        "offline",
        ["model=ds27b", "cluster=1p1d", "workload=mooncake", "+agents=40", V1],
    ),
    "online_ds27b_1p1d_think": (
        "online",
        ["model=ds27b", "cluster=1p1d", "online.think.kind=exponential", "online.think.mean_s=5", V1, *ONLINE],
        0.5,
    ),
    "capacity_ds27b_1p1d": ("capacity", ["model=ds27b", "cluster=1p1d", "online.capacity_lo=2", V1, *ONLINE]),
    # cost model v2: its terms, its calibration, the attribution of each system's JCT and its
    # fidelity metrics, offline, online and in the capacity search
    "offline_ds660b_2p4d_costv2": ("offline", ["model=ds660b", "system=all", V2, *TINY]),
    "offline_ds660b_2p4d_ablation_costv2": ("offline", ["model=ds660b", "system=ablation", V2, *TINY]),
    "online_ds27b_1p1d_think_costv2": (
        "online",
        ["model=ds27b", "cluster=1p1d", "online.think.kind=exponential", "online.think.mean_s=5", V2, *ONLINE],
        0.5,
    ),
    "capacity_ds27b_1p1d_costv2": ("capacity", ["model=ds27b", "cluster=1p1d", "online.capacity_lo=2", V2, *ONLINE]),
}


def render(spec: tuple) -> str:
    """The results file of a golden cell, without the checkout's commit (so it is the same bytes
    on every commit that computes the same numbers)."""
    from dualpath_jax.results import code_info
    from dualpath_jax.results.store import document, dumps
    from experiments.figures import cells

    cell = cells.locate(spec, HERE / "unused")
    payload, _ = cells.compute(cell)
    return dumps(document(cell, payload, code_info(git=False)))


def path_of(name: str) -> Path:
    return HERE / f"{name}.json"

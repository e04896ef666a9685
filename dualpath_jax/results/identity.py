"""Cell identity: which results file holds which experiment.

A cell is one experiment run (kind offline, online at one arrival rate, or capacity). Its identity
is the resolved config minus what cannot change the numbers, plus digests of the input files it
reads:

    {"kind": "offline", "config": {...}, "inputs": {"workload_sha256": "..."}}

Left out: `results_dir`, `tracking` and `sim.progress` always (and `sim.record_turns` reads as
false); on offline runs the `online` section and the top-level `seed` (only online think times draw
from it); on simulator runs the `testbed` section; `online.think.sigma` and `online.think.trace`
unless the think kind reads them (lognormal, trace: so every other cell keeps the identity it had
before they existed; a trace think time adds its file's digest to the inputs); with
`costmodel.version=v1` the `costmodel` section (v1 reads none of it, so every v1 cell keeps the
identity it had before v2 existed), and with v2 `costmodel.anchor_ep_*` at their defaults (as
before those fields existed) and `costmodel.table` (only `costmodel=profiled` reads one; its cells
add the table's digest to the inputs). The file name keeps a readable part
(`_costv2` marks a v2 cell) and adds the first 8 hex digits of the SHA-256 of the canonical
identity JSON, e.g. `agents1024_len64k-3f9a2c1d.json`: two cells never share a file, the same
cell always maps to the same file, and the readable part says which cell it is to a person who
lists the folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError, CostModelSpec, ExperimentConfig, to_dict
from ..paths import repo_path

KINDS = ("offline", "online", "capacity")
ALWAYS_IGNORED = ("results_dir", "tracking")
HASH_CHARS = 8


def model_name(cfg: ExperimentConfig) -> str:
    """The model that ran: the simulator's ModelSpec, or the testbed's Flax model (backend=real)."""
    return cfg.testbed.model if cfg.backend == "real" else cfg.model.name


def cell_config(cfg: ExperimentConfig, kind: str) -> dict:
    """The config of `cfg` as it enters the identity (plain JSON types)."""
    if kind not in KINDS:
        raise ValueError(f"cell kind {kind!r} is unknown; known: {', '.join(KINDS)}")
    out = to_dict(cfg)
    for key in ALWAYS_IGNORED:
        out.pop(key)
    out["sim"].pop("progress")
    out["sim"]["record_turns"] = False  # records change no number (results/turns.py): one cell either way
    if cfg.costmodel.version == "v1":
        out.pop("costmodel")  # v1 has no parameters: its cells keep the identity they had before v2
    else:
        if cfg.costmodel.version != "profiled":
            out["costmodel"].pop(
                "table"
            )  # as before profiled tables existed: the same cells  # the anchor's EP enters only when changed: other cells keep the identity they had before it
        for key in ("anchor_ep_prefill", "anchor_ep_decode"):
            if out["costmodel"][key] == getattr(CostModelSpec, key):
                out["costmodel"].pop(key)
    if cfg.workload.turns_sigma_scale == 1.0:
        out["workload"].pop("turns_sigma_scale")  # as before the knob existed: the same cells
    if kind == "offline":
        out.pop("online")
        out.pop("seed")
    else:  # a think field enters only with the kind that reads it: other cells keep their identity
        think = out["online"]["think"]
        if cfg.online.think.kind != "lognormal":
            think.pop("sigma")
        if cfg.online.think.kind != "trace":
            think.pop("trace")
    if kind != "offline" or cfg.backend == "sim":
        out.pop("testbed")
    return out


def workload_file(cfg: ExperimentConfig) -> Path | None:
    """The trace file the workload reads (relative paths are from the repository root)."""
    if cfg.workload.source == "synthetic":
        return None
    return repo_path(cfg.workload.path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cell_inputs(cfg: ExperimentConfig) -> dict:
    out = {}
    path = workload_file(cfg)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config.workload.path: {path}: trace file not found")
        out["workload_sha256"] = file_sha256(path)
    if cfg.costmodel.version == "profiled":  # its times come from this file: two tables, two cells
        path = repo_path(cfg.costmodel.table)
        if not path.is_file():
            raise ConfigError(f"config.costmodel.table: {path}: no such file")
        out["costmodel_table_sha256"] = file_sha256(path)
    if cfg.online.think.kind == "trace":  # the think times are drawn from this file's gaps
        path = repo_path(cfg.online.think.trace)
        if not path.is_file():
            raise ConfigError(f"config.online.think.trace: {path}: trace file not found")
        out["think_trace_sha256"] = file_sha256(path)
    return out


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def digest(identity: dict) -> str:
    return hashlib.sha256(canonical(identity)).hexdigest()[:HASH_CHARS]


def readable_name(cfg: ExperimentConfig, kind: str) -> str:
    """The part of a file name a person reads: agents1024_len64k_all, aps0.5_len64k_thinkfixed30."""
    w = cfg.workload
    replay = kind != "offline" and cfg.online.arrivals == "trace"
    if kind == "offline":
        name = f"agents{w.agents}"
    else:
        name = "capacity" if kind == "capacity" else "trace" if replay else f"aps{cfg.online.aps:g}"
    if w.mal_label:  # no +len (a trace workload): no length in the name
        name += f"_len{w.mal_label}"
    if cfg.system_set != "paper":
        name += f"_{cfg.system_set}"
    if kind == "offline" and cfg.backend != "sim":
        name += f"_{cfg.backend}"
    if w.append_scale != 1.0 or w.gen_scale != 1.0:
        name += f"_append{w.append_scale:g}_gen{w.gen_scale:g}"
    if w.source != "synthetic":
        name += f"_{w.source}"
    if cfg.costmodel.version != "v1":
        name += f"_cost{cfg.costmodel.version}"
    if kind != "offline":
        think = cfg.online.think
        if think.kind != "none":
            name += f"_think{think.kind}{think.mean_s:g}"
        if think.kind == "lognormal":
            name += f"_sigma{think.sigma:g}"
    return name


@dataclass(frozen=True)
class Cell:
    """One experiment cell: its config, identity and results file."""

    kind: str
    cfg: ExperimentConfig
    identity: dict
    id: str
    path: Path

    @property
    def table_path(self) -> Path:
        return self.path.with_suffix(".txt")


def cell_of(cfg: ExperimentConfig, kind: str, results_dir: str | Path | None = None) -> Cell:
    identity = {"kind": kind, "config": cell_config(cfg, kind), "inputs": cell_inputs(cfg)}
    cid = digest(identity)
    base = Path(results_dir if results_dir is not None else cfg.results_dir)
    folder = base / ("offline" if kind == "offline" else "online") / f"{model_name(cfg)}_{cfg.cluster.name}"
    return Cell(kind, cfg, identity, cid, folder / f"{readable_name(cfg, kind)}-{cid}.json")

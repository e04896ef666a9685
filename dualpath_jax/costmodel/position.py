"""The cost model's cost of one token at token position p, and the anchor it is compared against.

The anchor (configs/anchors/dsv32_cost_position.yaml) is DeepSeek's cost per million tokens by
token position for DeepSeek-V3.1-Terminus (dense MLA, our `dsv3`) and DeepSeek-V3.2-Exp (DSA,
our `ds660b`) on H800 at 2 USD per GPU hour. The model side uses cost model v2 calibrated as
everywhere else (`calibrate(dsv3, hardware, 8, terms)`: DeepSeek's Day-6 per-node rates), on
DeepSeek's deployment: prefill EP32 (`ep_max_prefill` GPUs, 4 nodes) and decode EP144
(`calibration.decode_gpus`, 18 nodes). Definitions, chosen from first principles and not fitted
to the anchor:

- prefill: a step of one chunk of the anchor batch (`terms.prefill_anchor_batch_tokens`, 16,384
  tokens per GPU) centred on p, priced as the simulator prices a step (`cost.prefill_step`: its
  fixed latency and weight floor included), per token. (The first version priced one token after p
  cached; MLA prices a single query in its absorbed form, which no chunked prefill uses, so that
  probe measured something the simulator never runs: V3.1 came out 3.3-4.9x the anchor.)
- decode: one decode GPU's step at context p with batch b = min(anchor batch, requests whose KV
  at p + 1 tokens each fits `cost.kv_room_bytes("decode")`), the anchor batch being
  `decode_tokens_per_s_node / gpus_per_node / decode_tokens_per_s_request` (88);
  seconds per token = `cost.decode_step_time(b, b * decode_keys(p), b * p) / b`;
- USD per million tokens = seconds per token (one GPU's) x 1e6 x price / 3600.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..config import ClusterSpec, ConfigError, CostModelSpec, HardwareSpec, ModelSpec, _show, from_dict
from ..paths import ROOT, load_named, repo_path
from .analytic import CostModel, calibrate

ANCHOR_PATH = ROOT / "configs" / "anchors" / "dsv32_cost_position.yaml"
PRICE_USD_PER_GPU_HOUR = 2.0  # the anchor's price (DeepSeek-V3.2-Exp report)
STAGES = ("prefill", "decode")
V2 = CostModelSpec(version="v2")


def deepseek_cluster(hw: HardwareSpec, terms: CostModelSpec = V2, base: str = "2p4d") -> ClusterSpec:
    """configs/cluster/<base>.yaml resized to DeepSeek's deployment: `ep_max_prefill` prefill GPUs
    (EP32) and `calibration.decode_gpus` decode GPUs (EP144)."""
    raw = load_named("cluster", base)
    g = raw.get("gpus_per_node", 8)
    p, d = math.ceil(terms.ep_max_prefill / g), math.ceil(hw.calibration.decode_gpus / g)
    return from_dict(ClusterSpec, dict(raw, name=f"{p}p{d}d", prefill_nodes=p, decode_nodes=d), "cluster")


def position_cost_model(model: str, terms: CostModelSpec = V2, hardware: str = "h800") -> CostModel:
    """The cost model of configs/model/<model>.yaml on DeepSeek's deployment, calibrated on the
    hardware's anchor model."""
    hw = from_dict(HardwareSpec, load_named("hardware", hardware), "hardware")
    anchor = from_dict(ModelSpec, load_named("model", hw.calibration.anchor_model), "anchor_model")
    cluster = deepseek_cluster(hw, terms)
    eff = calibrate(anchor, hw, cluster.gpus_per_node, terms)
    return CostModel(from_dict(ModelSpec, load_named("model", model), "model"), cluster, hw, eff, terms)


def prefill_s_per_token(cost: CostModel, position: int) -> float:
    """GPU-seconds per token of a prefill step of one anchor-batch chunk (16,384 tokens) centred on
    `position` (from 0 below half a chunk): the step as the simulator prices it, its fixed latency
    and weight floor included."""
    n = cost.terms.prefill_anchor_batch_tokens
    attn, linear = cost.prefill_split(max(0, position - n // 2), n)
    return cost.prefill_step(attn + linear, 0.0) / n


def anchor_decode_batch(cost: CostModel) -> float:
    """Requests per decode GPU in the calibration anchor (14,800 / 8 / 21 = 88)."""
    cal = cost.hardware.calibration
    return cal.decode_tokens_per_s_node / cost.cluster.gpus_per_node / cal.decode_tokens_per_s_request


def decode_batch(cost: CostModel, position: int) -> float:
    """The anchor batch, or fewer: as many requests as fit the decode GPU's KV room at position + 1."""
    fit = math.floor(cost.kv_room_bytes("decode") / ((position + 1) * cost.kv_bytes_per_token))
    if fit < 1:
        raise ValueError(f"{cost.model.name}: one request's KV at {position + 1} tokens exceeds a decode GPU's room")
    return min(anchor_decode_batch(cost), fit)


def decode_s_per_token(cost: CostModel, position: int) -> float:
    """GPU-seconds per output token of a decode step whose requests all sit at `position`."""
    b = decode_batch(cost, position)
    return cost.decode_step_time(b, b * cost.counts.decode_keys(position), b * position) / b


def s_per_token(cost: CostModel, stage: str, position: int) -> float:
    if stage == "prefill":
        return prefill_s_per_token(cost, position)
    if stage == "decode":
        return decode_s_per_token(cost, position)
    raise ValueError(f"stage={stage!r} is unknown; known: {', '.join(STAGES)}")


def usd_per_million(seconds_per_token: float, price_usd_per_gpu_hour: float = PRICE_USD_PER_GPU_HOUR) -> float:
    return seconds_per_token * 1e6 * price_usd_per_gpu_hour / 3600


def tokens_per_s_per_gpu(usd_per_million_tokens: float, price_usd_per_gpu_hour: float = PRICE_USD_PER_GPU_HOUR):
    """The anchor's cost as a rate: price / 3600 * 1e6 / cost."""
    return price_usd_per_gpu_hour / 3600 * 1e6 / usd_per_million_tokens


# ---- the anchor file ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnchorCurve:
    name: str  # as in the figure's legend
    stage: str  # prefill or decode
    model: str  # configs/model/<model>.yaml
    points: tuple[tuple[int, float], ...]  # (position in tokens, USD per million tokens)


@dataclass(frozen=True)
class Anchor:
    source: str
    price_usd_per_gpu_hour: float
    read_error_usd: dict[str, float]
    curves: tuple[AnchorCurve, ...]
    path: Path

    def curve(self, stage: str, model: str) -> AnchorCurve:
        for c in self.curves:
            if (c.stage, c.model) == (stage, model):
                return c
        raise KeyError(f"{self.path}: no {stage} curve for model {model}")


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def load_anchor(path: str | Path = ANCHOR_PATH) -> Anchor:
    """The anchor file, checked; a malformed entry raises ConfigError naming the file and entry."""
    import yaml  # PyYAML comes with hydra-core

    path = repo_path(path)

    def fail(where: str, what: str) -> NoReturn:
        raise ConfigError(f"{path}: {where}: {what}")

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the anchor: {e}") from None
    if not isinstance(raw, dict):
        fail("top level", "expected a mapping with source, price_usd_per_gpu_hour, read_error_usd, curves")
    price = raw.get("price_usd_per_gpu_hour")
    if not _positive(price):
        fail("price_usd_per_gpu_hour", f"expected a positive number, got {_show(price)}")
    err = raw.get("read_error_usd")
    if not isinstance(err, dict) or set(err) != set(STAGES) or not all(_positive(v) for v in err.values()):
        fail("read_error_usd", f"expected {{prefill: <usd>, decode: <usd>}}, got {_show(err)}")
    curves = raw.get("curves")
    if not isinstance(curves, list) or not curves:
        fail("curves", f"expected a non-empty list of curves, got {_show(curves)}")
    out = []
    for i, c in enumerate(curves):
        where = f"curves[{i}]"
        if not isinstance(c, dict) or set(c) != {"name", "stage", "model", "points"}:
            fail(where, f"expected a mapping with name, stage, model, points, got {_show(c)}")
        if c["stage"] not in STAGES:
            fail(f"{where}.stage", f"expected one of {', '.join(STAGES)}, got {_show(c['stage'])}")
        try:
            load_named("model", c["model"])
        except ConfigError as e:
            fail(f"{where}.model", str(e))
        pts = c["points"]
        if not isinstance(pts, list) or not pts:
            fail(
                f"{where}.points", f"expected a non-empty list of [position_tokens, usd_per_million], got {_show(pts)}"
            )
        points = []
        for j, pt in enumerate(pts):
            ok = isinstance(pt, list) and len(pt) == 2 and isinstance(pt[0], int) and _positive(pt[0])
            if not (ok and _positive(pt[1])):
                fail(
                    f"{where}.points[{j}]",
                    f"expected [position_tokens (int > 0), usd_per_million (> 0)], got {_show(pt)}",
                )
            if points and pt[0] <= points[-1][0]:
                fail(f"{where}.points[{j}]", f"positions must increase, got {pt[0]} after {points[-1][0]}")
            points.append((pt[0], float(pt[1])))
        out.append(AnchorCurve(str(c["name"]), c["stage"], c["model"], tuple(points)))
    keys = [(c.stage, c.model) for c in out]
    if len(set(keys)) != len(keys):
        fail("curves", f"one curve per (stage, model), got {keys}")
    return Anchor(str(raw.get("source", "")), float(price), {k: float(v) for k, v in err.items()}, tuple(out), path)

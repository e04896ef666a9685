"""Expert-parallel groups and their all-to-all latency (cost model v2).

A role's GPUs form EP groups of at most `ep_max_<role>` GPUs (DeepSeek deploys EP32 for prefill
and EP144 for decode; 256 routed experts cannot usefully spread over more). One MoE layer pays a
dispatch and a combine whose latency grows with the group: DeepEP's published low-latency kernel
table, interpolated linearly in log2(EP) and held flat outside it.
"""

from __future__ import annotations

import math

from ..config import CostModelSpec


def ep_group(role_gpus: int, ep_max: int) -> int:
    """GPUs in one EP group of a role with `role_gpus` GPUs."""
    return max(1, min(role_gpus, ep_max))


def ep_layer_latency_s(terms: CostModelSpec, ep: int) -> float:
    """Dispatch + combine seconds of one MoE layer across an EP group of `ep` GPUs (0 for EP1)."""
    if ep <= 1:
        return 0.0
    sizes = terms.ep_sizes
    per_size = [d + c for d, c in zip(terms.ep_dispatch_us, terms.ep_combine_us)]
    if ep <= sizes[0]:
        us = per_size[0]
    elif ep >= sizes[-1]:
        us = per_size[-1]
    else:
        i = next(k for k in range(1, len(sizes)) if sizes[k] >= ep)
        lo, hi = math.log2(sizes[i - 1]), math.log2(sizes[i])
        w = (math.log2(ep) - lo) / (hi - lo)
        us = per_size[i - 1] + w * (per_size[i] - per_size[i - 1])
    return us * 1e-6 * terms.ep_latency_scale

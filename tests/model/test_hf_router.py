"""The router rules (V3 noaux_tc, V2 greedy and group_limited_greedy, norm_topk_prob) against
transformers' routers on each fixture's first MoE layer (router logits from random hidden states)."""

import numpy as np
import pytest
from safetensors import safe_open

from dualpath_jax.model.moe import route

from .hf_fixtures import NAMES, config_json, path, reference


def _bias(name: str, layer: int, n_experts: int) -> np.ndarray:
    key = f"model.layers.{layer}.mlp.gate.e_score_correction_bias"
    for f in sorted(path(name).glob("*.safetensors")):
        with safe_open(f, framework="np") as st:
            if key in st.keys():
                return st.get_tensor(key)
    return np.zeros(n_experts, np.float32)  # V2 has no selection bias


@pytest.mark.parametrize("name", NAMES)
def test_router_matches_transformers(name):
    cfg, ref = config_json(name), reference(name)
    method = cfg.get("topk_method", "noaux_tc")
    w, idx = route(
        ref["router_logits"],
        _bias(name, cfg["first_k_dense_replace"], cfg["n_routed_experts"]),
        top_k=cfg["num_experts_per_tok"],
        n_group=cfg.get("n_group") or 1,
        topk_group=cfg.get("topk_group") or 1,
        scaling=cfg["routed_scaling_factor"],
        method=method,
        norm_topk_prob=cfg["norm_topk_prob"],
    )
    w, idx = np.asarray(w), np.asarray(idx)
    # Same expert sets, same weight per expert (transformers' top-k is unsorted).
    for t in range(idx.shape[0]):
        got = dict(zip(idx[t].tolist(), w[t]))
        want = dict(zip(ref["router_indices"][t].tolist(), ref["router_weights"][t]))
        assert sorted(got) == sorted(want), (name, t)
        for e in want:
            assert got[e] == pytest.approx(want[e], rel=1e-5), (name, t, e)

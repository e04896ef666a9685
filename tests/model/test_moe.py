"""Every grouped-matmul backend against the dense reference; capacity dropping of `sort`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dualpath_jax.model import get_config
from dualpath_jax.model.moe import MoE, capacity, moe_dense, moe_ragged, moe_sort


@pytest.fixture(scope="module")
def moe_and_input():
    cfg = get_config("tiny")
    moe = MoE(cfg, rngs=nnx.Rngs(3))
    moe.e_bias[...] = jax.random.normal(jax.random.key(4), (cfg.n_routed_experts,)) * 0.3
    x = jax.random.normal(jax.random.key(5), (48, cfg.d_model), jnp.float32)
    w, idx = moe.router(x)
    ws = (moe.w_gate[...], moe.w_up[...], moe.w_down[...])
    return cfg, moe, x, w, idx, ws


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_backends_match_dense(moe_and_input):
    cfg, moe, x, w, idx, ws = moe_and_input
    ref = moe_dense(x, w, idx, *ws)
    assert float(jnp.linalg.norm(ref)) > 0
    assert _rel(moe_sort(x, w, idx, *ws, capacity_factor=0.0), ref) < 1e-5
    assert _rel(moe_ragged(x, w, idx, *ws), ref) < 1e-5
    # Through the module (router + shared experts), each backend by name.
    full = {b: moe(x[None], backend=b, capacity_factor=0.0)[0] for b in ("sort", "ragged", "dense")}
    assert _rel(full["sort"], full["dense"]) < 1e-5
    assert _rel(full["ragged"], full["dense"]) < 1e-5


def test_sort_capacity_drops_late_assignments(moe_and_input):
    cfg, moe, x, w, idx, ws = moe_and_input
    t, k = idx.shape
    cf = 0.5
    cap = capacity(t, k, cfg.n_routed_experts, cf)
    idx_np, w_np = np.asarray(idx), np.asarray(w).copy()
    # Assignments are served per expert in token order; past `cap` they are dropped.
    seen = np.zeros(cfg.n_routed_experts, int)
    dropped = 0
    for tok in range(t):
        for j in range(k):
            e = idx_np[tok, j]
            if seen[e] >= cap:
                w_np[tok, j] = 0.0
                dropped += 1
            seen[e] += 1
    assert dropped > 0
    ref = moe_dense(x, jnp.asarray(w_np), idx, *ws)
    assert _rel(moe_sort(x, w, idx, *ws, capacity_factor=cf), ref) < 1e-5

"""YaRN rope against transformers' values for each fixture's config (frequencies, the factor on
cos/sin, the softmax scale), and the rope angles the model uses."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from dualpath_jax.model.config import RopeYarn
from dualpath_jax.model.layers import rope_angles
from dualpath_jax.model.rope import yarn_inv_freq, yarn_rope_factor, yarn_softmax_factor

from .hf_fixtures import NAMES, config_json, reference


def _yarn(cfg: dict) -> tuple[RopeYarn, float]:
    """Written here from the config's keys (both spellings), independent of the loader."""
    rp = cfg.get("rope_parameters") or dict(cfg["rope_scaling"], rope_theta=cfg["rope_theta"])
    yarn = RopeYarn(
        factor=rp["factor"],
        original_max_position=rp["original_max_position_embeddings"],
        beta_fast=rp["beta_fast"],
        beta_slow=rp["beta_slow"],
        mscale=rp["mscale"],
        mscale_all_dim=rp["mscale_all_dim"],
    )
    return yarn, rp["rope_theta"]


@pytest.mark.parametrize("name", NAMES)
def test_yarn_matches_transformers(name):
    cfg, ref = config_json(name), reference(name)
    yarn, theta = _yarn(cfg)
    rope_dim = cfg["qk_rope_head_dim"]
    np.testing.assert_allclose(yarn_inv_freq(rope_dim, theta, yarn), ref["rope_inv_freq"], rtol=1e-6)
    assert yarn_rope_factor(yarn) == pytest.approx(float(ref["rope_attention_scaling"]), rel=1e-12)
    scale = yarn_softmax_factor(yarn) / math.sqrt(cfg["qk_nope_head_dim"] + rope_dim)
    assert scale == pytest.approx(float(ref["softmax_scale"]), rel=1e-12)


def test_rope_angles_carry_the_yarn_factor():
    yarn = RopeYarn(factor=4.0, original_max_position=64, mscale=1.0, mscale_all_dim=0.8)
    pos = jnp.arange(5)
    cos, sin = rope_angles(pos, 8, 10000.0, yarn)
    ang = np.arange(5)[:, None] * yarn_inv_freq(8, 10000.0, yarn)[None, :]
    f = yarn_rope_factor(yarn)
    np.testing.assert_allclose(np.asarray(cos), np.cos(ang) * f, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(sin), np.sin(ang) * f, rtol=1e-6, atol=1e-7)
    plain_cos, _ = rope_angles(pos, 8, 10000.0)
    assert not np.allclose(np.asarray(plain_cos), np.asarray(cos))

import jax
import numpy as np
import pytest
from flax import nnx

from dualpath_jax.model import get_config, make_model
from dualpath_jax.model.checkpoint import restore, save


def test_orbax_round_trip_is_exact(tmp_path):
    cfg = get_config("tiny", n_layers=2)
    model = make_model(cfg, seed=5)
    path = save(model, tmp_path / "ckpt")
    restored = restore(cfg, path)
    a = jax.tree.leaves(nnx.state(model))
    b = jax.tree.leaves(nnx.state(restored))
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(np.asarray(x), np.asarray(y))
    # A different seed really differs (the check above can fail).
    other = jax.tree.leaves(nnx.state(make_model(cfg, seed=6)))
    assert not all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, other))
    with pytest.raises(FileExistsError):
        save(model, path)
    with pytest.raises(FileNotFoundError):
        restore(cfg, tmp_path / "missing")


def test_fast_init_matches_structure():
    from dualpath_jax.model import make_model_fast

    cfg = get_config("tiny", n_layers=2)
    a = jax.tree.leaves(nnx.state(make_model(cfg, seed=1)))
    b = jax.tree.leaves(nnx.state(make_model_fast(cfg, seed=1)))
    assert [(x.shape, x.dtype) for x in a] == [(y.shape, y.dtype) for y in b]
    assert all(np.isfinite(np.asarray(y)).all() for y in b)

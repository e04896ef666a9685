"""Orbax save/restore of model weights (the nnx state), restored into an abstract model."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from flax import nnx

from .config import ModelConfig
from .model import Transformer, abstract_model


def save(model: Transformer, directory: str | os.PathLike) -> str:
    """Write the model's weights to `directory` (must not exist yet). Returns the path."""
    path = os.path.abspath(os.fspath(directory))
    if os.path.exists(path):
        raise FileExistsError(f"checkpoint directory already exists: {path}")
    state = nnx.state(model)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, state)
    return path


def restore(cfg: ModelConfig, directory: str | os.PathLike) -> Transformer:
    """Build `cfg`'s model with the weights saved in `directory` (no random init is run)."""
    path = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint directory at {path}")
    abstract = abstract_model(cfg)
    graphdef, abs_state = nnx.split(abstract)
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
        abs_state,
    )
    with ocp.StandardCheckpointer() as ckpt:
        state = ckpt.restore(path, target)
    return nnx.merge(graphdef, state)

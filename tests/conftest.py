"""Test-wide setup: JAX on CPU with several fake devices, so multi-device code runs in CI."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def workdir(tmp_path):
    """A scratch folder to run the CLI from (tests/helpers.py run_cli)."""
    from .helpers import project_workdir

    return project_workdir(tmp_path)

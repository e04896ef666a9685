"""Test-wide setup: JAX on CPU with several fake devices, so multi-device code runs in CI."""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("WANDB_MODE", "disabled")

# One XLA compilation cache for the whole run: the testbed tests (and the CLI subprocesses, which
# inherit the environment, as do pytest-xdist's workers) build several hosts whose prefill and
# decode functions have the same shapes, and each would otherwise compile them again. A fresh folder
# per run, removed by the process that made it, so no run reuses another's compiles.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="dualpath-jax-xla-cache-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def workdir(tmp_path):
    """A scratch folder to run the CLI from (tests/helpers.py run_cli)."""
    from .helpers import project_workdir

    return project_workdir(tmp_path)

"""A sweep through Ray (`hydra/launcher=ray`, the `.[ray]` extra): a Ray node on loopback, a
two-cell offline sweep run through it, then the same sweep again, which skips both cells."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from .helpers import run_cli

if os.environ.get("CI") != "true":  # CI installs the extra (.ci/run): there a missing plugin fails
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason='needs pip install -e ".[ray]"')

SMALL = ["model=ds27b", "cluster=1p1d", "workload.trajectories=24", "tracking.wandb=false", "sim.progress=false"]
# Ray refuses a loopback node address on Linux unless told it is not a cluster machine (the
# setting Ray itself uses on macOS); no token to write under ~/.ray for a node only this test uses
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_node(tmp_path):
    """A one-node Ray cluster on 127.0.0.1 (`ray start --head --block`), started in a folder of its
    own (so its workers start away from the sweep's folder), stopped by its pid afterwards. One CPU:
    one worker per sweep, so the project is imported once, not once per cell."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    log = (tmp_path / "ray_start.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=1",
        ]
        + ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
        cwd=node_dir,
        env={**os.environ, **LOOPBACK},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in (tmp_path / "ray_start.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "ray_start.log").read_text()
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()  # `ray start --block` stops the node's processes on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # the node's processes are in the session it started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_sweep_writes_both_cells_and_resumes(workdir, ray_node):
    sweep = ["--multirun", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_node}"]
    args = [*sweep, "+agents=4,8", "+len=32k", *SMALL, "results_dir=res"]  # relative: to the sweep's folder

    first = run_cli("experiments.offline", args, workdir, LOOPBACK)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert "Connected to Ray cluster" in first.stderr
    # each cell's output comes back from a Ray worker process, prefixed with its task and pid
    ran_on = re.findall(r"\(_run_job pid=(\d+)\).*results: res/offline/ds27b_1p1d/agents(\d+)_", first.stdout)
    assert sorted(n for _, n in ran_on) == ["4", "8"], first.stdout[-3000:]
    assert str(os.getpid()) not in {pid for pid, _ in ran_on}
    stored = sorted(p.name for p in (workdir / "res" / "offline" / "ds27b_1p1d").glob("*.json"))
    assert [re.sub(r"-[0-9a-f]{8}\.", ".", n) for n in stored] == [
        "agents4_len32k_costv2.json",
        "agents8_len32k_costv2.json",
    ]
    assert re.search(r"sweep \S+: 2 cells, 2 ran, 0 skipped, 0 failed", first.stderr), first.stderr[-2000:]
    assert not (workdir / "node" / "res").exists()  # nothing written where the Ray node started

    second = run_cli("experiments.offline", args, workdir, LOOPBACK)
    assert second.returncode == 0, second.stderr[-3000:]
    assert re.search(r"sweep \S+: 2 cells, 0 ran, 2 skipped, 0 failed", second.stderr), second.stderr[-2000:]
    assert sorted(re.findall(r"skip: res/offline/ds27b_1p1d/(\S+\.json)", second.stdout)) == stored

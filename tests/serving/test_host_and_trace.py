"""Host copies through pinned memory (serving/hostcopy.py) and the GPU-side copy figures read from
a profiler trace (benchmarks/gpu_trace.py)."""

import jax
import numpy as np
import pytest

from benchmarks import gpu_trace
from dualpath_jax.serving.hostcopy import start_to_host, to_numpy


def test_start_to_host_lands_the_same_values_in_host_memory():
    x = jax.device_put(np.arange(24, dtype=np.float32).reshape(2, 3, 4), jax.devices()[0]) * 2
    h = start_to_host(x)
    if "pinned_host" in {m.kind for m in jax.devices()[0].addressable_memories()}:
        assert h.sharding.memory_kind == "pinned_host"
    out = to_numpy(h)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 2)


def _ev(name, nbytes, us):
    return {"name": name, "bytes": nbytes, "duration_ns": us * 1e3}


def test_hops_are_set_against_the_median_plain_copy_of_their_size():
    run = [
        _ev("MemcpyP2P", 100, 2.0),
        _ev("MemcpyP2P", 100, 4.0),
        _ev("MemcpyP2P", 300, 3.0),
        _ev("MemcpyH2D", 100, 50.0),  # not a device-to-device copy
        _ev("MemcpyD2D", 7, 1.0),
    ]  # not a hop size
    copies = [
        _ev("MemcpyP2P", 100, 1.0),
        _ev("MemcpyP2P", 100, 2.0),
        _ev("MemcpyP2P", 100, 9.0),
        _ev("MemcpyD2D", 300, 3.0),
    ]
    r = gpu_trace.hop_vs_copy(
        gpu_trace.device_copies(run, ["100", "300"]), gpu_trace.device_copies(copies, ["100", "300"])
    )
    assert r["hops"] == 3 and r["bytes"] == 500
    # hops: 9 us for 500 B; the same sizes as copies: 2 x median(1, 2, 9) + 3 = 7 us
    assert r["hop_GBps"] == pytest.approx(500 / 9e-6 / 1e9)
    assert r["copy_GBps"] == pytest.approx(500 / 7e-6 / 1e9)
    assert r["hop_vs_copy"] == pytest.approx(7 / 9)


def test_copy_sizes_are_read_from_the_memcpy_details_stat():
    assert gpu_trace._nbytes([("memcpy_details", "kind_src:device kind_dst:device size:33030144 dest:0")]) == 33030144
    assert gpu_trace._nbytes([("bytes", 64)]) == 64
    assert gpu_trace._nbytes([("correlation_id", 9)]) is None


def test_a_cpu_trace_has_no_gpu_copies_and_a_missing_trace_is_named(tmp_path):
    with jax.profiler.trace(str(tmp_path)):
        jax.device_put(np.ones(8), jax.devices()[-1]).block_until_ready()
    assert gpu_trace.copy_events(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="xplane"):
        gpu_trace.copy_events(tmp_path / "nowhere")

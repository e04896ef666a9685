"""Profile the Flax model's prefill and decode times on the device at hand, for the simulator's
`costmodel=profiled` (in the manner of Vidur's profiling: measure a grid, interpolate between).

  # one H200 (the engineer's command; docs/costmodel.md, "Profiled costs")
  PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/profile_costs.py --model dsv3_e32 --layers 8
  # CPU, the tiny model and its tiny default grid (the tests)
  PYTHONPATH=. JAX_PLATFORMS=cpu python benchmarks/profile_costs.py --model tiny

Prefill is timed as the testbed's prefill engine runs it (`LayerwisePrefill`, one layer at a time,
a batch of `batch` requests of one shape: `new` tokens after `cached` cached ones, random cached
latents); decode as its decode engine does (`jit_decode_step` over a `KVCache` of `batch` requests
at `context` tokens). Each cell: `--warmup` calls first (compilation is in them, and is reported
apart), then the median of `--repeats` calls, each blocked on. Weights are random, created on the
device (nothing is downloaded). Writes `<out>/<name>.json` (atomically) with the header the
simulator checks (dualpath_jax/costmodel/profile_table.py) and prints a summary. Plain argparse:
no Hydra needed.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.94")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.cli import ints, usage_error  # noqa: E402
from dualpath_jax.atomic import atomic_write  # noqa: E402
from dualpath_jax.config import to_dict  # noqa: E402
from dualpath_jax.costmodel.profile_table import FORMAT, FORMAT_VERSION, UNITS, load_table  # noqa: E402
from dualpath_jax.model import (  # noqa: E402
    KVCache,
    LayerwisePrefill,
    abstract_model,
    get_config,
    jit_decode_step,
    make_model_fast,
)
from dualpath_jax.results.provenance import code_info  # noqa: E402
from dualpath_jax.serving.simcheck import model_spec  # noqa: E402

# Grids: (cached, new, batch) for prefill, (batch, context) for decode. The H200 default aims at
# < 4 min for dsv3_e32 with 8 layers (18 prefill + 9 decode shapes, each compiled once); the tiny
# one at a few seconds on CPU.
DEFAULT_GRIDS = {
    "gpu": {
        "prefill_cached": "0,32768,65536",
        "prefill_new": "256,2048,8192",
        "prefill_batch": "1,4",
        "decode_batch": "1,16,64",
        "decode_context": "4096,32768,65536",
    },
    "tiny": {
        "prefill_cached": "0,64",
        "prefill_new": "16,32",
        "prefill_batch": "1,2",
        "decode_batch": "1,2",
        "decode_context": "64,128",
    },
}


def log(*a):
    print(*a, flush=True)


def timed(fn, warmup: int, repeats: int) -> tuple[float, float, list[float]]:
    """(median seconds, seconds of the warm-up calls (compilation included), every timed call)."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), first, ts


def random_latents(cfg, batch: int, length: int, seed: int):
    """Per layer [batch, length, W] random cached entries (never zeros), drawn layer by layer."""
    draw = jax.jit(lambda key: jax.random.normal(key, (batch, length, cfg.cache_width), cfg.jdtype), static_argnums=())
    return tuple(jax.block_until_ready(draw(jax.random.key(seed + i))) for i in range(cfg.n_layers))


def profile_prefill(model, cfg, grid, warmup, repeats):
    lw = LayerwisePrefill(model)
    times = [[[0.0] * len(grid["batch"]) for _ in grid["new"]] for _ in grid["cached"]]
    cells = []
    for i, cached in enumerate(grid["cached"]):
        for j, new in enumerate(grid["new"]):
            for k, batch in enumerate(grid["batch"]):
                prefix = random_latents(cfg, batch, cached, 100) if cached else None
                tokens = jax.random.randint(jax.random.key(2), (batch, new), 0, cfg.vocab_size)
                sec, first, ts = timed(lambda: lw(tokens, prefix).logits, warmup, repeats)
                times[i][j][k] = sec
                cells.append({"cached": cached, "new": new, "batch": batch, "warmup_s": first, "all_s": ts})
                log(
                    f"  prefill cached={cached:6d} new={new:5d} batch={batch:3d}: {sec * 1e3:9.2f} ms (warm-up {first:.1f} s)"
                )
                prefix = tokens = None  # free the device buffers
                gc.collect()
    return times, cells


def profile_decode(model, cfg, grid, warmup, repeats):
    graphdef, state = nnx.split(model)
    step = jit_decode_step(graphdef)
    times = [[0.0] * len(grid["context"]) for _ in grid["batch"]]
    cells = []
    for i, batch in enumerate(grid["batch"]):
        for j, context in enumerate(grid["context"]):
            calls = warmup + repeats
            # lengths start below `context` so that the timed steps straddle it and stay in the buffer
            start = max(1, context - calls - 1)
            box = {
                "cache": KVCache(
                    kv=random_latents(cfg, batch, context, 1000), lengths=jnp.full((batch,), start, jnp.int32)
                )
            }
            tokens = jax.random.randint(jax.random.key(3), (batch,), 0, cfg.vocab_size)

            def run():
                logits, box["cache"] = step(state, tokens, box["cache"])
                return logits

            sec, first, ts = timed(run, warmup, repeats)
            times[i][j] = sec
            cells.append({"batch": batch, "context": context, "warmup_s": first, "all_s": ts})
            log(f"  decode  batch={batch:3d} context={context:6d}: {sec * 1e3:9.2f} ms/step (warm-up {first:.1f} s)")
            box = tokens = None
            gc.collect()
    return times, cells


def host_random_model(cfg, seed: int):
    """Random weights drawn on the host with NumPy: no compilation per parameter shape, which
    make_model_fast's device init pays (30 s for the tiny model on the 2-core VM against < 1 s
    here); too slow for GPU-sized models, whose device init compiles once per layer kind. The
    values only need to be finite for timing (norm scales are random too)."""
    model = abstract_model(cfg)
    rng = np.random.default_rng(seed)
    state = jax.tree.map(
        lambda s: jnp.asarray((rng.standard_normal(s.shape) * cfg.init_std).astype(s.dtype)), nnx.state(model)
    )
    nnx.update(model, state)
    return model


def device_memory_gb() -> float | None:
    """The memory JAX may allocate on the first device (its allocator's limit), if it says."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # some backends do not implement it
        return None
    limit = (stats or {}).get("bytes_limit")
    return limit / 1e9 if limit else None


def default_name(cfg, device_kind: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", device_kind.lower()).strip("_") or "device"
    return f"profile_{cfg.name}_l{cfg.n_layers}_{cfg.dtype}_{slug}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="a dualpath_jax.model config name (tiny, dsv3_e32, ...)")
    ap.add_argument("--layers", type=int, default=0, help="a slice of the model's layers (0: the config's own)")
    ap.add_argument("--dtype", default="", help="model dtype (default: the config's own)")
    ap.add_argument("--moe-backend", default="", help="sort | ragged | dense (default: the config's own)")
    for key in DEFAULT_GRIDS["gpu"]:
        ap.add_argument(f"--{key.replace('_', '-')}", default=None, help="comma-separated grid values")
    ap.add_argument(
        "--init",
        choices=("host", "device"),
        default="",
        help="weights drawn on the host "
        "(NumPy; the default on CPU) or the device (make_model_fast; the default elsewhere)",
    )
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per cell (compilation is in them)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per cell (the median is kept)")
    ap.add_argument("--device-memory-gb", type=float, default=0.0, help="override the device memory recorded")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--name", default="", help="file name without .json (default: model, layers, dtype, device)")
    ap.add_argument("--force", action="store_true", help="replace an existing table of that name")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.warmup < 1:
        usage_error("--repeats and --warmup must be >= 1 (the first call compiles)")

    overrides = {
        k: v for k, v in (("n_layers", args.layers), ("dtype", args.dtype), ("moe_backend", args.moe_backend)) if v
    }
    try:
        cfg = get_config(args.model, **overrides)
    except (ValueError, TypeError) as e:
        usage_error(f"--model/--layers/--dtype/--moe-backend: {e}")
    defaults = DEFAULT_GRIDS["tiny" if args.model == "tiny" else "gpu"]
    values = {k: getattr(args, k) or v for k, v in defaults.items()}
    grid = {
        "prefill": {
            "cached": ints(values["prefill_cached"], "--prefill-cached", 0),
            "new": ints(values["prefill_new"], "--prefill-new", 1),
            "batch": ints(values["prefill_batch"], "--prefill-batch", 1),
        },
        "decode": {
            "batch": ints(values["decode_batch"], "--decode-batch", 1),
            "context": ints(values["decode_context"], "--decode-context", 2),
        },
    }
    device = jax.devices()[0]
    name = args.name or default_name(cfg, device.device_kind)
    path = os.path.join(args.out, f"{name}.json")
    if os.path.exists(path) and not args.force:
        usage_error(f"{path} exists; pass --force to replace it or --name to write another")
    import flax

    t_start = time.perf_counter()
    log(
        f"profile {cfg.name} ({cfg.n_layers} layers, {cfg.dtype}) on {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}"
    )
    init = args.init or ("host" if jax.default_backend() == "cpu" else "device")
    model = make_model_fast(cfg, seed=0) if init == "device" else host_random_model(cfg, seed=0)
    jax.block_until_ready(nnx.state(model))
    log(f"  weights ({init} init) in {time.perf_counter() - t_start:.1f} s")
    cfg = model.cfg  # as built: attn_impl resolved for this device
    try:
        log("prefill ...")
        prefill_s, prefill_cells = profile_prefill(model, cfg, grid["prefill"], args.warmup, args.repeats)
        log("decode ...")
        decode_s, decode_cells = profile_decode(model, cfg, grid["decode"], args.warmup, args.repeats)
    except jax.errors.JaxRuntimeError as e:  # e.g. out of memory: the table needs every cell
        raise SystemExit(
            f"error: a grid cell failed ({type(e).__name__}: {str(e)[:300]}); the last cell printed "
            f"above is the one before it: profile a smaller grid (--prefill-* / --decode-*) or fewer --layers"
        ) from None
    code = code_info()
    table = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": cfg.name,
        "model_overrides": overrides,
        "model_config": dataclasses.asdict(cfg),  # the Flax config as built
        "weights_init": init,
        # the simulator's ModelSpec for it: the mapping the testbed's simulator check uses
        "sim_model": to_dict(model_spec(cfg)),
        "sim_model_mapping": "dualpath_jax.serving.simcheck.model_spec",
        "device_kind": device.device_kind,
        "platform": jax.default_backend(),
        "device_memory_gb": args.device_memory_gb or device_memory_gb(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "python": platform.python_version(),
        "git_commit": code["git_commit"],
        "git_dirty": code["git_dirty"],
        "package_version": code["version"],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["benchmarks/profile_costs.py", *(argv if argv is not None else sys.argv[1:])]),
        "units": UNITS,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "statistic": "median",
        "grid": grid,
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "cells": {"prefill": prefill_cells, "decode": decode_cells},
        "wall_s": time.perf_counter() - t_start,
    }
    atomic_write(path, json.dumps(table, indent=1) + "\n")
    load_table(path)  # what the simulator will read: check it now
    log(f"wrote {path} in {table['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

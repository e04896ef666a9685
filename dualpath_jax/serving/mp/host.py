"""The scheduler's side of a multi-process testbed: the node processes (started here on one
host, or started elsewhere and connecting in), the zmq sockets to them, the handshake, and how
a node's failure is seen: a record with its error, a process that exited (nodes started here),
or no heartbeat for `testbed.node_timeout_s`. Each is raised as a `NodeFailure` naming the node,
its role and its engines; the run stops and every node process is stopped with it (also on SIGINT).

Sockets: a ROUTER at the command address sends each node its records (by identity "node<k>");
a PULL at the next port receives every node's records (and, in-process, the store writer's).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import zmq

from ...config import ConfigError, ExperimentConfig, TestbedSpec, to_dict
from ...workload.trace import Trajectory
from .. import kvcodec
from ..requests import token_stream
from ..server import model_config
from .scheduler import NodeFailure
from .wire import Outbox, pack, unpack

INPROC = "inproc://dualpath-scheduler-inbox"


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def node_env(gpus_per_node: int, cache_dir: str) -> dict:
    """A node process's environment: on CPU, the node's devices as fake host devices; a JAX
    compilation cache shared by the run's node processes (JAX_COMPILATION_CACHE_DIR wins), so
    the nodes after the first load the model's compiled init instead of compiling it again
    (the tiny model's init compiled in 26 s of CPU on the 2-core VM, loaded from the cache in 4 s)."""
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", cache_dir)
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", "")).strip()
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={gpus_per_node}".strip()
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class MPHost:
    """What `SystemRun`'s turn life reads from its host (agents, token streams, KV bytes per token,
    settings), plus the node processes and the sockets to them."""

    def __init__(self, cfg: ExperimentConfig, spec: TestbedSpec, agents: list[Trajectory]):
        topo_nodes = cfg.cluster.prefill_nodes + cfg.cluster.decode_nodes
        if spec.processes != topo_nodes:
            raise ConfigError(
                f"testbed.processes: must be the cluster's node count ({topo_nodes}: one process per emulated "
                f"node), got {spec.processes}"
            )
        if spec.max_turns:
            agents = [Trajectory(a.id, a.turns[: spec.max_turns]) for a in agents]
        self.cfg, self.spec, self.agents = replace(cfg, testbed=spec), spec, agents
        self.mcfg = model_config(spec)
        self.kvb = kvcodec.bytes_per_token(self.mcfg)
        self.ids = [token_stream(a, k, self.mcfg.vocab_size, spec.seed) for k, a in enumerate(agents)]
        self.g = cfg.cluster.gpus_per_node
        self.nodes = topo_nodes
        self.engines = topo_nodes * self.g
        self.pe_ids = list(range(cfg.cluster.prefill_nodes * self.g))
        self.de_ids = list(range(cfg.cluster.prefill_nodes * self.g, self.engines))
        self._own_root = not spec.store_path
        self.store_root = spec.store_path or tempfile.mkdtemp(prefix="dualpath-mp-")
        Path(self.store_root).mkdir(parents=True, exist_ok=True)
        self.procs: dict[int, subprocess.Popen] = {}
        self.logs: dict[int, Path] = {}
        self._whole = None
        self.init_s = self.warm_s = 0.0
        self.attn_impl = ""
        self.zctx = zmq.Context()
        self.cmd = self.zctx.socket(zmq.ROUTER)
        self.cmd.setsockopt(zmq.LINGER, 0)
        self.cmd.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.inbox = self.zctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self._bind(spec.scheduler_bind)
        self.inbox.bind(INPROC)
        self._post = Outbox(self.zctx, INPROC)
        self.last_beat: dict[int, float] = {}
        self.offsets: dict[int, float] = {}
        self.hosts: dict[int, str] = {}
        self._closed = False
        try:
            self._start()
        except BaseException:  # a node failed or SIGINT during start-up: stop them all at once
            self.close(hard=True)
            raise

    # ---- start-up --------------------------------------------------------------------------------
    def _bind(self, where: str) -> None:
        if where:
            head, port = where.rsplit(":", 1)
            self.cmd.bind(where)
            self.inbox.bind(f"{head}:{int(port) + 1}")
            self.address = where
            return
        for _ in range(20):  # two consecutive free loopback ports
            port = self.cmd.bind_to_random_port("tcp://127.0.0.1")
            try:
                self.inbox.bind(f"tcp://127.0.0.1:{port + 1}")
                self.address = f"tcp://127.0.0.1:{port}"
                return
            except zmq.ZMQError:
                self.cmd.unbind(f"tcp://127.0.0.1:{port}")
        raise RuntimeError("no two consecutive free loopback ports for the scheduler")

    def _start(self) -> None:
        if not self.spec.scheduler_bind:
            self._spawn()
        deadline = time.perf_counter() + max(60.0, 6 * self.spec.node_timeout_s)
        hello = self.collect("hello", deadline=deadline)
        me = socket.gethostname()
        for k, rec in hello.items():
            self.hosts[k] = rec["host"]
            # one host: one monotonic clock for every process; across hosts, each node's offset
            self.offsets[k] = 0.0 if rec["host"] == me else time.perf_counter() - rec["clock"]
        agents = [{"id": a.id, "turns": [asdict(t) for t in a.turns]} for a in self.agents]
        # a node needs the cluster, the batching settings and the testbed's; the agents come as they are
        config = {k: to_dict(getattr(self.cfg, k)) for k in ("cluster", "sim", "testbed")}
        self.broadcast("setup", config=config, agents=agents)
        set_up = self.collect("set_up")
        self.init_s = max(r["init_s"] for r in set_up.values())
        self.attn_impl = set_up[0]["attn_impl"]

    def _spawn(self) -> None:
        """Every node as a process of one jax.distributed job on this host. A SIGINT (Ctrl-C) reaches
        them too (one process group) and ends this process's loop, whose exit kills them all."""
        coordinator = f"127.0.0.1:{_free_port()}"
        env = node_env(self.g, str(Path(self.store_root) / "jax-cache"))
        logdir = Path(tempfile.mkdtemp(prefix="nodes-", dir=self.store_root))
        gpus = os.environ.get("JAX_PLATFORMS", "") in ("cuda", "gpu", "rocm")
        split = gpus and "CUDA_VISIBLE_DEVICES" not in env and env.get("DUALPATH_NODE_DEVICES") != "shared"
        for k in range(self.nodes):
            if split:  # node k's GPUs: k*g .. (k+1)*g - 1 (DUALPATH_NODE_DEVICES=shared: all see every GPU)
                env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(str(k * self.g + i) for i in range(self.g))}
            self.logs[k] = logdir / f"node{k}.log"
            cmd = [sys.executable, "-m", "dualpath_jax.serving.mp.node", "--scheduler", self.address,
                   "--coordinator", coordinator, "--num-processes", str(self.nodes), "--process-id", str(k),
                   "--host", "127.0.0.1", "--exit-with-parent"]  # fmt: skip
            with open(self.logs[k], "wb") as log:
                self.procs[k] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    # ---- records ---------------------------------------------------------------------------------
    def node_of(self, engine: int) -> int:
        return engine // self.g

    def describe(self, node: int) -> str:
        role = "prefill" if node < self.cfg.cluster.prefill_nodes else "decode"
        engines = list(range(node * self.g, (node + 1) * self.g))
        where = f" on {self.hosts[node]}" if node in self.hosts else ""
        return f"node {node} ({role} node, engines {engines}{where})"

    def send(self, node: int, op: str, **fields) -> None:
        try:
            self.cmd.send_multipart([f"node{node}".encode(), pack({"op": op, **fields})])
        except zmq.ZMQError as e:
            raise NodeFailure(f"{self.describe(node)} is not connected: {e}") from e

    def broadcast(self, op: str, **fields) -> None:
        for k in range(self.nodes):
            self.send(k, op, **fields)

    def post(self, op: str, **fields) -> None:
        """A record from a thread of this process into the loop (the store writer)."""
        self._post.send(op, **fields)

    def offset(self, node: int) -> float:
        return self.offsets.get(node, 0.0)

    def receive(self, timeout_s: float) -> list[dict]:
        """Every record that arrives within timeout_s (at least one wait); heartbeats and errors
        are handled here."""
        out = []
        if self.inbox.poll(int(timeout_s * 1000)):
            while True:
                try:
                    rec = unpack(self.inbox.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                node = rec["node"]
                if node >= 0:
                    self.last_beat[node] = time.perf_counter()
                if rec["op"] == "beat":
                    continue
                if rec["op"] == "error":
                    who = self.describe(node) if node >= 0 else "the scheduler"
                    raise NodeFailure(f"testbed {who} failed: {rec['message']}" + self._log_tail(node))
                out.append(rec)
        return out

    def check(self) -> None:
        """Fail fast on a node that exited (started here) or stopped sending heartbeats."""
        for k, p in self.procs.items():
            rc = p.poll()
            if rc is not None:
                raise NodeFailure(f"testbed {self.describe(k)} exited with status {rc}" + self._log_tail(k))
        now = time.perf_counter()
        for k, t in self.last_beat.items():
            if now - t > self.spec.node_timeout_s:
                raise NodeFailure(
                    f"testbed {self.describe(k)} sent nothing for {now - t:.1f} s "
                    f"(testbed.node_timeout_s={self.spec.node_timeout_s})"
                )

    def collect(self, op: str, deadline: float | None = None) -> dict[int, dict]:
        """Wait for record `op` from every node (until `deadline`, if given: a node that is alive,
        sending heartbeats, may take long, e.g. compiling its warm-up shapes)."""
        got: dict[int, dict] = {}
        deadline = deadline or math.inf
        while len(got) < self.nodes:
            for rec in self.receive(0.05):
                if rec["op"] != op:
                    self.unexpected(rec)
                got[rec["node"]] = rec
            self.check()
            if time.perf_counter() > deadline:
                missing = [self.describe(k) for k in range(self.nodes) if k not in got]
                for k, p in self.procs.items():
                    if k not in got and p.poll() is None:
                        p.send_signal(signal.SIGUSR1)  # the node's stacks into its log (node.py)
                time.sleep(0.5)
                tails = "".join(self._log_tail(k) for k in range(self.nodes) if k not in got)
                raise NodeFailure(f"testbed: no {op!r} from {', '.join(missing)} in time" + tails)
        return got

    def unexpected(self, rec: dict) -> None:
        raise RuntimeError(f"testbed scheduler: unexpected record {rec['op']!r} from node {rec['node']}")

    def whole_kv(self) -> list:
        """Each agent's whole KV (untimed), computed once by the first prefill node's process."""
        if self._whole is None:
            self.send(0, "whole_kv")
            while self._whole is None:
                for rec in self.receive(0.05):
                    if rec["op"] != "whole_kv":
                        self.unexpected(rec)
                    self._whole = rec["kv"]
                self.check()
        return self._whole

    def recompute(self, prompts: list[tuple[int, int]]) -> list:
        """First-token logits of whole prompts (agent, tokens), recomputed with no cached KV by the
        first node's process (node.py `on_recompute`)."""
        self.send(0, "recompute", prompts=[list(p) for p in prompts])
        while True:
            for rec in self.receive(0.05):
                if rec["op"] != "recomputed":
                    self.unexpected(rec)
                return rec["logits"]
            self.check()

    def _log_tail(self, node: int, lines: int = 30) -> str:
        log = self.logs.get(node)
        if log is None or not log.exists():
            return ""
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        return f"\n  last lines of {log}:\n    " + "\n    ".join(tail) if tail else ""

    # ---- the end ---------------------------------------------------------------------------------
    def close(self, hard: bool = False) -> None:
        """Stop the node processes: asked to exit (each leaves the jax.distributed job), or killed
        at once when `hard` (after a failure or SIGINT: a live JAX process would wait in the job's
        shutdown barrier for the dead one, and it outlives SIGTERM, which JAX takes as a preemption
        notice)."""
        if self._closed:
            return
        self._closed = True
        try:
            for p in self.procs.values() if hard else ():
                p.kill()
            for k in range(self.nodes if not hard else 0):
                try:
                    self.cmd.send_multipart([f"node{k}".encode(), pack({"op": "exit"})], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            end = time.perf_counter() + 10
            for p in self.procs.values():
                try:
                    p.wait(max(0.1, end - time.perf_counter()))
                except subprocess.TimeoutExpired:
                    pass
            for p in self.procs.values():
                if p.poll() is None:
                    p.kill()
                p.wait()
        finally:
            self._post.close()
            self.cmd.close()
            self.inbox.close()
            self.zctx.term()
            if self._own_root:
                shutil.rmtree(self.store_root, ignore_errors=True)

    def __enter__(self) -> "MPHost":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(hard=kind is not None)

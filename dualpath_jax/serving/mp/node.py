"""One emulated node as its own OS process (`python -m dualpath_jax.serving.mp.node`).

It joins the jax.distributed job (its process index is its node id; its local devices are the
node's `gpus_per_node` devices, so global device e is engine e as in one process), starts its KV
transfer server, connects to the scheduler and does what the scheduler's records say: build the
model for its engines, run each system's engines (the single-process `PrefillEngine` and
`DecodeEngine`), read its share of each turn's hit KV through its own emulated SNIC, and send
back small records (reads done, prefilled, decoded, the blocks to write, heartbeats, errors).

Started by the scheduler on one host (launch.py), or by SLURM / by hand on several hosts:
`--scheduler tcp://HOST:PORT` and jax.distributed's coordinator flags or its SLURM detection
(docs/testbed.md, "Across processes and hosts").
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
import traceback

import zmq

HEARTBEAT_S = 0.5
_T0 = time.perf_counter()


def log(msg: str) -> None:
    """A line in this node's log (the scheduler shows a failed node's last lines), with the seconds
    since the process started."""
    print(f"[{time.perf_counter() - _T0:8.2f} s] {msg}", flush=True)


def inbox_address(scheduler: str) -> str:
    """The scheduler's inbox (node -> scheduler records): its command port + 1."""
    head, port = scheduler.rsplit(":", 1)
    return f"{head}:{int(port) + 1}"


class Node:
    def __init__(self, args):
        import jax

        kw = {}
        if args.coordinator:
            kw = dict(
                coordinator_address=args.coordinator, num_processes=args.num_processes, process_id=args.process_id
            )
        log("jax imported")
        jax.distributed.initialize(initialization_timeout=int(args.timeout), **kw)
        # uncommitted work (weight init, whole-KV prefill) runs here, not on the job's device 0
        jax.config.update("jax_default_device", jax.local_devices()[0])
        self.id = jax.process_index()
        self.nodes = jax.process_count()
        log(f"node {self.id} of {self.nodes} in the jax.distributed job, devices {jax.local_devices()}")
        self.zctx = zmq.Context()
        self.cmd = self.zctx.socket(zmq.DEALER)
        self.cmd.setsockopt(zmq.IDENTITY, f"node{self.id}".encode())
        self.cmd.setsockopt(zmq.LINGER, 0)
        self.cmd.connect(args.scheduler)
        from .wire import Outbox

        self.out = Outbox(self.zctx, inbox_address(args.scheduler), self.id)
        self.host = args.host or socket.gethostname()
        self.timeout_s = args.timeout
        self.tb = self.run = None
        self.turns: dict = {}
        self._beating = True
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while self._beating:
            self.out.send("beat")
            time.sleep(HEARTBEAT_S)

    def fail(self, e: BaseException) -> None:
        text = "".join(traceback.format_exception(e))
        self.out.send("error", message=f"{type(e).__name__}: {e}", traceback=text)

    # ---- the command loop ------------------------------------------------------------------------
    def serve(self) -> None:
        self.out.send("hello", pid=os.getpid(), host=socket.gethostname(), clock=time.perf_counter())
        from .wire import unpack

        while True:
            rec = unpack(self.cmd.recv())
            op = rec.pop("op")
            if op in ("setup", "system", "recompute", "whole_kv", "stop", "exit"):
                log(op)
            if op == "exit":
                return
            try:
                getattr(self, f"on_{op}")(**rec)
            except BaseException as e:
                self.fail(e)

    def on_setup(self, config: dict, agents: list) -> None:
        from types import SimpleNamespace

        from ...config import ClusterSpec, SimSpec, TestbedSpec, from_dict
        from ...workload.trace import Trajectory, Turn
        from ..server import Testbed
        from .transfer import KVTransport

        kinds = {"cluster": ClusterSpec, "sim": SimSpec, "testbed": TestbedSpec}
        self.cfg = SimpleNamespace(**{k: from_dict(cls, config[k], f"config.{k}") for k, cls in kinds.items()})
        trajs = [Trajectory(a["id"], tuple(Turn(**t) for t in a["turns"])) for a in agents]
        g = self.cfg.cluster.gpus_per_node
        engines = set(range(self.id * g, (self.id + 1) * g))
        self.transport = KVTransport(self.id, self.nodes, self.host, self.timeout_s)
        # the first node initialises the weights and the others pull them from it: one compile of
        # the init for the job (the tiny model's took 26 s of CPU on the 2-core VM; JAX's compilation
        # cache does not help here, as its entries differ between the job's processes)
        weights = None if self.id == 0 else self.transport.pull_weights
        self.tb = Testbed(self.cfg, self.cfg.testbed, trajs, engines=engines, weights=weights)
        if self.id == 0:
            self.transport.share_weights(self.tb.weights)
        log(f"set up: weights {'initialised' if self.id == 0 else 'pulled'} in {self.tb.init_s:.2f} s")
        self.out.send("set_up", init_s=self.tb.init_s, attn_impl=self.tb.mcfg.attn_impl)

    def on_whole_kv(self) -> None:
        self.out.send("whole_kv", kv=self.tb.whole_kv())

    def on_recompute(self, prompts: list) -> None:
        """First-token logits of whole prompts ([agent, tokens] pairs) by a full prefill with no
        cached KV, on this node's first engine: what a served turn's logits must equal (tests)."""
        import jax
        import numpy as np

        lw, dev = self.tb.prefiller()
        out = []
        for agent, tokens in prompts:
            logits, _, _ = lw(jax.device_put(self.tb.ids[agent][None, :tokens], dev))
            out.append(np.asarray(logits[0, -1]))
        self.out.send("recomputed", logits=out)

    def on_system(self, index: int, system: dict, store: str, whole_kv: list | None = None) -> None:
        from .node_run import NodeRun

        if whole_kv is not None and self.tb._whole_kv is None:  # the oracle's, computed once by node 0
            self.tb._whole_kv = whole_kv
        self.run = NodeRun(self, index, system, store)
        log(f"system {self.run.system.name} ready (warm-up so far {self.tb.warm_s:.2f} s)")
        self.out.send("system_ready", warm_s=self.tb.warm_s)

    def on_start(self) -> None:
        self.run.start()

    def on_turn(self, **rec) -> None:
        self.run.turn(rec)

    def on_prefill(self, rid: int) -> None:
        self.run.prefill(rid)

    def on_join(self, rid: int) -> None:
        self.run.join(rid)

    def on_stop(self) -> None:
        stats = self.run.stop()
        self.run = None
        self.out.send("stats", **stats)

    def close(self) -> None:
        import jax

        self._beating = False
        self.out.close()
        self.cmd.close()
        jax.distributed.shutdown()


def main(argv=None) -> int:
    import faulthandler

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>`: every thread's stack into the node's log
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scheduler", required=True, help="the scheduler's command address, tcp://HOST:PORT")
    p.add_argument("--coordinator", default="", help="jax.distributed coordinator HOST:PORT (empty: SLURM etc.)")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--host", default="", help="this host's address for the KV transfer server (default: its name)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the job's other processes")
    p.add_argument("--exit-with-parent", action="store_true", help="die with the process that started this one (Linux)")
    args = p.parse_args(argv)
    if args.exit_with_parent:  # a scheduler killed outright (SIGKILL) leaves no node process behind
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the prctl
            return 1
    node = Node(args)
    try:
        node.serve()
    finally:
        node.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""KV between node processes over JAX's own cross-process transfer: `jax.experimental.transfer`.

Each node process starts a transfer server on its devices' client; the addresses are exchanged
through the jax.distributed key-value store. A sender `publish`es device arrays under a number
(`await_pull`: returns at once, the server holds them until pulled); the receiver `pull`s them by
that number onto one of its devices: the call returns at once with arrays that become ready when
the bytes have landed, and it may come before the matching publish (the server waits for it).
That is the same shape as a device-to-device `device_put`, so the PE thread issues layer i+1's
pull before it dispatches layer i (loaders.py), as in one process.

Why this and not the alternatives (docs/testbed.md, "Across processes and hosts"): on jax 0.10.2's
CPU backend a cross-process `jax.device_put` is refused without the DCN socket flags and hung
with them, and a ppermute over a 2-process mesh is a collective both processes must enter at
the same step, which an asynchronous serving loop does not have.
"""

from __future__ import annotations

import hashlib
import threading

import jax
from jax.experimental import transfer
from jax.sharding import SingleDeviceSharding

_KINDS = {"hop": 1, "out": 2, "weights": 3}  # a DE-path layer slice DE -> PE; a PE layer's KV PE -> DE


def transfer_id(run: int, rid: int, layer: int, kind: str, part: int = 0) -> int:
    """One number per (system run, turn, layer, what), the same in every process."""
    digest = hashlib.blake2b(f"{run}/{rid}/{layer}/{_KINDS[kind]}/{part}".encode(), digest_size=7).digest()
    return int.from_bytes(digest, "little")


class KVTransport:
    def __init__(self, node: int, nodes: int, host: str, timeout_s: float):
        from jax._src import distributed

        client = jax.local_devices()[0].client
        self.server = transfer.start_transfer_server(client, f"{host}:0", [f"{host}:0"])
        self.node = node
        kv = distributed.global_state.client
        kv.key_value_set(f"dualpath/transfer/{node}", self.server.address())
        self.peers = {
            n: kv.blocking_key_value_get(f"dualpath/transfer/{n}", int(timeout_s * 1000))
            for n in range(nodes)
            if n != node
        }
        self._conns: dict[int, object] = {}
        self._lock = threading.Lock()

    def publish(self, uuid: int, arrays: list) -> None:
        self.server.await_pull(uuid, arrays)

    def pull(self, node: int, uuid: int, shapes: list[tuple], dtype, device) -> list:
        with self._lock:
            conn = self._conns.get(node)
            if conn is None:
                conn = self._conns[node] = self.server.connect(self.peers[node])
        sharding = SingleDeviceSharding(device)
        return conn.pull(uuid, [jax.ShapeDtypeStruct(s, dtype, sharding=sharding) for s in shapes])

    # ---- the model's weights, once per job -------------------------------------------------------
    def share_weights(self, state) -> None:
        """Node 0: publish its weights once for every other node."""
        leaves = jax.tree.leaves(state)
        for peer in self.peers:
            self.publish(transfer_id(0, peer, 0, "weights"), leaves)

    def pull_weights(self, mcfg):
        """Another node: the model's structure from its shapes alone, its weights pulled from node 0."""
        from flax import nnx

        from ...model.model import abstract_model

        graphdef, abstract = nnx.split(abstract_model(mcfg))
        leaves, tree = jax.tree.flatten(abstract)
        conn = self.server.connect(self.peers[0])
        dev = SingleDeviceSharding(jax.local_devices()[0])
        specs = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev) for x in leaves]
        pulled = conn.pull(transfer_id(0, self.node, 0, "weights"), specs)
        return graphdef, jax.tree.unflatten(tree, [jax.block_until_ready(x) for x in pulled])

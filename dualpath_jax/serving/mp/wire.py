"""The records the scheduler and the node processes exchange over zmq: msgpack maps with an "op"
field; numpy arrays (logits, written KV blocks, preloaded KV) travel as raw bytes with their dtype
and shape. Every record is one zmq message, so a process that dies mid-send delivers nothing."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import zmq


def _encode(obj):
    if isinstance(obj, np.ndarray):
        return {"__nd__": True, "dtype": obj.dtype.str, "shape": list(obj.shape), "data": obj.tobytes()}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send a {type(obj).__name__} in a record")


def _decode(obj):
    if obj.get("__nd__"):
        return np.frombuffer(obj["data"], np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    return obj


def pack(record: dict) -> bytes:
    return msgpack.packb(record, default=_encode, use_bin_type=True)


def unpack(data: bytes) -> dict:
    return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)


class Outbox:
    """A PUSH socket that any thread may send records on (one at a time: zmq sockets are not
    thread-safe)."""

    def __init__(self, ctx: zmq.Context, address: str, node: int = -1):
        self.node = node  # stamped on every record: who sent it (-1: the scheduler itself)
        self._sock = ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.LINGER, 2000)
        self._sock.connect(address)
        self._lock = threading.Lock()

    def send(self, op: str, **fields) -> None:
        data = pack({"op": op, "node": self.node, **fields})
        with self._lock:
            self._sock.send(data)

    def close(self) -> None:
        with self._lock:
            self._sock.close()

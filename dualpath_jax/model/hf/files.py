"""The tensors of a checkpoint directory: model.safetensors.index.json (sharded), else every
*.safetensors file. Read one tensor at a time through safetensors' NumPy API (memory-mapped).

safetensors 0.8's NumPy API looks for numpy.float8_e4m3fn, which NumPy does not have, so FP8
tensors are read from the file's header offsets (the documented format: an 8-byte little-endian
header length, a JSON header, then the raw bytes) and viewed as ml_dtypes.float8_e4m3fn.
"""

from __future__ import annotations

import json
import os
import struct

import ml_dtypes  # noqa: F401  (registers bfloat16 with NumPy for safetensors' NumPy API)
import numpy as np
from safetensors import safe_open

from .config import CheckpointError

RAW_DTYPES = {"F8_E4M3": ml_dtypes.float8_e4m3fn}
INDEX = "model.safetensors.index.json"


class CheckpointFiles:
    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        index = os.path.join(self.directory, INDEX)
        self.where: dict[str, str] = {}  # tensor name -> file name
        if os.path.isfile(index):
            with open(index) as f:
                weight_map = json.load(f).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index}: no 'weight_map' object")
            for name, fname in weight_map.items():
                if not os.path.isfile(os.path.join(self.directory, fname)):
                    raise CheckpointError(f"{index}: tensor {name!r} is in {fname!r}, which is missing")
            self.where = dict(weight_map)
        else:
            files = sorted(f for f in os.listdir(self.directory) if f.endswith(".safetensors"))
            if not files:
                raise CheckpointError(f"{self.directory}: no *.safetensors files")
            for fname in files:
                with safe_open(os.path.join(self.directory, fname), framework="np") as st:
                    for name in st.keys():
                        if name in self.where:
                            raise CheckpointError(f"{self.directory}: tensor {name!r} is in both {fname} and "
                                                  f"{self.where[name]}")  # fmt: skip
                        self.where[name] = fname
        self._headers: dict[str, tuple[int, dict]] = {}

    def names(self) -> list[str]:
        return sorted(self.where)

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def path(self, name: str) -> str:
        return os.path.join(self.directory, self.where[name])

    def get(self, name: str) -> np.ndarray:
        if name not in self.where:
            raise CheckpointError(f"{self.directory}: tensor {name!r} is missing")
        path = self.path(name)
        with safe_open(path, framework="np") as st:
            dtype = st.get_slice(name).get_dtype()
            if dtype not in RAW_DTYPES:
                return st.get_tensor(name)
        return self._raw(path, name, RAW_DTYPES[dtype])

    def _raw(self, path: str, name: str, dtype) -> np.ndarray:
        if path not in self._headers:
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                self._headers[path] = (8 + n, json.loads(f.read(n)))
        base, header = self._headers[path]
        info = header[name]
        start, end = info["data_offsets"]
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=base + start, shape=(end - start,))
        return raw.view(dtype).reshape(info["shape"])

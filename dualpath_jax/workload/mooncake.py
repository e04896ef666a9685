"""Import Mooncake's public request traces (FAST'25) into the project's trace format.

Each Mooncake request carries `hash_ids`, one id per 512-token prompt block; equal ids mean the
same prefix block. A request's reusable prefix is the longest run of its leading blocks already
seen in earlier requests (capped below its input length). Requests chain into one agent when a
request's blocks extend all full blocks of an earlier request that no other request continued
(a multi-turn conversation); otherwise the request starts a new agent.
"""
from __future__ import annotations

from pathlib import Path

from .trace import TraceError, Trajectory, Turn, json_object

BLOCK_TOKENS = 512


def _parse(line: str, where: str) -> tuple[float, int, int, list[int]]:
    obj = json_object(line, where)
    for key in ("timestamp", "input_length", "output_length"):
        v = obj.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise TraceError(f"{where}: field '{key}' must be a non-negative number, got {v!r}")
    ids = obj.get("hash_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise TraceError(f"{where}: field 'hash_ids' must be a list of integers")
    if int(obj["input_length"]) < 1:
        raise TraceError(f"{where}: field 'input_length' must be >= 1")
    return float(obj["timestamp"]) / 1000.0, int(obj["input_length"]), int(obj["output_length"]), ids


def import_mooncake(path: str | Path, limit: int | None = None) -> list[Trajectory]:
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: Mooncake trace not found")
    trie: dict = {}  # block id -> (children, tail agent or None)
    agents: list[list[Turn]] = []
    with path.open() as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if limit is not None and n > limit:
                break
            t, inp, out, ids = _parse(line, f"{path}:{n}")
            node, depth, parent = trie, 0, None
            for bid in ids:
                if bid not in node:
                    break
                entry = node[bid]
                depth += 1
                if entry[1] is not None:
                    parent = (entry, depth)
                node = entry[0]
            cached = min(depth * BLOCK_TOKENS, inp - 1)
            turn = Turn(input=inp, cached=cached, output=max(out, 1), t=t)
            if parent is not None:
                entry, _ = parent
                agent, entry[1] = entry[1], None  # a conversation is continued once
            else:
                agent = len(agents)
                agents.append([])
            agents[agent].append(turn)
            node, full = trie, inp // BLOCK_TOKENS
            for k, bid in enumerate(ids):
                entry = node.setdefault(bid, [{}, None])
                if k + 1 == full and full >= 2:  # a tail marks this agent's whole prompt
                    entry[1] = agent
                node = entry[0]
    if not agents:
        raise TraceError(f"{path}: trace holds no requests")
    return [Trajectory(f"mooncake-{i}", tuple(turns)) for i, turns in enumerate(agents)]

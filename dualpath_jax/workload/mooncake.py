"""Import Mooncake's public request traces (FAST'25) into the project's trace format.

Each Mooncake request carries `hash_ids`, one id per 512-token prompt block; equal ids mean the
same prefix block. A request's reusable prefix is the longest run of its leading blocks already
seen in earlier requests (capped below its input length). Requests chain into one agent when a
request's blocks extend all full blocks of an earlier request that no other request continued
(a multi-turn conversation); otherwise the request starts a new agent. A continuing turn's prefix
is also capped at what its agent's previous turn produced (input + output), the trace format's
rule: blocks seen beyond that came from other requests, whose KV this agent does not hold.

A line must hold `timestamp` (milliseconds, finite, >= 0, non-decreasing down the file),
`input_length` (integer >= 1), `output_length` (integer >= 0) and `hash_ids` (a list of integers);
other keys are ignored (the format is external). Bad lines fail with `file:line: ...`.
"""

from __future__ import annotations

from pathlib import Path

from .trace import TraceError, Trajectory, Turn, check_trace, count, field, json_object, number, numbered_lines, show

BLOCK_TOKENS = 512


def _hash_ids(obj: dict, where: str) -> list[int]:
    ids = field(obj, "hash_ids", where)
    if not isinstance(ids, list):
        raise TraceError(f"{where}: field 'hash_ids' must be a list of integers, got {show(ids)}")
    for k, i in enumerate(ids):
        if isinstance(i, bool) or not isinstance(i, int):
            raise TraceError(f"{where}: field 'hash_ids' must be a list of integers; item {k} is {show(i)}")
    return ids


def _parse(line: str, where: str, after_ms: float) -> tuple[float, int, int, list[int]]:
    """(timestamp in ms, input, output, block ids) of one request arriving at or after `after_ms`."""
    obj = json_object(line, where)
    ms = number(field(obj, "timestamp", where), where, "timestamp")
    if ms < 0:
        raise TraceError(f"{where}: field 'timestamp' must be >= 0, got {show(obj['timestamp'])}")
    if ms < after_ms:
        raise TraceError(
            f"{where}: field 'timestamp' ({show(obj['timestamp'])}) is earlier than "
            f"the previous request's ({after_ms:g}): the trace must be sorted by arrival"
        )
    inp = count(field(obj, "input_length", where), where, "input_length", least=1)
    out = count(field(obj, "output_length", where), where, "output_length")
    return ms, inp, out, _hash_ids(obj, where)


def _prefix(trie: dict, ids: list[int]) -> tuple[int, list | None]:
    """(matched leading blocks, deepest open conversation tail on the way or None)."""
    node, depth, parent = trie, 0, None
    for bid in ids:
        if bid not in node:
            break
        entry = node[bid]
        depth += 1
        if entry[1] is not None:
            parent = entry
        node = entry[0]
    return depth, parent


def _mark(trie: dict, ids: list[int], inp: int, agent: int) -> None:
    """Add the request's blocks; its last full block marks the agent's open tail."""
    node, full = trie, inp // BLOCK_TOKENS
    for k, bid in enumerate(ids):
        entry = node.setdefault(bid, [{}, None])  # block id -> [children, tail agent or None]
        if k + 1 == full and full >= 2:  # a tail marks this agent's whole prompt
            entry[1] = agent
        node = entry[0]


def import_mooncake(path: str | Path, limit: int | None = None) -> list[Trajectory]:
    """Agents of the trace's first `limit` lines (all by default), checked like a JSONL trace."""
    path = Path(path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    trie: dict = {}
    agents: list[list[Turn]] = []
    first_line: list[int] = []  # the line each agent starts on, to name it in errors
    last_ms = 0.0
    for n, line in numbered_lines(path, last=limit):
        last_ms, inp, out, ids = _parse(line, f"{path}:{n}", last_ms)
        depth, parent = _prefix(trie, ids)
        cached = min(depth * BLOCK_TOKENS, inp - 1)
        if parent is not None:
            agent, parent[1] = parent[1], None  # a conversation is continued once
            prev = agents[agent][-1]
            cached = min(cached, prev.input + prev.output)
        else:
            agent = len(agents)
            agents.append([])
            first_line.append(n)
        agents[agent].append(Turn(input=inp, cached=cached, output=max(out, 1), t=last_ms / 1000.0))
        _mark(trie, ids, inp, agent)
    if not agents:
        within = "" if limit is None else f" in lines 1-{limit}"
        raise TraceError(f"{path}: trace holds no requests{within}")
    return check_trace(
        ((first_line[i], Trajectory(f"mooncake-{i}", tuple(turns))) for i, turns in enumerate(agents)), path
    )

"""Per-turn records of a run (`sim.record_turns=true`): one CSV row per turn, beside the results file.

    results/offline/<model>_<cluster>/<cell>.turns.csv

Columns: the system, the agent and its turn index, the turn's tokens (prompt, cached hit, new,
output), where it ran (PE and DE engine and node), the share of its hit KV read through the DE
node (0: all via the PE node), and the virtual time in seconds of every stage of its life
(docs/simulator.md, "A turn's life"): arrive, placed, ready (hit KV read), started (first prefill
chunk), first_token, joined (its DE's batch), second_token, finished. Recording changes no number,
so it is not part of the cell's identity: a stored cell without its records runs again when they
are asked for.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import atomic_write

FIELDS = (
    "system", "agent", "turn", "input", "hit", "new", "output", "pe", "de", "pe_node", "de_node",
    "de_read_fraction", "arrive", "placed", "ready", "started", "first_token", "joined", "second_token", "finished",
)  # fmt: skip


def turn_records(sim) -> list[tuple]:
    """The finished turns of a `Simulation` run with `sim.record_turns`, in the order they ended."""
    node, name = sim.node, sim.system.name
    return [
        (
            name,
            t.agent,
            t.index,
            t.input,
            t.hit,
            t.new,
            t.output,
            t.pe,
            t.de,
            node[t.pe],
            node[t.de],
            t.de_read_fraction,
            t.arrive,
            t.placed,
            t.ready,
            t.started,
            t.first_token,
            t.joined,
            t.second_token,
            t.finished,
        )  # fmt: skip
        for t in sim.finished
    ]


def turns_path(results_file: Path) -> Path:
    return results_file.with_name(results_file.stem + ".turns.csv")


def write_turns(results_file: Path, by_system: dict[str, list[tuple]]) -> Path:
    """Every system's records in one CSV beside `results_file` (atomically); floats as repr, so a
    reader gets the run's exact values."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    for rows in by_system.values():
        w.writerows(rows)
    return atomic_write(turns_path(results_file), buf.getvalue())

"""Results that can be trusted: one file per cell, named by its identity, recording its code.

`identity` says which file holds which cell, `provenance` which code made it, `store` writes and
checks files, `tables` prints them. docs/results.md describes the files and the rules.
"""

from .identity import Cell, cell_of, model_name
from .provenance import RESULTS_SCHEMA, SIM_SEMANTICS, code_info
from .store import StaleCellError, Stored, prepare, stored, write_cell
from .tables import (
    as_text,
    attribution_lines,
    capacity_table,
    comparison_table,
    offline_payload,
    offline_text,
    online_table,
    summary_numbers,
)

__all__ = [
    "Cell",
    "cell_of",
    "model_name",
    "RESULTS_SCHEMA",
    "SIM_SEMANTICS",
    "code_info",
    "StaleCellError",
    "Stored",
    "prepare",
    "stored",
    "write_cell",
    "as_text",
    "attribution_lines",
    "capacity_table",
    "comparison_table",
    "offline_payload",
    "offline_text",
    "online_table",
    "summary_numbers",
]

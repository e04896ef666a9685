"""Argument checks shared by the benchmark scripts: a user's mistake is one line naming the flag
on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import sys
from typing import NoReturn


def usage_error(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def ints(text: str, flag: str, minimum: int) -> list[int]:
    """A comma list of strictly increasing integers >= minimum (a grid axis)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        usage_error(f"{flag}: expected comma-separated integers, got {text!r}")
    if not values or values != sorted(set(values)) or values[0] < minimum:
        usage_error(f"{flag}: expected strictly increasing integers >= {minimum}, got {text!r}")
    return values

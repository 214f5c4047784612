"""Reading a number from a loosely typed value (a table cell, a run.json entry): one rule, NaN
when there is no number, so that callers can test math.isfinite instead of catching errors."""

from __future__ import annotations

import math
from typing import SupportsFloat


def as_float(value: object) -> float:
    """value as a float; NaN when it is missing or not a number."""
    if not isinstance(value, SupportsFloat | str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan

"""JSON as every results file writes it: numpy scalars and paths as plain values, inf/nan as
strings a reader parses back, undecodable bytes escaped (facequant.names)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from facequant.names import display


def json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def finite_or_none(obj: object) -> object:
    """JSON has no inf/nan: write them as strings a reader can parse back. Strings are shown
    with undecodable bytes as \\xNN (facequant.names), the rule of every output."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, str | Path):
        return display(obj)
    if isinstance(obj, dict):
        return {display(k) if isinstance(k, str) else k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def write_run_json(run: dict[str, object], path: Path) -> None:
    """run.json: JSON with inf/nan as strings and undecodable bytes escaped."""
    path.write_text(json.dumps(finite_or_none(run), indent=2, default=json_default))

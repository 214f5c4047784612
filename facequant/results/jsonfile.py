"""JSON as every results file writes it (run.json, manifests, summaries): numpy scalars and
paths as plain values, inf/nan as strings a reader parses back, undecodable bytes escaped
(facequant.names). One writer, so every results directory's JSON reads alike."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from facequant.names import display


def json_default(value: object) -> object:
    """What json cannot write by itself: numpy scalars and arrays as numbers, anything else
    (a Path, a recipe object) as its text, rather than fail after the work is done."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return display(str(value))


def finite_or_none(obj: object) -> object:
    """JSON has no inf/nan: write them as strings a reader can parse back. Strings are shown
    with undecodable bytes as \\xNN (facequant.names), the rule of every output."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, str | Path):
        return display(obj)
    if isinstance(obj, dict):
        return {display(k) if isinstance(k, str) else k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(obj: object, path: Path, indent: int = 2) -> None:
    """A results directory's JSON file: inf/nan as strings, undecodable bytes escaped."""
    path.write_text(json.dumps(finite_or_none(obj), indent=indent, default=json_default))


def write_run_json(run: dict[str, object], path: Path) -> None:
    """run.json, as every command writes it."""
    write_json(run, path)

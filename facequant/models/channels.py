"""A mean or std per channel: one float, or three when the channels differ (the --model-override
syntax). Light: no onnx, so configs that check preprocessing names stay cheap to import."""

from __future__ import annotations

import numpy as np

Channels = float | tuple[float, float, float]


def channel_values(value: object) -> Channels:
    """A mean or std as ModelSpec holds it: a float, or a 3-tuple when the channels differ.
    Takes a number, a sequence of 1 or 3 numbers, or text "a,b,c"; ValueError otherwise."""
    if isinstance(value, str):
        items: list[object] = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple | np.ndarray):
        items = list(np.asarray(value, dtype=object).ravel())
    else:
        items = [value]
    if len(items) not in (1, 3):
        raise ValueError("one number or three (one per channel)")
    numbers = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float | str | np.number):
            raise ValueError("numbers")
        try:
            numbers.append(float(item))
        except ValueError:
            raise ValueError("numbers") from None
    if not all(np.isfinite(numbers)):
        raise ValueError("finite numbers")
    if len(set(numbers)) == 1:
        return numbers[0]  # the same for every channel: a scalar, as before per-channel values
    return (numbers[0], numbers[1], numbers[2])


def format_channels(value: Channels) -> str:
    """127.5, or 103.939,116.779,123.68 (the --model-override syntax)."""
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"

"""Budgets checked before any buffer exists: a model's declared input against a pixel cap, and
what a run derives from it (a batch, a chunk of crops, the calibration set, the preprocessing
check's photos) against a byte cap. A few-kB model may declare a 10000x10000 input; without these
checks the first test batch alone would ask for gigabytes."""

from __future__ import annotations

import os
from collections.abc import Mapping

from facequant.errors import BadModelError, FacequantError

#: Largest model input, height x width: face embedding models take 112 to 224 px (a few 512);
#: a megapixel is far beyond any, and a crop of it is still only 12 MB as float32.
MAX_INPUT_PIXELS = 1024 * 1024
#: Environment variable overriding MAX_INPUT_PIXELS.
INPUT_PIXELS_ENV = "FACEQUANT_MAX_INPUT_PIXELS"
#: Largest buffer a run derives from the input (float32 RGB tensors of a batch, a chunk, the
#: calibration set): the defaults at the pixel cap (a 256-photo chunk, 3.2 GB) fit.
MAX_BUFFER_BYTES = 4 << 30
#: Bytes per input pixel once preprocessed: three float32 channels.
BYTES_PER_PIXEL = 3 * 4


def max_input_pixels() -> int:
    """The cap: $FACEQUANT_MAX_INPUT_PIXELS, else MAX_INPUT_PIXELS."""
    text = os.environ.get(INPUT_PIXELS_ENV, "").strip()
    if not text:
        return MAX_INPUT_PIXELS
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise FacequantError(f"{INPUT_PIXELS_ENV}={text[:40]!r}: expected a positive whole number of pixels")
    return value


def check_input(path: object, height: object, width: object) -> None:
    """Refuse a declared (or overridden) input over the cap; symbolic sizes pass (the spec
    then takes them from an override, checked in turn)."""
    if not (isinstance(height, int) and isinstance(width, int)):
        return
    cap = max_input_pixels()
    if height * width > cap:
        raise BadModelError(path, f"model input is {height}x{width} ({height * width:,} pixels), over the cap of "
                                  f"{cap:,} pixels a face model's input may have ({INPUT_PIXELS_ENV} changes it)")


def check_buffers(path: object, input_size: tuple[int, int], counts: Mapping[str, int]) -> None:
    """Refuse, before any is made, a buffer of preprocessed inputs over MAX_BUFFER_BYTES.
    `counts` maps what sets a buffer's size, as the user gave it ("--batch-size 64"), to the
    number of inputs it holds."""
    height, width = input_size
    per_input = height * width * BYTES_PER_PIXEL
    for given, count in counts.items():
        if count * per_input > MAX_BUFFER_BYTES:
            raise FacequantError(
                f"{given}: {count:,} inputs of {height}x{width} pixels ({path}) would take "
                f"{count * per_input / 1e9:.1f} GB as float32, over the {MAX_BUFFER_BYTES / 1e9:.1f} GB a buffer may "
                f"hold; lower {given.split(' ')[0]}")

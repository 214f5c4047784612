"""Numeric and list options, checked where they are parsed.

Each `facequant` numeric option has an argparse `type=` converter from here: it turns the text
into the value or raises argparse.ArgumentTypeError with the reason, which the CLI prints as one
line naming the option. A config file's values go through the same converters (facequant.cli).
The ranges themselves live in facequant.ranges, where the core checks them again.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from facequant.errors import FacequantError
from facequant.ranges import (
    BLUR_RANGE,
    CALIBRATION_METHODS,
    COSINE_RANGE,
    COUNT_RANGE,
    CROP_MARGIN_RANGE,
    FACE_PX_RANGE,
    FAR_RANGE,
    IOD_RANGE,
    JPEG_RANGE,
    NOISE_RANGE,
    RAY_TIMEOUT_RANGE,
    SEED_RANGE,
    Range,
    problem,
)


def _number(text: str, integer: bool) -> float | int:
    text = str(text).strip()
    try:
        return int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if integer else 'a number'}, "
                                         f"got {text!r}") from None


def _checked(text: str, rng: Range, integer: bool) -> float | int:
    value = _number(text, integer)
    why = problem(value, rng, integer, shown=repr(str(text).strip()))
    if why:
        raise argparse.ArgumentTypeError(why)
    return value


def number(rng: Range, integer: bool = False) -> Callable[[str], float]:
    """A converter for one number in rng (an integer when asked)."""

    def convert(text: str) -> float:
        value = _checked(text, rng, integer)
        return int(value) if integer else float(value)

    return convert


def finite_float(low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False) -> Callable[[str], float]:
    """A converter for a finite float in [low, high] (open ends on request)."""
    return number(Range(low, high, low_open, high_open))


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], float]:
    """A converter for an integer in [low, high]."""
    return number(Range(low, high), integer=True)


probability = number(FAR_RANGE)  # --far
cosine = number(COSINE_RANGE)  # --threshold
seed = number(SEED_RANGE, integer=True)
positive_int = number(COUNT_RANGE, integer=True)  # --batch-size, --calib-size, --candidates, --max-probes
iod_mm = number(IOD_RANGE)
blur_sigma = number(BLUR_RANGE)
noise_sigma = number(NOISE_RANGE)
jpeg_quality = number(JPEG_RANGE, integer=True)
crop_margin = number(CROP_MARGIN_RANGE)  # --crop-margin
ray_timeout = number(RAY_TIMEOUT_RANGE)  # --ray-timeout, seconds


def float_list(rng: Range, what: str = "values", integer: bool = False) -> Callable[[str], tuple[float, ...]]:
    """A converter for 'a,b,c': every item a number in rng, no empty items."""

    def convert(text: str) -> tuple[float, ...]:
        items = str(text).split(",")
        if any(not item.strip() for item in items):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r} (an empty item)")
        return tuple(_checked(item, rng, integer) for item in items)

    return convert


def distances(text: str) -> tuple[float, ...]:
    """--distances, --calib-distances: metres as '0.5,1,2' or 'START:STOP:N' (geometric)."""
    from facequant.simulate.camera import parse_distances

    if not str(text).strip():
        raise argparse.ArgumentTypeError("expected '0.5,1,2' or 'START:STOP:N', got an empty value")
    try:
        return parse_distances(str(text))
    except FacequantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


face_px = float_list(FACE_PX_RANGE, "face sizes in pixels")
sizes = float_list(COUNT_RANGE, "calibration sizes", integer=True)  # study --sizes


def distance_mixes(text: str) -> tuple[tuple[float, ...], ...]:
    """study --mixes: ';' between mixes, each a --distances value."""
    return tuple(distances(mix) for mix in str(text).split(";"))


def camera(text: str) -> str:
    """--camera: a preset name or an inline profile, checked now (the spec itself is kept)."""
    from facequant.simulate.camera import camera_from_spec

    try:
        camera_from_spec(str(text))
    except FacequantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return str(text)


def text(value: str) -> str:
    """A name or path option (--model, --data, --backends ...): not empty."""
    if not str(value).strip():
        raise argparse.ArgumentTypeError("expected a value, got an empty one")
    return str(value)


def name_list(value: str) -> str:
    """--backends: comma-separated names, at least one, no empty item (the names are checked
    by the code that knows them)."""
    items = str(value).split(",")
    if any(not item.strip() for item in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {value!r} (an empty item)")
    return str(value)


def out_dir(value: str) -> Path:
    """--out of a results folder: not empty, and not an existing file."""
    path = Path(text(value))
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: is a file, not a results directory")
    return path


def method_list(value: str) -> tuple[str, ...]:
    """study --methods: comma-separated calibration methods, each one ORT knows."""
    methods = tuple(m.strip() for m in str(value).split(","))
    bad = [m for m in methods if m not in CALIBRATION_METHODS]
    if bad or not methods:
        raise argparse.ArgumentTypeError(f"unknown calibration method {bad[0]!r} (choose from "
                                         f"{', '.join(CALIBRATION_METHODS)})")
    return methods


def model_override(text: str) -> tuple[str, object]:
    """--model-override KEY=VALUE: the value read as YAML and checked for its key."""
    import yaml

    from facequant import yamlfiles

    key, sep, raw = str(text).partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {yamlfiles.excerpt(text)}")
    try:
        value = yamlfiles.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return model_override_item(key.strip(), value)


def model_override_item(key: str, value: object) -> tuple[str, object]:
    """One override checked as far as it can be without the model (names are checked later)."""
    from facequant.models.spec import check_override

    try:
        return key, check_override(None, key, value)
    except FacequantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def preprocessing(value: str) -> str:
    """--preprocessing: auto, inferred, or a candidate name (facequant.models.preprocessing)."""
    from facequant.models.preprocessing import preprocessing_choices

    text = str(value).strip()
    if text not in preprocessing_choices():
        raise argparse.ArgumentTypeError(f"unknown preprocessing {text!r} (choose from {', '.join(preprocessing_choices())})")
    return text

"""Numeric and list options, checked where they are parsed.

Each `facequant` numeric option has an argparse `type=` converter from here: it turns the text
into the value or raises argparse.ArgumentTypeError with the reason, which the CLI prints as one
line naming the option. A config file's values go through the same converters (facequant.cli).
The core (SweepConfig, Degradation, backends) checks the same ranges again with `require`, so
an API caller gets a FacequantError instead of garbage.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facequant.errors import FacequantError

#: The most a distance sweep can ask for: beyond a kilometre no camera sees a face.
MAX_DISTANCE_M = 1000.0
#: Points a 'START:STOP:N' distance range may hold.
MAX_DISTANCE_POINTS = 200
#: Calibration methods (--calib-method, study --methods).
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: numpy's legacy seeding (RandomState, used by some libraries we call) takes 32 bits.
MAX_SEED = 2**32 - 1


def _fmt(value: float | None) -> str:
    """A bound as people write it: 4294967295, not 4.29497e+09."""
    if value is not None and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if value is not None else ""


@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers; None = unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        low, high = _fmt(self.low), _fmt(self.high)
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {low}" if self.low is not None else "finite"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def _problem(value: object, rng: Range, integer: bool, shown: str | None = None) -> str | None:
    """Why `value` is not an allowed number, or None when it is."""
    # bool is an int subclass: `seed: true` is a typo, not 1.
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (isinstance(value, int) or not integer) and rng.contains(float(value))  # type: ignore[arg-type]
    if ok:
        return None
    return f"must be {'an integer' if integer else 'a number'} {rng}, got {shown or repr(value)}"


def require(what: str, value: object, rng: Range, integer: bool = False) -> None:
    """Raise FacequantError('<what>: must be ...') unless value is a number in rng (core checks)."""
    problem = _problem(value, rng, integer)
    if problem:
        raise FacequantError(f"{what}: {problem}")


def _number(text: str, integer: bool) -> float | int:
    text = str(text).strip()
    try:
        return int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if integer else 'a number'}, "
                                         f"got {text!r}") from None


def _checked(text: str, rng: Range, integer: bool) -> float | int:
    value = _number(text, integer)
    problem = _problem(value, rng, integer, shown=repr(str(text).strip()))
    if problem:
        raise argparse.ArgumentTypeError(problem)
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


#: Ranges the core checks again (SweepConfig, Degradation, backends, settings).
FAR_RANGE = Range(0.0, 1.0, low_open=True, high_open=True)
COSINE_RANGE = Range(-1.0, 1.0)
SEED_RANGE = Range(0, MAX_SEED)
COUNT_RANGE = Range(1, 1_000_000)  # batch size, calibration size, candidates, probes
#: Adult inter-ocular distances lie within 50-75 mm; 40-90 leaves room for children and unusual
#: faces and refuses a unit slip (6.3 cm, 0.063 m).
IOD_RANGE = Range(40.0, 90.0)
BLUR_RANGE = Range(0.0, 100.0)  # Gaussian sigma in camera pixels, 0 = off
NOISE_RANGE = Range(0.0, 255.0)  # standard deviation in 8-bit levels, 0 = off
JPEG_RANGE = Range(0, 100)  # 0 = off, else the quality OpenCV's encoder takes
DISTANCE_RANGE = Range(0.0, MAX_DISTANCE_M, low_open=True)
FACE_PX_RANGE = Range(1.0, 10_000.0)  # aligned face sizes in camera pixels

probability = number(FAR_RANGE)  # --far
cosine = number(COSINE_RANGE)  # --threshold
seed = number(SEED_RANGE, integer=True)
positive_int = number(COUNT_RANGE, integer=True)  # --batch-size, --calib-size, --candidates, --max-probes
iod_mm = number(IOD_RANGE)
blur_sigma = number(BLUR_RANGE)
noise_sigma = number(NOISE_RANGE)
jpeg_quality = number(JPEG_RANGE, integer=True)


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
    from facequant.distance import parse_distances

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
    from facequant.distance import camera_from_spec

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
        raise argparse.ArgumentTypeError(f"{value}: exists and is not a folder")
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

    key, sep, raw = str(text).partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return model_override_item(key.strip(), value)


def model_override_item(key: str, value: object) -> tuple[str, object]:
    """One override checked as far as it can be without the model (names are checked later)."""
    from facequant.models import check_override

    try:
        return key, check_override(None, key, value)
    except FacequantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

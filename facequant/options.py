"""Converters from text, checked where they are parsed.

Each option's argparse `type=` converter comes from here: it turns the text into the value or
raises argparse.ArgumentTypeError with the reason, which the CLI prints as one line naming the
option. A number's converter is derived from the range its config field declares (`number`,
facequant.config); the lists, names and paths have their own below. A config file's values and
the TUI's form go through the same converters (facequant.config.parse_value).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from facequant.errors import FacequantError
from facequant.ranges import (
    COUNT_RANGE,
    FACE_PX_RANGE,
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


def choice_list(choices: tuple[str, ...], what: str) -> Callable[[str], tuple[str, ...]]:
    """A converter for 'a,b': comma-separated items, each one of `choices`."""

    def convert(value: str) -> tuple[str, ...]:
        items = tuple(m.strip() for m in str(value).split(","))
        bad = [m for m in items if m not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad[0]!r} (choose from {', '.join(choices)})")
        return items

    return convert


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

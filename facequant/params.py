"""Each parameter declared once, on the config field that holds it.

A config dataclass declares its user-facing fields with `param(...)`: the default (the field's
own), the help, the --help group, the range or the choices (one literal tuple, referenced), the
converter from text, and the commands that list it. Everything else is derived from that
declaration, in the spirit of scikit-learn's parameter constraints:

- validation: `validate(self, "sweep config")` in each config's __post_init__ checks every
  declared field (ranges, integers, choices, item by item for tuples) with one-line errors;
- the command line, the --config keys and the TUI's form: facequant.config derives the option
  rows (facequant.config.Option) from the fields, nested configs included (`nested(...)`);
- building a config from option values by dest: `build(cls, values)`, for every command.

This module stays light (stdlib, ranges, errors): config modules import it at their top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass
from typing import Any

from facequant.errors import FacequantError
from facequant.ranges import Range, require

# Option groups, in --help order.
WHAT, SIMULATION, PROTOCOL, QUANTIZATION, COST, RUN, SCALE = (
    "what to evaluate", "distance simulation", "matching protocol", "quantization", "cost", "run", "scale")
GROUPS = (WHAT, SIMULATION, PROTOCOL, QUANTIZATION, COST, RUN, SCALE)

# Commands, by what they do with a sweep config.
SWEEPING = ("sweep", "study", "search-precision")  # run full sweeps (matching, threshold, cost)
DIAGNOSE, EXPORT_PROBES, EXPORT_PRECISION, VALIDATE, TUI, MODELS_CHECK = (
    "diagnose", "export-probes", "export-precision", "validate-sim", "tui", "models check")
#: Every command that writes a results directory: --out, --force, --config, --quiet, --seed.
WRITERS = (*SWEEPING, DIAGNOSE, EXPORT_PROBES, EXPORT_PRECISION, VALIDATE)
ALL = (*WRITERS, TUI)
#: Commands that build the sweep's probes (model, faces, simulated distances) ...
PROBES = (*SWEEPING, DIAGNOSE, EXPORT_PROBES, EXPORT_PRECISION, TUI)
#: ... and those of them that calibrate quantized models.
CALIBRATES = (*SWEEPING, DIAGNOSE, EXPORT_PRECISION, TUI)

#: The key of a field's metadata that holds its Param (or its Nested).
KEY = "facequant"

#: help: a text, or a function of the command (read when --help is built: presets, one command's form).
Help = str | Callable[[str], str]


@dataclass(frozen=True)
class Param:
    """What the command line, a --config file, the TUI and validation need to know of a field."""

    help: Help
    group: str = RUN
    option: str | None = None  # the long option's name; default: the field's name with '-'
    range: Range | None = None  # every number (every item of a tuple) in it
    integer: bool = False
    choices: tuple[str, ...] | None = None  # the value (every item of a tuple) one of these
    convert: Callable[[str], Any] | None = None  # text -> value; default: a number in `range`, or the text
    to_field: Callable[[Any], Any] | None = None  # parsed value -> field value (default: as is)
    flag: bool = False  # store_true; with `negate`, --no-X sets the field False
    negate: bool = False
    repeat: bool = False  # may be given several times (a list of parsed items)
    metavar: str | None = None
    commands: tuple[str, ...] | None = None  # None: every command whose config holds the field
    cli_default: bool = True  # False: the option has no default; an absent value keeps the field's
    fallback: Any = None  # what an absent option gives a field the dataclass requires (a positional one)
    positional: bool = False  # a positional argument of its command, not an --option
    required: bool = False  # on the command line

    def option_name(self, field_name: str) -> str:
        return self.option or field_name.replace("_", "-")


@dataclass(frozen=True)
class Nested:
    """A field holding another declared config: its fields are this config's options too.
    `help` re-words some of them for the commands of this config (by field name)."""

    cls: type
    help: Mapping[str, Help] = dataclasses.field(default_factory=dict)
    #: Built from the values only when this holds for them (else the field's default): search's
    #: NNCF settings exist only when its --method runs NNCF.
    when: Callable[[Mapping[str, Any]], bool] | None = None


def param(default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING, **declared: Any) -> Any:
    """A dataclass field with its default and its Param (the keyword arguments of Param)."""
    metadata = {KEY: Param(**declared)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def nested(cls: type, default: Any = MISSING, *, default_factory: Callable[[], Any] | Any = MISSING,
           help: Mapping[str, Help] | None = None,  # noqa: A002 - the Param's word
           when: Callable[[Mapping[str, Any]], bool] | None = None) -> Any:
    """A dataclass field holding a declared config `cls` (see Nested)."""
    metadata = {KEY: Nested(cls, dict(help or {}), when)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Param | Nested]]:
    """The fields of a config class that carry a declaration, in order."""
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(KEY)
        if isinstance(spec, Param | Nested):
            yield f, spec


def field_default(f: dataclasses.Field[Any]) -> Any:
    """A field's default (MISSING when it has none)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def alternatives(choices: tuple[str, ...]) -> str:
    """'a or b', 'a, b or c'."""
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"


def validate(obj: object, what: str) -> None:
    """Check every declared field of a config instance: a one-line FacequantError naming
    `what` and the field ('sweep config: iod_mm: must be a number in [40, 90], got 6.3')."""
    for f, spec in declared(type(obj)):
        if not isinstance(spec, Param):
            continue  # a nested config checked itself when it was made
        value = getattr(obj, f.name)
        if value is None and field_default(f) is None:
            continue  # optional, not given
        items = tuple(value) if isinstance(value, tuple | list) else (value,)
        if isinstance(value, tuple | list) and not items and field_default(f):
            raise FacequantError(f"{what}: {f.name} is empty")
        if spec.range is not None:
            for item in items:
                require(f"{what}: {f.name}", item, spec.range, spec.integer)
        if spec.choices is not None:
            for item in items:
                if item not in spec.choices:
                    raise FacequantError(f"{what} {f.name} '{item}': choose {alternatives(spec.choices)}")


def dest(f: dataclasses.Field[Any], spec: Param) -> str:
    """The key a field's value has among parsed options (the long option's name with '_')."""
    return spec.option_name(f.name).replace("-", "_")


def build(cls: type, values: Mapping[str, Any], base: object = None) -> Any:
    """An instance of `cls` from option values by dest (a parsed command line, a --config
    file, the TUI's form): each declared field from its option (through `to_field`), nested
    configs built the same way, absent values (None) at the field's default (or fallback),
    or with `base` (an instance of cls) at base's value: the form edits a config."""
    kwargs: dict[str, Any] = {}
    for f, spec in declared(cls):
        if isinstance(spec, Nested):
            if spec.when is None or spec.when(values):
                kwargs[f.name] = build(spec.cls, values, getattr(base, f.name) if base is not None else None)
            continue
        value = values.get(dest(f, spec))
        if value is None and base is not None:
            kwargs[f.name] = getattr(base, f.name)
            continue
        if spec.flag:
            value = bool(value) != spec.negate
        if value is None and field_default(f) is not MISSING:
            continue  # not given: the field's own default
        if value is None:
            value = spec.fallback
        kwargs[f.name] = spec.to_field(value) if spec.to_field is not None else value
    if base is not None:  # what the declarations do not cover (a DiagnoseConfig's memory_mb) as base has it
        kwargs = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls) if f.init} | kwargs
    return cls(**kwargs)

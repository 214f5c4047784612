"""Every command's options, derived from the config fields that declare them (facequant.params).

A config dataclass declares each field a user sets once, with `param(...)` (default, help,
group, range or choices, converter, the commands that list it). This module turns those
declarations into option rows (Option): the argparse groups (facequant.cli), the keys a
--config YAML file may hold (read_config: each value through the row's own converter), and the
TUI's prefill and form (facequant.params.build). The options that are not part of any config
(--config, --out, --force, --quiet) are declared once here, in RUN_OPTIONS.
"""

from __future__ import annotations

import argparse
import builtins
import dataclasses
import functools
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from facequant import options, params, yamlfiles
from facequant.errors import FacequantError
from facequant.params import (  # noqa: F401 - re-exported: the names the CLI modules use
    ALL,
    CALIBRATES,
    COST,
    DIAGNOSE,
    EXPORT_PRECISION,
    EXPORT_PROBES,
    GROUPS,
    MODELS_CHECK,
    PROBES,
    PROTOCOL,
    QUANTIZATION,
    RUN,
    SCALE,
    SIMULATION,
    SWEEPING,
    TUI,
    VALIDATE,
    WHAT,
    WRITERS,
)

if TYPE_CHECKING:  # the engine imports onnxruntime; the option rows must stay cheap to import
    from facequant.sweep.config import SweepConfig


@dataclass(frozen=True)
class Option:
    """One command-line option (--NAME), also a config-file key (NAME, '-' or '_')."""

    name: str
    help: str | Callable[[], str]  # a callable for help that lists presets (read when --help is built)
    group: str = RUN
    default: object = None
    type: Callable[[str], object] | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False  # store_true
    repeat: bool = False  # may be given several times (action="append")
    metavar: str | None = None
    required: bool = False
    commands: tuple[str, ...] = ALL
    field: str | None = None  # the config field it sets (dotted through nested configs); None: a run option
    config: builtins.type | None = None  # the config class that field belongs to (the command's, not a nested one)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def help_text(self) -> str:
        """The help, with the default said where there is one (unless the help says it)."""
        text = self.help() if callable(self.help) else self.help
        shown = shown_default(self.default)
        if shown is not None and not self.flag and "default" not in text.lower():
            text = f"{text} (default {shown})"
        return text

    def add_to(self, group: argparse._ActionsContainer) -> argparse.Action:
        kwargs: dict[str, Any] = {"help": self.help_text(), "dest": self.dest}
        if self.flag:
            return group.add_argument(f"--{self.name}", action="store_true", **kwargs)
        kwargs.update(default=[] if self.repeat else self.default, type=self.type, choices=self.choices,
                      metavar=self.metavar, required=self.required)
        if self.repeat:
            kwargs["action"] = "append"
        return group.add_argument(f"--{self.name}", **kwargs)


def shown_default(value: object) -> str | None:
    """A default as the command line writes it: 0.001, 64, 'fp32,int8-pt'; None: no default."""
    if value is None or value == [] or isinstance(value, bool):
        return None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --------------------------------------------------------------------------- options from fields


#: The options that belong to no config: where the results go and how the run talks.
RUN_OPTIONS: tuple[Option, ...] = (
    # every command whose options are derived from configs takes --config (options_for)
    Option("config", "YAML file with any of these options (keys as the long option names, '-' or '_')", WHAT,
           type=Path),
    Option("out", "results directory (default runs/<model>-<time>)", RUN, type=options.out_dir, commands=ALL),
    Option("force", "replace an existing results directory, only one facequant wrote (its .facequant.json "
           "lists every file in it)", RUN, flag=True, commands=WRITERS),
    Option("quiet", "no progress bar", RUN, flag=True, commands=WRITERS),
)


def _cli_default(f: dataclasses.Field[Any], spec: params.Param) -> object:
    """The option's default as the command line would give it (a tuple joined by ',')."""
    if spec.flag or spec.repeat or not spec.cli_default:
        return None
    value = params.field_default(f)
    if value is dataclasses.MISSING:
        return spec.fallback
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else None
    return value


def _is_list(f: dataclasses.Field[Any]) -> bool:
    return isinstance(params.field_default(f), tuple)


def _converter(f: dataclasses.Field[Any], spec: params.Param) -> Callable[[str], object] | None:
    """The field's converter from text: its own, else a number in its range, else the text
    (a list of choices for a tuple of them: study --methods)."""
    if spec.convert is not None:
        return spec.convert
    if spec.choices is not None and _is_list(f):
        return options.choice_list(spec.choices, f.name.rstrip("s").replace("_", " "))
    if spec.choices is not None or spec.flag:
        return None
    if spec.range is not None:
        return options.number(spec.range, spec.integer)
    return options.text


def _help(spec_help: params.Help, command: str | None) -> str | Callable[[], str]:
    if callable(spec_help):
        return functools.partial(spec_help, command or "sweep")
    return spec_help


def field_options(cls: type, command: str | None = None, reword: Mapping[str, params.Help] | None = None,
                  prefix: str = "", top: type | None = None) -> list[Option]:
    """The options declared by the fields of `cls` (nested configs included) that `command`
    takes (None: every one); `reword` gives some of them another help, by field name."""
    out: list[Option] = []
    for f, spec in params.declared(cls):
        if isinstance(spec, params.Nested):
            out += field_options(spec.cls, command, {**spec.help, **(reword or {})}, f"{prefix}{f.name}.", top or cls)
            continue
        if spec.positional or (command is not None and spec.commands is not None and command not in spec.commands):
            continue
        # argparse checks choices against the converted value: a list's converter checks its items
        choices = spec.choices if spec.convert is None and not _is_list(f) else None
        out.append(Option(spec.option_name(f.name), _help((reword or {}).get(f.name, spec.help), command),
                          spec.group, _cli_default(f, spec), _converter(f, spec), choices, spec.flag,
                          spec.repeat, spec.metavar, spec.required,
                          spec.commands or ((command,) if command else ALL), f"{prefix}{f.name}", top or cls))
    return out


def positional(parser: argparse.ArgumentParser, cls: type, name: str, command: str) -> None:
    """Add a field declared positional (study's kind, export-precision's recipe) to a parser."""
    f = next(f for f, spec in params.declared(cls) if f.name == name)
    spec = f.metadata[params.KEY]
    help_text = spec.help(command) if callable(spec.help) else spec.help
    convert = None if spec.choices else _converter(f, spec)
    if convert is None:
        parser.add_argument(name, choices=spec.choices, help=help_text)
    else:
        parser.add_argument(name, type=convert, choices=spec.choices, help=help_text)


def options_for(command: str, *configs: type, own: Sequence[Option] = ()) -> list[Option]:
    """The options `command` takes: those the fields of its configs declare, then the run
    options it takes; an own option with the same name replaces a row in place (another help)."""
    mine = {o.name: o for o in own}
    rows = [o for cls in configs for o in field_options(cls, command)]
    rows += [o for o in RUN_OPTIONS if command in o.commands or o.name == "config"]
    table = [mine.pop(o.name, o) for o in rows]
    return table + list(mine.values())


def sweep_options() -> tuple[Option, ...]:
    """Every option a sweep config takes, any command's, with the run options."""
    from facequant.sweep.config import SweepConfig

    return (*field_options(SweepConfig), *RUN_OPTIONS)


def __getattr__(name: str) -> object:  # SWEEP_OPTIONS: derived when first read (the config imports the engine's deps)
    if name == "SWEEP_OPTIONS":
        return sweep_options()
    raise AttributeError(name)


def add_options(parser: argparse.ArgumentParser, opts: Sequence[Option]) -> None:
    """argparse groups: GROUPS in their order, then a command's own groups as they come."""
    names = [g for g in GROUPS if any(o.group == g for o in opts)]
    names += [g for g in dict.fromkeys(o.group for o in opts) if g not in names]
    groups = {name: parser.add_argument_group(name) for name in names}
    for o in opts:
        o.add_to(groups[o.group])


# --------------------------------------------------------------------------- config files


def read_config(path: Path, opts: Iterable[Option]) -> dict[str, object]:
    """A --config YAML as {dest: value}, every value converted and checked as on the command
    line; a one-line FacequantError naming the file and the key otherwise."""
    by_dest = {o.dest: o for o in opts}
    try:
        raw = yamlfiles.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:  # the file:line, then why (a duplicate key, an alias, bad syntax)
        line = yamlfiles.error_line(exc)
        where = f"{path}:{line}" if line is not None else f"{path}"
        raise FacequantError(f"{where}: cannot read config: not valid YAML ({yamlfiles.error_reason(exc)})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FacequantError(f"{path}: cannot read config ({getattr(exc, 'strerror', None) or exc})") from exc
    if raw is None:
        raise FacequantError(f"{path}: config is empty (expected a mapping of option: value)")
    if not isinstance(raw, dict):
        raise FacequantError(f"{path}: config must be a mapping of option: value, got a {type(raw).__name__}")
    values: dict[str, object] = {}
    for key, value in raw.items():
        option = by_dest.get(str(key).replace("-", "_"))
        if option is None or option.name == "config":
            raise FacequantError(f"{path}: unknown option '{key}'")
        values[option.dest] = _config_value(path, str(key), option, value)
    return values


def _config_value(path: Path, key: str, option: Option, value: object) -> object:
    """One config value through the option's own converter (flags must be YAML booleans)."""
    return parse_value(option, value, f"{path}: {key}", f"--{key.replace('_', '-')}")


def parse_value(option: Option, value: object, where: str, named: str | None = None) -> object:
    """A value as a config file or a form holds it (YAML scalars and lists, text), through the
    option's own converter, as on the command line; FacequantError('<where>: <why>') otherwise."""
    def bad(why: str) -> FacequantError:
        return FacequantError(f"{where}: {why}")

    if option.flag:  # a flag such as --quiet: 'no' in quotes is a string, and true
        if not isinstance(value, bool):
            raise bad(f"must be true or false (an unquoted YAML boolean), got {yamlfiles.excerpt(value)}")
        return value
    if isinstance(value, bool) and option.choices is not None and ("on" if value else "off") in option.choices:
        value = "on" if value else "off"  # YAML 1.1 reads an unquoted off as false: `latency: off` means the choice
    if value is None or value == "" or isinstance(value, bool):
        raise bad(f"expected a value for {named or '--' + option.name}, got {yamlfiles.excerpt(value)}")
    if option.repeat:  # --model-override: a mapping, or KEY=VALUE items
        try:
            if isinstance(value, dict):
                return [options.model_override_item(str(k), v) for k, v in value.items()]
            convert = option.type or options.text
            return [convert(str(item)) for item in (value if isinstance(value, list) else [value])]
        except argparse.ArgumentTypeError as exc:
            raise bad(str(exc)) from None
    text = _config_text(value)
    if text is None:
        raise bad(f"expected text or a number, got a {type(value).__name__}")
    if option.choices is not None and text not in option.choices:
        raise bad(f"must be one of {', '.join(map(str, option.choices))}, got {yamlfiles.excerpt(value)}")
    if option.type is None:
        return text
    try:
        return option.type(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise bad(str(exc)) from None


def _config_text(value: object) -> str | None:
    """A YAML scalar or list as the text the command line would carry: lists joined by ',',
    lists of lists by ';' (study --mixes); None for anything else (a mapping, a boolean)."""
    def scalar(v: object) -> str | None:
        return str(v) if isinstance(v, str | int | float) and not isinstance(v, bool) else None

    if not isinstance(value, list):
        return scalar(value)
    if not value:
        return None
    if any(isinstance(v, list) for v in value):
        mixes = [[scalar(x) for x in (v if isinstance(v, list) else [v])] for v in value]
        texts = [[x for x in m if x is not None] for m in mixes]
        return None if any(len(t) != len(m) for t, m in zip(texts, mixes, strict=True)) else ";".join(
            ",".join(t) for t in texts)
    items = [scalar(v) for v in value]
    known = [x for x in items if x is not None]
    return None if len(known) != len(items) else ",".join(known)


def merge_config(values: Mapping[str, object], opts: Sequence[Option], given: Collection[str]) -> dict[str, object]:
    """values (a command line's, by dest) with its --config file filled in: defaults < the file
    < the command line, which wins for every dest in `given` (the options it gave), whether or
    not the value it gave equals the default."""
    merged = dict(values)
    path = merged.get("config")
    if not path:
        return merged
    for dest, value in read_config(Path(str(path)), opts).items():
        if dest not in given:
            merged[dest] = value
    return merged


# --------------------------------------------------------------------------- sweep configs


def sweep_config(values: Mapping[str, object]) -> SweepConfig:
    """A SweepConfig from option values by dest (a parsed command line, a config file, the
    TUI's form): every declared field, missing values at the field's default."""
    from facequant.sweep.config import SweepConfig

    config: SweepConfig = params.build(SweepConfig, values)
    return config


def default_out(stem: str, runs_dir: Path = Path("runs")) -> Path:
    """runs/<stem>-<time>, as every command names its results; a suffix if that second is taken."""
    name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = runs_dir / name, 2
    while out.exists():
        out, n = runs_dir / f"{name}-{n}", n + 1
    return out


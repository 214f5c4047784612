"""What every command shares: subparsers built from the option table (facequant.config), the
--config merge, the output folder, the progress bar and the inputs a results folder may not hold.

Precedence is one rule: defaults < --config < the command line, whether or not a value given
on the command line equals the default. So the parser records which options the command line
gave (GIVEN), never guessing it by comparing a value with the default."""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from facequant import config as options_table
from facequant.config import Option

if TYPE_CHECKING:
    from facequant.api import Output

#: progress(stage, done, total), as facequant.api takes it.
Progress = Callable[[str, int, int], None]

#: What each progress stage is called on the bar.
LABELS: dict[str, str] = {"faces": "detecting and aligning faces", "calibration": "building backends", "gallery": "enrolling the gallery",
                          "distances": "sweeping distances", "diagnose": "comparing tensors (distance x batch)",
                          "export": "writing tensors and crops", "captures": "aligning captures"}

#: Inputs only the command line knows of (the API protects those its configs name: model,
#: photos, pairs, calibration photos, device profile, name map, captures, backend files).
_CLI_INPUTS = ("config",)


#: On a parsed namespace: the dests of the options the command line gave, whatever their values.
GIVEN = "given_options"


class OptionParser(argparse.ArgumentParser):
    """argparse that records which of a command's table options the command line gave (GIVEN):
    their defaults are held back while parsing (argparse.SUPPRESS: an option not given leaves
    no value) and filled in afterwards, converted as argparse converts a default.

    A command's options are added when it is first used (parsed, its help shown): they are
    derived from its config classes, whose modules import the engine's dependencies; the
    command line pays that for the command it runs only."""

    _held: dict[str, argparse.Action] | None = None
    _declare: Callable[[argparse.ArgumentParser], Sequence[Option]] | None = None

    def declare(self, declare: Callable[[argparse.ArgumentParser], Sequence[Option]]) -> None:
        self._declare = declare

    def ready(self) -> None:
        """Add the declared options now (once)."""
        if self._declare is None:
            return
        declare, self._declare = self._declare, None
        opts = tuple(declare(self))
        options_table.add_options(self, opts)
        self.set_defaults(options=opts)
        self.hold_defaults({o.dest for o in opts})

    def hold_defaults(self, dests: Collection[str]) -> None:
        self._held = {}
        for action in self._actions:
            if action.dest in dests and action.default is not argparse.SUPPRESS:
                self._held[action.dest] = copy.copy(action)  # keeps the default and the converter
                action.default = argparse.SUPPRESS

    def format_help(self) -> str:
        self.ready()
        return super().format_help()

    def format_usage(self) -> str:
        self.ready()
        return super().format_usage()

    def get_default(self, dest: str) -> object:
        self.ready()
        return super().get_default(dest)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]  # typeshed's overloads
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self.ready()
        parsed, rest = super().parse_known_args(args, namespace)
        if self._held is not None:
            setattr(parsed, GIVEN, frozenset(dest for dest in self._held if hasattr(parsed, dest)))
            for dest, action in self._held.items():
                if not hasattr(parsed, dest):
                    default = action.default
                    setattr(parsed, dest, self._get_value(action, default) if isinstance(default, str) else
                            copy.copy(default))  # a fresh [] for each parse of an append option
        return parsed, rest


def command(sub: argparse._SubParsersAction, name: str,
            declare: Callable[[argparse.ArgumentParser], Sequence[Option]] | Sequence[Option], **kwargs: object,
            ) -> argparse.ArgumentParser:
    """A subcommand whose description and examples keep their own line breaks, with the
    options `declare(parser)` returns (it may add positional arguments) as its option groups,
    added when the command is first used; the options, and which of them the command line
    gave, are kept on the parsed namespace for --config."""
    parser = sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)  # type: ignore[arg-type]  # typeshed: kwargs typed per key
    if not callable(declare):  # options given as rows (a command with no config of its own: compare)
        rows = tuple(declare)

        def declare(_: argparse.ArgumentParser) -> Sequence[Option]:
            return rows
    if isinstance(parser, OptionParser):
        parser.declare(declare)
    else:  # a plain argparse parent: declared now
        opts = tuple(declare(parser))
        options_table.add_options(parser, opts)
        parser.set_defaults(options=opts)
    return parser


def given(args: argparse.Namespace) -> frozenset[str]:
    """The dests of the options the command line gave (every parsed option when unknown)."""
    recorded = getattr(args, GIVEN, None)
    return recorded if recorded is not None else frozenset(vars(args))


def values(args: argparse.Namespace) -> dict[str, object]:
    """The parsed options by dest, a --config file filling the options the command line did
    not give (defaults < --config < the command line)."""
    opts: Sequence[Option] = getattr(args, "options", ())
    parsed = {k: v for k, v in vars(args).items() if k not in ("options", GIVEN)}
    return options_table.merge_config(parsed, opts, given(args))


def provided(args: argparse.Namespace) -> frozenset[str]:
    """The dests the user set: on the command line or in the --config file."""
    path = getattr(args, "config", None)
    in_file = options_table.read_config(Path(str(path)), getattr(args, "options", ())) if path else {}
    return given(args) | frozenset(in_file)


def inputs(values: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """(option, path) of the inputs a results folder may not hold that no config names."""
    return tuple((f"--{dest.replace('_', '-')}", str(values[dest])) for dest in _CLI_INPUTS
                 if values.get(dest) and Path(str(values[dest])).expanduser().exists())


def output(values: Mapping[str, object], default_stem: str) -> Output:
    """The api.Output of --out (default runs/<default_stem>-<time>), --force and the inputs."""
    from facequant.api import Output

    out = values.get("out") or options_table.default_out(default_stem)
    return Output(Path(str(out)), bool(values.get("force")), inputs(values))


@contextmanager
def progress_bar(quiet: object, labels: Mapping[str, str] | None = None) -> Iterator[Progress]:
    """A rich progress bar, one task per stage as it first reports; nothing with --quiet, and
    nothing at all (not an empty line) when the command fails before its first step."""
    from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    names = {**LABELS, **(labels or {})}
    bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
              disable=bool(quiet), transient=False)
    tasks: dict[str, TaskID] = {}

    def report(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if stage not in tasks:
            base, tag, rest = stage.partition(" [")  # "distances [faceres]": one model of several
            tasks[stage] = bar.add_task(names.get(base, base) + tag + rest, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        yield report
    finally:
        if tasks:
            bar.stop()


def warn(message: str) -> None:
    """One `facequant: warning: ...` line on stderr."""
    import sys

    print(f"facequant: warning: {message}", file=sys.stderr)

"""What every command shares: subparsers built from the option table (facequant.config), the
--config merge, the output folder, the progress bar and the inputs a results folder may not hold."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def command(sub: argparse._SubParsersAction, name: str, opts: Sequence[Option] = (), **kwargs: object,
            ) -> argparse.ArgumentParser:
    """A subcommand whose description and examples keep their own line breaks, with `opts`
    as its option groups; the options are kept on the parsed namespace for --config."""
    parser = sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)  # type: ignore[arg-type]
    options_table.add_options(parser, opts)
    parser.set_defaults(options=tuple(opts))
    return parser


def values(args: argparse.Namespace) -> dict[str, object]:
    """The parsed options by dest, a --config file merged in (the command line wins)."""
    opts: Sequence[Option] = getattr(args, "options", ())
    return options_table.merge_config({k: v for k, v in vars(args).items() if k != "options"}, opts)


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
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    names = {**LABELS, **(labels or {})}
    bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
              disable=bool(quiet), transient=False)
    tasks: dict[str, int] = {}

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

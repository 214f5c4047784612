"""The `facequant` entry point: the parser of every command, and the one-line error rule."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from facequant import __version__
from facequant.cli import analysis, common, exports, reports, sweep, tools
from facequant.errors import FacequantError
from facequant.names import ESCAPE, display

#: Set to 1 to see the traceback of an internal error instead of its one-line summary.
DEBUG_ENV = "FACEQUANT_DEBUG"


class _Parser(common.OptionParser):
    """argparse, with its errors raised as FacequantError: one line, exit 2, like every other
    input problem (and a caller such as the TUI can catch them)."""

    def error(self, message: str) -> NoReturn:
        raise FacequantError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="facequant", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=sweep.EPILOG,
        description="How far from the camera does each face-embedding backend (float, INT8, 16-bit) still match? "
                    "facequant simulates distance through a camera model, runs the backends side by side, and "
                    "reports TAR, FAR, embedding pre-norm and the quantization cliff.")
    parser.add_argument("--version", action="version", version=f"facequant {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (sweep, tools, analysis, exports, reports):
        module.register(sub)
    return parser


def _one_line(text: str) -> str:
    """A message as one printable line: file names may hold newlines and undecodable bytes."""
    return display(text).replace("\r", "\\r").replace("\n", "\\n")


def _tolerant_streams() -> None:
    # Paths from the command line may hold undecodable bytes (surrogates): print them as
    # \xNN, the rule of every output, rather than fail with UnicodeEncodeError after the work.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors=ESCAPE)  # type: ignore[union-attr]  # TextIO in typeshed; a TextIOWrapper here
        except (AttributeError, ValueError, OSError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    from facequant.results.output import forget_written, set_command, written

    _tolerant_streams()
    forget_written()
    try:
        args = build_parser().parse_args(argv)
        set_command(sys.argv[1:] if argv is None else argv)  # recorded in each results directory's marker
        return int(args.func(args))
    except FacequantError as exc:
        print(f"facequant: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and friends
        return 0
    except KeyboardInterrupt:  # what is on disk: each results folder is whole, old or new
        done = written()
        said = (f"the results in {', '.join(_one_line(str(p)) for p in done)} are complete" if done
                else "nothing was written")
        print(f"facequant: interrupted; {said}", file=sys.stderr)
        return 130
    except Exception as exc:  # the safety net: a bug must still not show a user a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"facequant: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
              f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1

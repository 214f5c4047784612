"""The one way a benchmark writes what it measured into the docs: a block between

    <!-- measured: NAME (benchmarks/SCRIPT.py) -->
    ...
    <!-- /measured -->

on a page under docs/, with the command, versions, date and machine load beside the numbers.
A script names its page and block; the page keeps its own prose around the markers. Numbers in
the docs are never typed by hand: a block is replaced whole by the script that measured it.

    from docs_table import Measurement, add_arguments
    m = Measurement("precision_backends.py", ["facequant sweep --backends ..."])
    ...  # run, read the results
    m.write("backends.md", "precision backends", table_lines, write=args.write)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
END = "<!-- /measured -->"
END_RE = re.compile(r"^" + re.escape(END), re.M)
#: A block's opening marker, at the start of a line (one quoted in prose is no marker): its name
#: and the script that writes it.
START_RE = re.compile(r"^<!-- measured: (?P<name>[^()]+?) \(benchmarks/(?P<script>[\w.-]+\.py)\) -->", re.M)
#: Versions named in every block (others, such as openvino and nncf, when the run loaded them).
VERSION_KEYS = ("facequant", "onnxruntime", "openvino", "nncf", "onnx", "opencv", "numpy", "python")


def start_marker(name: str, script: str) -> str:
    return f"<!-- measured: {name} (benchmarks/{script}) -->"


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def invocation() -> str:
    """How this benchmark was started, as a user would type it."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return " ".join(["python", shlex.quote(str(script)), *(shlex.quote(a) for a in sys.argv[1:])])


def blocks(text: str) -> dict[str, tuple[str, str]]:
    """The measured blocks of a page: name -> (script, body between the markers)."""
    out: dict[str, tuple[str, str]] = {}
    for m in START_RE.finditer(text):
        end = next((e.start() for e in END_RE.finditer(text, m.end())), -1)
        if end < 0:
            raise ValueError(f"measured block '{m['name']}' has no {END}")
        if m["name"] in out:
            raise ValueError(f"measured block '{m['name']}' twice")
        out[m["name"]] = (m["script"], text[m.end():end])
    return out


def replace_block(text: str, name: str, script: str, body: str) -> str:
    """`text` with the block NAME's content replaced by `body` (the markers stay)."""
    start = start_marker(name, script)
    pattern = re.compile(r"^" + re.escape(start) + r".*?^" + re.escape(END), re.S | re.M)
    if not pattern.search(text):
        raise SystemExit(f"no measured block {start} ... {END} on the page")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{END}", text, count=1)


class Measurement:
    """One benchmark run: when it started, the load then, and what it ran (the commands), so
    that every block it writes carries its own provenance."""

    def __init__(self, script: str, commands: Sequence[str] = ()) -> None:
        self.script = script
        self.commands = list(commands)
        self.started = time.time()
        self.load_before = load_average()

    def provenance(self, note: str = "") -> list[str]:
        from facequant.versions import versions

        v = versions()
        named = ", ".join(f"{k} {v[k]}" for k in VERSION_KEYS if k in v)
        ran = "; ".join(f"`{c}`" for c in self.commands) or "(see the script)"
        lines = [f"- written by `{invocation()}`, which ran {ran}",
                 f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
                 f"({time.time() - self.started:.0f} s)",
                 f"- versions: {named}",
                 f"- machine: {os.cpu_count()} cores shared with other work, load average (1 / 5 / 15 min) "
                 f"{self.load_before} before, {load_average()} after: timings are noisy, compare within a run only"]
        return lines + ([f"- {note}"] if note else [])

    def block(self, lines: Sequence[str], note: str = "") -> str:
        return "\n".join([*self.provenance(note), "", *lines])

    def write(self, page: str, name: str, lines: Sequence[str], *, write: bool, note: str = "") -> str:
        """The block NAME on docs/PAGE, with this run's provenance: printed, and written into the
        page when `write` (the page must hold the block's markers)."""
        body = self.block(lines, note)
        print(f"\n{start_marker(name, self.script)}  -> docs/{page}\n{body}\n{END}", flush=True)
        if write:
            path = DOCS / page
            path.write_text(replace_block(path.read_text(), name, self.script, body))
            print(f"written: docs/{page} ({name})", file=sys.stderr)
        return body


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write", action="store_true", help="replace the measured blocks in docs/ (default: print them)")


def fmt(value: object, spec: str = ".2f", unit: str = "", inf: str = "beyond the sweep") -> str:
    """A number for a table cell: '-' for missing, `inf` for an infinite distance."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value) if value not in (None, "") else "-"
    if x != x:
        return "-"
    if x in (float("inf"), float("-inf")):
        return inf
    return f"{x:{spec}}{unit}"


def cliff_cells(row: Any, close: float, far: float) -> dict[str, str]:
    """A cliff.csv row (itertuples) as table cells: verdict, reliable and cliff distance with
    their 95 % intervals, and the cliff cost ('none' when its interval holds zero)."""
    from facequant.results.summary import difference, interval, metres

    r = row
    verdict = "reference" if r.backend == "fp32" else str(r.verdict or "")
    if verdict == "worse" and fmt(r.worse_from_m) != "-":
        verdict += f" from {float(r.worse_from_m):g} m"
    if str(getattr(r, "degenerate", "") or "") not in ("", "nan"):
        verdict = f"DEGENERATE: {r.degenerate}"
    cost = "-" if r.backend == "fp32" else (
        f"{difference(r.distance_cost_m, r.distance_cost_low_m, r.distance_cost_high_m)} "
        f"{interval(r.distance_cost_low_m, r.distance_cost_high_m, signed=True)}").strip()
    return {"verdict": verdict,
            "reliable": f"{metres(r.reliable_distance_m, far)} "
                        f"{interval(r.reliable_distance_low_m, r.reliable_distance_high_m, close, far)}".strip(),
            "cliff": f"{metres(r.cliff_distance_m, far)} "
                     f"{interval(r.cliff_distance_low_m, r.cliff_distance_high_m, close, far)}".strip(),
            "cost": cost}


def read_cliff(folder: Path) -> Any:
    import pandas as pd

    return pd.read_csv(Path(folder) / "cliff.csv", keep_default_na=False, na_values=[""])

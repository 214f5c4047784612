"""A sweep's summary as rich renderables: the verdicts against fp32 first, then each backend's
distances over their intervals, at 80 columns. The CLI prints it after `facequant sweep`; the
TUI's cliff tab shows the same (facequant.results.summary makes the words from the tables)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from facequant.render import line
from facequant.results import summary as words
from facequant.results.directory import run_warnings

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd
    from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
    from rich.table import Table

    from facequant.sweep.result import SweepResult

#: The backend cell's style by its verdict against fp32 (cliff.csv's verdict).
VERDICT_STYLES: dict[str, str] = {"worse": "bold red", "better": "bold green", "same": "green",
                                  "degenerate": "bold magenta"}


def summary_table(rows: list[tuple[str, ...]], identifying: bool = False) -> Table:
    """words.summary_rows as a table 80 columns wide: the verdict under the backend's name, each
    number over its interval; a long recipe name folds rather than squeezing the numbers."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rate, false = ("TPIR", "FPIR") if identifying else ("TAR", "FAR")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in words.DISPLAY_HEADERS:
        if col.startswith("backend"):
            table.add_column(col, overflow="fold", min_width=8)
        else:
            table.add_column(col.replace("TAR/FAR", f"{rate}/{false}"), justify="right", no_wrap=True)
    for row in words.display_rows(rows):
        verdict = row[0].partition("\n")[2].split("\n")[0]
        # Text: an interval's brackets are not markup
        table.add_row(Text(row[0], style=VERDICT_STYLES.get(verdict, "")),
                      *(Text(cell, style="bold magenta" if cell == "DEGENERATE" else "") for cell in row[1:]))
    return table


def prenorm_text(cliff: pd.DataFrame) -> RenderableType:
    """words.prenorm_line, broken only between backends at any width: a backend's figure and
    its width ("3.10 (w 0.73)") stay on one line."""
    head, _, parts = words.prenorm_line(cliff).partition(": ")
    return Parts(f"{head}:", parts.split("; "), "; ", style="dim")


class Parts:
    """`head part; part; ...` wrapped only between parts (a part longer than the width folds)."""

    def __init__(self, head: str, parts: list[str], separator: str, style: str = "") -> None:
        self.head, self.parts, self.separator, self.style = head, parts, separator, style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.cells import cell_len
        from rich.text import Text

        current = self.head
        for i, part in enumerate(self.parts):
            piece = (self.separator.rstrip() if i else "") + " " + part
            if cell_len(current + piece) > options.max_width and current.strip():
                yield Text(current + (self.separator.rstrip() if i else ""), style=self.style)
                current = "  " + part
            else:
                current += piece
        yield Text(current, style=self.style)


def summary(cliff: pd.DataFrame, rates: pd.DataFrame | None, cost: pd.DataFrame | None, run: Mapping[str, Any], *,
            title: str | None = None, identification: pd.DataFrame | None = None,
            identifying: bool = False) -> list[RenderableType]:
    """The summary of one sweep from its tables and run.json: a broken or weak float reference
    first (every other number is relative to it), the title, the verdicts, the table, the
    identification line, the legend and the pre-norm cliff, the model's preprocessing, the
    other warnings."""
    warnings = run_warnings(dict(run))
    first = [w for w in warnings if w.startswith(words.BROKEN) or w.startswith(words.WEAK)]
    out: list[RenderableType] = [
        line(f"{'BROKEN REFERENCE' if w.startswith(words.BROKEN) else 'WEAK REFERENCE'}: {w}", "bold red")
        for w in first]
    if title is not None:
        out.append(line(title, "bold"))
    out += [line(text) for text in words.verdict_lines(cliff, run)]
    out.append(summary_table(words.summary_rows(cliff, rates, cost), identifying))
    if identification is not None:
        out.append(Parts(*words.identification_parts(identification, run), "; "))
    out += [line(words.LEGEND, "dim"), prenorm_text(cliff)]
    from facequant.analysis.preprocessing_check import summary_lines

    out += [line(text) for text in summary_lines(run)]  # preprocessing used and why, graph ends, alignment
    out += [line(f"warning: {w}", "bold red" if " is degenerate: " in w else "yellow")
            for w in warnings if w not in first]
    return out


def render_summary(result: SweepResult, out: Path | None = None) -> list[RenderableType]:
    """What `facequant sweep` prints: the summary, the photos left out, where the results are."""
    identifying = result.rates is not result.sweep
    items = summary(result.cliff, result.rates, result.cost, result.run, title=words.title(result),
                    identification=result.identification, identifying=identifying)
    skipped = result.run.get("skipped_images")
    if isinstance(skipped, list) and skipped:
        items.append(line(f"{len(skipped)} photo(s) skipped (reasons in run.json)"))
    excluded = result.run.get("excluded_files")
    if isinstance(excluded, list) and excluded:
        items.append(line(f"{len(excluded)} file(s) left out of the dataset (reasons in run.json excluded_files)"))
    if out is not None:
        items.append(line(f"results in {out}"))
    return items

"""Two results directories compared (`facequant compare A B`) as rich renderables: the words of
facequant.analysis.compare_output.lines, a NOT COMPARABLE in red and the warnings in yellow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from facequant.analysis.compare import Comparison


def render_comparison(c: Comparison, out: Path | None = None) -> list[RenderableType]:
    from rich.text import Text

    from facequant.analysis.compare import COMPARE_CSV, COMPARE_PLOT, COMPARE_TAR_CSV
    from facequant.analysis.compare_output import lines
    from facequant.results.report import REPORT_HTML

    # a comparison line is not wrapped: it prints whole, as the terminal folds it
    items: list[RenderableType] = [
        Text(text, style="bold red" if text.startswith("NOT COMPARABLE") else "yellow" if text.startswith("warning")
             else "", no_wrap=True, overflow="ignore") for text in lines(c)]
    if out is not None:
        items.append(Text(f"results in {out} ({COMPARE_CSV}, {COMPARE_TAR_CSV}, {COMPARE_PLOT}, {REPORT_HTML})"))
    return items

"""rich renderables of each result kind, for the CLI to print and the TUI to show.

One module per result: summary (a sweep), multi_model, study, fidelity (validate-sim),
diagnosis, check (models check), search (search-precision); a recommendation renders in
facequant.analysis.recommend.render. Nothing here prints: each function returns a list of
renderables, and the caller prints them one per line (facequant.cli.show) or puts them in a
widget. Lines are rich Text, never markup: a bracketed interval or a path stays as written.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text


def line(text: str, style: str = "") -> Text:
    """One line of plain text (no markup, no highlighting), in `style`."""
    from rich.text import Text

    return Text(text, style=style)


def plain(items: Iterable[RenderableType], width: int = 80) -> str:
    """What the renderables print as at `width` columns, without colour (for tests and logs)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, color_system=None, record=True, legacy_windows=False)
    for item in items:
        console.print(item)
    return console.export_text()

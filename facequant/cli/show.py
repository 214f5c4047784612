"""Printing a result: the renderables of facequant.render (or a recommendation's), one per line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType


def show(items: Iterable[RenderableType]) -> None:
    """Print each renderable on its own line(s) to stdout, at the terminal's width. A Text that
    asks not to be wrapped (models check's fixed-width rows) prints whole, as print() would."""
    from rich.console import Console
    from rich.text import Text

    console = Console()
    for item in items:
        console.print(item, soft_wrap=isinstance(item, Text) and bool(item.no_wrap))

"""facequant's Textual TUI: set up and run a distance sweep, watch results arrive per
distance, open previous results directories. `facequant tui --help`."""

from __future__ import annotations

__all__ = ["FacequantApp", "run_tui"]


def __getattr__(name: str) -> object:
    # Textual is imported only when the TUI is used: `import tui` stays cheap for the CLI.
    if name in __all__:
        from tui import app

        return getattr(app, name)
    raise AttributeError(name)

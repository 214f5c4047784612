"""An SVG of the results screen for the README, made by the real app through Textual's pilot:

    python -m tui.screenshot runs/first docs/tui-results.svg [--size 80x24] [--tab tab-table]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from tui.app import FacequantApp
from tui.screens import ResultsScreen


async def _shoot(results: Path, out: Path, size: tuple[int, int], tab: str) -> Path:
    app = FacequantApp(results=results, runs_dir=results.parent)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        assert isinstance(screen, ResultsScreen)
        screen.action_tab(tab)
        await pilot.pause(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        app.save_screenshot(filename=out.name, path=str(out.parent))
    return out


def screenshot(results: Path, out: Path, size: tuple[int, int] = (80, 24), tab: str = "tab-table") -> Path:
    return asyncio.run(_shoot(Path(results), Path(out), size, tab))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui.screenshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="results directory to show")
    parser.add_argument("out", type=Path, help="SVG file to write")
    parser.add_argument("--size", default="80x24", help="terminal COLUMNSxROWS (default 80x24)")
    parser.add_argument("--tab", default="tab-table", help="tab to show (tab-table, tab-cliff, tab-tar, ...)")
    args = parser.parse_args(argv)
    cols, rows = (int(v) for v in str(args.size).lower().split("x"))
    print(screenshot(args.results, args.out, (cols, rows), args.tab))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

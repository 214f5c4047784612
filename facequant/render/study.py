"""A calibration study (`facequant study`) as rich renderables: one row per variant, 80 columns
wide; distances said as the sweep's summary says them (beyond the sweep, not a number)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from facequant.render import line
from facequant.results.summary import difference, metres

if TYPE_CHECKING:
    from rich.console import RenderableType

    from facequant.analysis.studies import StudyResult

#: The study table's headers: two lines each, so eight columns fit 80 without cutting one.
HEADERS = ("variant", "calib\ncrops", "close\nTAR", "max\nFAR", "reliable\nto", "cliff\nat", "cost vs\nfp32",
           "cos fp32\n(far)")


def _far_end(run: object) -> float:
    """The farthest distance a variant swept (its run.json's distances_m), NaN when not said."""
    distances = run.get("distances_m") if isinstance(run, dict) else None
    try:
        return max(float(d) for d in distances) if isinstance(distances, list) and distances else math.nan
    except (TypeError, ValueError):
        return math.nan


def study_rows(result: StudyResult) -> list[tuple[str, ...]]:
    """One row per variant, as shown: a distance beyond the sweep as "> 12 m", a cost that is
    not defined as "-", a degenerate variant's distances not shown."""
    rows: list[tuple[str, ...]] = []
    for r in result.table.itertuples():
        far = _far_end(result.runs.get(str(r.variant)))
        bad = isinstance(r.degenerate, str) and bool(r.degenerate.strip())
        rows.append((str(r.variant), str(r.n_calibration_crops), f"{r.tar_close:.3f}", f"{r.far_max:.4f}",
                     "DEGENERATE" if bad else metres(r.reliable_distance_m, far),
                     "DEGENERATE" if bad else metres(r.cliff_distance_m, far),
                     "-" if bad else difference(r.distance_cost_m, math.nan, math.nan), f"{r.cos_to_fp32_far:.3f}"))
    return rows


def render_study(result: StudyResult, out: Path | None = None) -> list[RenderableType]:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{result.study}: {result.recipe}", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for col in HEADERS:
        if col == "variant":  # a long label folds rather than squeezing the numbers
            table.add_column(col, overflow="fold", min_width=8)
        else:
            table.add_column(col, justify="right", no_wrap=True)
    for row in study_rows(result):
        table.add_row(*(Text(cell) for cell in row))
    items: list[RenderableType] = [table]
    items += [line(f"warning: {warning}", "yellow") for warning in result.warnings]
    if out is not None:
        items.append(line(f"results in {out}"))
    return items

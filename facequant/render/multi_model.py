"""Several models on the same probes (`facequant sweep --model A,B`) as rich renderables: each
model's own summary, then the cross-model table and the choice per scenario."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from facequant.render import line
from facequant.render.summary import render_summary

if TYPE_CHECKING:
    from rich.console import RenderableType

    from facequant.results.multi_model import MultiModelResult


def render_multi_summary(result: MultiModelResult, out: Path | None) -> list[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    from facequant.results.multi_model import MODELS_DIR, MODELS_PLOT, summary_rows

    items: list[RenderableType] = []
    for r in result.results:
        items += render_summary(r)
    table = Table(title=f"{len(result.labels)} models on the same probes (models.csv, {MODELS_PLOT})")
    for col in ("model", "backend", "dim/px", "TAR close", "reliable to", "cliff at", "CPU ms"):
        table.add_column(col, no_wrap=col in ("model", "backend"), justify="left" if col in ("model", "backend") else "right")
    for row in summary_rows(result.models, result.cost):
        table.add_row(*(Text(cell) for cell in row))
    items.append(table)
    if result.recommendation is not None:
        items.append(line("recommendation per scenario, among (model, backend) pairs (recommend.csv):"))
        items += [line(f"  {verdict.summary}") for verdict in result.recommendation.verdicts.values()]
    elif result.not_covered:
        items.append(line(f"no recommendation: {result.not_covered}"))
    if out is not None:
        items.append(line(f"results in {out} (each model's own under {MODELS_DIR}/)"))
    return items

"""Simulation fidelity (`facequant validate-sim`) as rich renderables: real captures against
the same face simulated at their size, per backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from facequant.render import line

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import RenderableType

#: The largest |delta_cos| the simulation aims for.
GOAL = 0.02


def render_fidelity(table: pd.DataFrame, out: Path | None = None) -> list[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    t = Table(title="simulation fidelity (cosine to the reference's own embedding)")
    for col in ("capture", "face px", "backend", "real cos", "sim cos", "delta"):
        t.add_column(col, justify="left" if col in ("capture", "backend") else "right")
    for r in table.dropna(subset=["backend"]).itertuples():
        t.add_row(Text(str(r.capture)), f"{r.face_px:.0f}", Text(str(r.backend)), f"{r.real_cos:.3f}",
                  f"{r.sim_cos:.3f}", f"{r.delta_cos:+.3f}")
    worst = table.delta_cos.abs().max()
    items: list[RenderableType] = [
        t, line(f"max |delta_cos| = {worst:.3f} ({'within' if worst <= GOAL else 'outside'} the {GOAL:g} goal)")]
    items += [line(f"skipped {r.capture}: {r.skipped}") for r in table[table.skipped.notna()].itertuples()]
    if out is not None:
        items.append(line(f"written {out}"))
    return items

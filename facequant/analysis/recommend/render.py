"""rich renderables of a recommendation, for the CLI or the TUI to print (no printing here)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from facequant.analysis.recommend.verdicts import (
    COSTLIER,
    NOT_RESOLVED,
    RECOMMENDED,
    REJECTED,
    Recommendation,
)
from facequant.analysis.recommend.wording import metres, protocol_words

if TYPE_CHECKING:
    from rich.console import RenderableType



# ---------------------------------------------------------------- rendering (no printing)


_STYLE = {RECOMMENDED: "bold green", COSTLIER: "green", NOT_RESOLVED: "yellow", REJECTED: "red"}


def render(rec: Recommendation) -> list[RenderableType]:
    """rich renderables (a table and its notes per scenario) for the CLI or a TUI to print."""
    from rich.table import Table
    from rich.text import Text

    out: list[RenderableType] = []
    for sv in rec.verdicts.values():
        s = sv.scenario
        title = protocol_words(s.requirement(), sv.words[0] == "TPIR")
        table = Table(title=f"{s.name}: {title}", title_justify="left", expand=False)
        table.add_column("backend", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        table.add_column(f"worst {sv.words[0]}", justify="right", no_wrap=True)
        table.add_column("vs fp32", justify="right", no_wrap=True)
        table.add_column("why")
        for v in sv.backends:
            verdict = "closest" if v.closest else v.verdict
            lat = f"{v.latency_vs_fp32:.2f}x" if math.isfinite(v.latency_vs_fp32) else "-"
            table.add_row(v.backend, Text(verdict, style=_STYLE[v.verdict]),
                          f"{v.worst_tar:.3f} @{metres(v.worst_distance_m)}m", lat, v.reason)
        out.append(table)
        out.append(Text(sv.summary, style="bold green" if sv.recommended else "bold yellow"))
        for note in sv.notes:
            out.append(Text(f"  {note}", style="yellow"))
        out.append(Text(f"  {sv.words[0]} read from {sv.tar_basis}; cost order: {sv.cost_basis}", style="dim"))
    for name, why in rec.skipped.items():
        out.append(Text(f"{name}: not evaluated: {why}", style="yellow"))
    for line in rec.distances:  # the scenario-free answer: how far each holds against fp32, with intervals
        out.append(Text(line, style="dim" if line.startswith("  ") else "bold"))
    return out

"""A layer diagnosis (`facequant diagnose`) as rich renderables: per backend and distance the
layers' SNR against float, where it first drops, and the worst layers at the far end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from facequant.render import line
from facequant.values import as_float

if TYPE_CHECKING:
    from rich.console import RenderableType

    from facequant.analysis.diagnose.run import DiagnoseResult


def db(value: object) -> str:
    """A decibel figure: one decimal, "inf" for an exact match, "-" when not measured."""
    v = as_float(value)
    return "-" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.1f}")


def render_diagnosis(result: DiagnoseResult, out: Path | None = None) -> list[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    from facequant.analysis.diagnose.run import HEAD_WEIGHTED_LAYERS

    threshold = result.config.snr_threshold_db
    table = Table(title=f"{result.model_name}: layer SNR vs float ({len(result.layers.layer.unique())} layers)")
    for col in ("backend", "dist", "mean", "min (layer)", f"<{threshold:g}dB", "first<", "head/back", "output"):
        table.add_column(col, no_wrap=True, justify="left" if col in ("backend", "min (layer)") else "right")
    for r in result.summary.itertuples():
        depth = as_float(r.first_below_depth)
        first = "-" if math.isnan(depth) else str(int(depth))
        table.add_row(Text(str(r.backend)), f"{r.distance_m:g} m", db(r.mean_snr_db),
                      Text(f"{db(r.min_snr_db)} {r.min_snr_layer}"), f"{r.layers_below_threshold}/{r.n_layers}", first,
                      f"{db(r.head_mean_snr_db)}/{db(r.backbone_mean_snr_db)}", db(r.output_snr_db))
    items: list[RenderableType] = [
        table, line("SNR in dB over the probes at each distance; first<: depth where SNR first drops below "
                    f"{threshold:g} dB; head: the last {HEAD_WEIGHTED_LAYERS} weighted layers + output", "dim")]
    far = max(result.distances_m)
    for backend in result.backends:
        rows = result.summary[(result.summary.backend == backend) & (result.summary.distance_m == far)]
        if len(rows):
            items.append(line(f"{backend} worst at {far:g} m: {rows.worst10.iloc[0].replace(';', ', ')}"))
    checks = result.run.get("checks")
    for name, check in (checks.items() if isinstance(checks, dict) else ()):
        if float(check["max_abs_diff_vs_backend"]) > 1e-5:
            items.append(line(f"{name}: the diagnosed graph's embedding differs from the backend's by "
                              f"{check['max_abs_diff_vs_backend']:.3g} (run.json checks)", "yellow"))
    if out is not None:
        items.append(line(f"results in {out}"))
    return items

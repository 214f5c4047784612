"""A precision search (`facequant search-precision`) as rich renderables: the recipe found,
each backend re-measured on another seed with its cost, the paired TAR gain, and NNCF's
accuracy control beside it when it ran."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facequant.render import line

if TYPE_CHECKING:
    from rich.console import RenderableType

    from facequant.analysis.search import SearchResult


def _is_number(value: object) -> bool:
    """A finite number (cost figures are NaN or missing when not measured)."""
    return isinstance(value, int | float) and math.isfinite(value)


def _distance(value: float) -> str:
    return "beyond the sweep" if value == float("inf") else f"{value:.2f} m"


def render_search(result: SearchResult, out: Path | None = None) -> list[RenderableType]:
    from facequant.analysis.search import search_summary

    search = result.settings
    summary: dict[str, Any] = search_summary(result)
    items: list[RenderableType] = [line(f"recipe: {summary['recipe']}  ({len(result.layers)} layer(s) chosen; goal "
                                        f"{'met' if result.goal_met else 'not met'} in the search)")]
    refined = result.run.get("refined_distances_m")
    if isinstance(refined, list):
        items.append(line(f"  grid refined to {len(refined)} distances "
                          f"(every {search.tolerance_m:g} m where the reliable distances are decided)"))
    for backend, r in summary["remeasured"].items():
        c = summary["cost"].get(backend, {})
        cpu = f"CPU {c['latency_vs_fp32']:.2f}x fp32" if _is_number(c.get("latency_vs_fp32")) else "CPU not timed"
        items.append(line(f"  {backend:40s} reliable {_distance(r['reliable_distance_m'])}, cliff "
                          f"{_distance(r['cliff_distance_m'])}, {c.get('layers_16bit', '-')} 16-bit layers, "
                          f"{c.get('file_bytes', 0) / 1e6:.2f} MB, {cpu}"))
    for against in (search.base, "fp32"):
        pooled = summary[f"recipe_vs_{'base' if against == search.base else 'fp32'}"]
        if pooled.get("ci95"):
            d, (low, high) = pooled["distances_m"], pooled["ci95"]
            where = f"at {d[0]:g} m" if len(d) == 1 else f"over {d[0]:g}-{d[-1]:g} m"
            items.append(line(f"  TAR vs {against} {where}: {pooled['tar_gain']:+.3f} "
                              f"(95% CI {low:+.3f} to {high:+.3f}; paired, bootstrap over identities)"))
    items.append(line("  16-bit layers counts every layer reading a 16-bit tensor: a chosen layer's neighbours too"))
    items += side_by_side_lines(result)
    if out is not None:
        items.append(line(f"results in {out}"))
    return items


def side_by_side_lines(result: SearchResult) -> list[RenderableType]:
    """NNCF's accuracy control and the search re-measured in one sweep (nothing when it did not run)."""
    from facequant.analysis.search import side_by_side

    ac = result.accuracy_control
    if ac is None:
        return []
    v: dict[str, Any] = ac.validation
    items: list[RenderableType] = [line(
        f"NNCF accuracy control ({ac.settings.base}, {v['metric']} at {v['distance_m']:g} m on "
        f"{len(v['identities'])} held-out people, {v['pairs']} pairs, max drop {ac.settings.max_drop:g}): "
        f"float {ac.metric['float']:.4f}, default INT8 {ac.metric['int8_default']:.4f}, "
        f"controlled {ac.metric['int8_accuracy_control']:.4f}; {len(ac.layers)} node(s) kept in float "
        f"({len(ac.weighted_layers)} weighted): {', '.join(ac.layers) or 'none'}")]
    for r in side_by_side(result).to_dict("records"):
        tar = ("" if not math.isfinite(r["tar_gain_vs_base"]) else
               f", TAR {r['tar_gain_vs_base']:+.3f} ({r['tar_gain_ci_low']:+.3f} to {r['tar_gain_ci_high']:+.3f})")
        items.append(line(f"  {r['method']}: {r['layers_changed']} layer(s) to {r['changed_to']}, reliable "
                          f"{r['base_reliable_distance_m']:.2f} -> {r['reliable_distance_m']:.2f} m over {r['base']}{tar}"))
    return items

"""The sweep's summary in words, as the CLI prints it and the TUI's cliff tab shows it
(facequant.render.summary lays them out): the verdicts against fp32 first, then every distance
with its interval, at 80 columns.

A distance difference whose interval holds zero is never said as a difference: the cell reads
"none" and shows the interval. Everything comes from cliff.csv, cost.csv and run.json, so a
results directory read back shows exactly what the sweep printed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from facequant.results.reading import backend_labels
from facequant.values import as_float

if TYPE_CHECKING:
    from facequant.sweep.result import SweepResult

#: The warnings said first, before the table (everything else of the run is relative to fp32).
BROKEN = "fp32 is degenerate: "
WEAK = "weak float reference: "


_finite = as_float  # a cell as a float, NaN when it holds no number


def metres(value: object, far: float = math.nan) -> str:
    """A distance: "5.02 m", "> 12 m" beyond the sweep (or "beyond sweep" without its end),
    "-" when not defined."""
    v = _finite(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return (f"> {far:g} m" if math.isfinite(far) else "beyond sweep") if v > 0 else "-"
    return f"{v:.2f} m"


def _end(value: float, close: float, far: float, signed: bool, digits: int) -> str:
    if math.isinf(value):
        if signed:
            return "open"
        return (f">{far:g}" if math.isfinite(far) else "inf") if value > 0 else (f"<{close:g}" if
                                                                                  math.isfinite(close) else "-inf")
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def interval(low: object, high: object, close: float = math.nan, far: float = math.nan, signed: bool = False) -> str:
    """[low, high]; an end beyond the sweep as ">12" / "<0.5" (a difference's as "open"). One
    decimal for a distance interval half a metre wide or more (it fits 80 columns), else two."""
    lo, hi = _finite(low), _finite(high)
    if math.isnan(lo) or math.isnan(hi):
        return ""
    digits = 1 if not signed and not hi - lo < 0.5 else 2
    return f"[{_end(lo, close, far, signed, digits)}, {_end(hi, close, far, signed, digits)}]"


def difference(point: object, low: object, high: object) -> str:
    """A signed distance difference, or "none" when its interval holds zero ("-" when there is
    neither a number nor an interval; a results directory from before intervals: the number)."""
    p, lo, hi = _finite(point), _finite(low), _finite(high)
    if math.isnan(lo) or math.isnan(hi):
        return "-" if math.isnan(p) else (f"{p:+.2f} m" if math.isfinite(p) else "-")
    if math.isnan(p) or lo <= 0.0 <= hi:
        return "none"
    return f"{p:+.2f} m" if math.isfinite(p) else ("+open" if p > 0 else "-open")


def _cell(top: str, bottom: str) -> str:
    return f"{top}\n{bottom}" if bottom else top


def summary_rows(cliff: pd.DataFrame, sweep: pd.DataFrame | None = None,
                 cost: pd.DataFrame | None = None) -> list[tuple[str, ...]]:
    """Per backend: (backend, verdict, reliable to, cliff at, cliff cost vs fp32, close-range
    TAR over FAR, CPU latency vs fp32), each number over its interval (two lines). A
    degenerate backend's distances are not shown: its match rate is not a success."""
    rows: list[tuple[str, ...]] = []
    labels = backend_labels(cliff.backend)
    for r in cliff.to_dict("records"):
        close, far = _finite(r.get("close_distance_m")), _finite(r.get("far_distance_m"))
        degenerate = isinstance(r.get("degenerate"), str) and bool(str(r["degenerate"]).strip())
        verdict = str(r.get("verdict")) if isinstance(r.get("verdict"), str) else ""
        if verdict == "worse" and math.isfinite(_finite(r.get("worse_from_m"))):
            verdict = f"worse\nfrom {_finite(r['worse_from_m']):g} m"
        elif not verdict and r["backend"] == "fp32" and not degenerate:
            verdict = "ref."
        far_close = "-"
        if sweep is not None:
            rows_b = sweep[sweep.backend == r["backend"]].sort_values("distance_m")
            far_close = f"{float(rows_b.far.iloc[0]):.4f}" if len(rows_b) else "-"
        latency = "-"
        if cost is not None and "latency_vs_fp32" in cost:
            c = cost[cost.backend == r["backend"]]
            if len(c) and math.isfinite(_finite(c.latency_vs_fp32.iloc[0])):
                spread = (interval(c.latency_vs_fp32_low.iloc[0], c.latency_vs_fp32_high.iloc[0])
                          if {"latency_vs_fp32_low", "latency_vs_fp32_high"} <= set(c.columns) else "")
                latency = _cell(f"{_finite(c.latency_vs_fp32.iloc[0]):.2f}x", spread if r["backend"] != "fp32" else "")
        if degenerate:
            reliable = cliff_at = cost_at = "DEGENERATE"
            verdict = verdict or "degenerate"
        else:
            reliable = _cell(metres(r["reliable_distance_m"], far),
                             interval(r.get("reliable_distance_low_m"), r.get("reliable_distance_high_m"), close, far))
            cliff_at = _cell(metres(r["cliff_distance_m"], far),
                             interval(r.get("cliff_distance_low_m"), r.get("cliff_distance_high_m"), close, far))
            cost_at = "-" if r["backend"] == "fp32" else _cell(
                difference(r.get("distance_cost_m"), r.get("distance_cost_low_m"), r.get("distance_cost_high_m")),
                interval(r.get("distance_cost_low_m"), r.get("distance_cost_high_m"), signed=True))
        rows.append((labels[str(r["backend"])], verdict, reliable, cliff_at, cost_at,
                     _cell(f"{_finite(r['tar_close']):.3f}", far_close), latency))
    return rows


#: What the table's columns are, printed under it.
LEGEND = ("cliff cost: fp32's cliff minus the backend's (> 0: it breaks closer), none: its interval holds 0; CPU vs "
          "fp32: batch-1 latency on this machine, a proxy: median of interleaved rounds [p10, p90] (cost.csv).")


def prenorm_line(cliff: pd.DataFrame) -> str:
    """The pre-norm cliff per backend, in one line."""
    labels = backend_labels(cliff.backend)
    parts = [f"{labels[str(r['backend'])]} {_finite(r['cliff_prenorm']):.2f} (w {_finite(r['cliff_prenorm_width']):.2f})"
             for r in cliff.to_dict("records") if math.isfinite(_finite(r.get("cliff_prenorm")))]
    return f"pre-norm at 50 % match probability (w: 10-90 % width): {'; '.join(parts) or '-'}"


def distance_lines(cliff: pd.DataFrame) -> list[str]:
    """How far each backend holds, one line each from cliff.csv alone: its verdict against
    fp32, reliable and cliff distance and cliff cost, each with its interval."""
    if "verdict" not in cliff:
        return []
    labels = backend_labels(cliff.backend)
    lines = ["how far each backend holds (cliff.csv; verdict against fp32, 95 % intervals over people):"]
    for r in cliff.to_dict("records"):
        close, far = _finite(r.get("close_distance_m")), _finite(r.get("far_distance_m"))
        flag = r.get("degenerate")
        if isinstance(flag, str) and flag.strip():
            lines.append(f"  {labels[str(r['backend'])]}: degenerate")
            continue
        verdict = r.get("verdict") if isinstance(r.get("verdict"), str) and r.get("verdict") else "reference"
        if verdict == "worse" and math.isfinite(_finite(r.get("worse_from_m"))):
            verdict += f" from {_finite(r['worse_from_m']):g} m"
        text = (f"  {labels[str(r['backend'])]}: {verdict}; reliable to {metres(r['reliable_distance_m'], far)} "
                f"{interval(r.get('reliable_distance_low_m'), r.get('reliable_distance_high_m'), close, far)}, "
                f"cliff at {metres(r['cliff_distance_m'], far)} "
                f"{interval(r.get('cliff_distance_low_m'), r.get('cliff_distance_high_m'), close, far)}")
        if r["backend"] != "fp32":
            text += (f", cliff cost {difference(r.get('distance_cost_m'), r.get('distance_cost_low_m'), r.get('distance_cost_high_m'))} "
                     f"{interval(r.get('distance_cost_low_m'), r.get('distance_cost_high_m'), signed=True)}")
        lines.append(text.replace(" ,", ",").rstrip())
    return lines


#: The summary table's columns as shown (display_rows): the verdict sits under the backend's name.
DISPLAY_HEADERS = ("backend\nvs fp32", "reliable to", "cliff at", "cliff cost", "TAR/FAR\nclose", "CPU vs\nfp32")


def display_rows(rows: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """summary_rows as the CLI and the TUI show them, 80 columns wide: the verdict under the
    backend's name, so the numbers keep their width."""
    return [(f"{r[0]}\n{r[1]}" if r[1] else r[0], *r[2:]) for r in rows]


def verdict_lines(cliff: pd.DataFrame, run: Mapping[str, Any]) -> list[str]:
    """The verdicts against fp32, one sentence per backend, from run.json's `verdicts`."""
    record = run.get("verdicts")
    if not isinstance(record, Mapping) or not isinstance(record.get("backends"), Mapping):
        return []
    labels = backend_labels(cliff.backend)
    boot = record.get("bootstrap") or {}
    pairs = "mated probes" if "mated" in str(record.get("unit", "")) else "pairs"
    head = (f"verdicts against {record.get('reference', 'fp32')} on the same {pairs} of {record.get('people')} people "
            f"(exact sign-flip test per distance, Holm over distances, {record.get('alpha', 0.05):g}); intervals: "
            f"95 %, {boot.get('resamples', '?')} bootstrap resamples of people")
    lines = [head]
    reference = cliff[cliff.backend == record.get("reference", "fp32")]
    ref_reliable = metres(reference.reliable_distance_m.iloc[0], _finite(reference.far_distance_m.iloc[0])
                          ) if len(reference) else "-"
    for name, entry in record["backends"].items():
        if not isinstance(entry, Mapping):
            continue
        rel = entry.get("reliable_difference_m") or {}
        said = difference(rel.get("point"), rel.get("low"), rel.get("high"))
        gap = ("no difference" if said == "none" else f"{said} from {record.get('reference', 'fp32')}'s {ref_reliable}")
        lines.append(f"  {labels.get(str(name), str(name))}: {str(entry.get('verdict')).upper()}: {entry.get('reason')}; "
                     f"reliable distance: {gap} {interval(rel.get('low'), rel.get('high'), signed=True)}")
    return lines


def threshold_basis(run: Mapping[str, Any], target: float, identifying: bool = False) -> str:
    """How the threshold was set, for a title: flags a FAR (FPIR) the impostors (non-mated
    probes) cannot resolve."""
    info = run.get("identification" if identifying else "threshold")
    rate, set_on = ("FPIR", "threshold_set_on") if identifying else ("FAR", "set_on")
    if not isinstance(info, Mapping) or info.get(set_on) == "given":
        return "given"
    if info.get("fpir_resolved" if identifying else "far_resolved") is False:
        n = info.get("n_nonmated_at_closest") if identifying else info.get("n_impostor")
        return f"{rate} target {target:g} NOT RESOLVED by {n} {'non-mated probes' if identifying else 'impostors'}"
    return f"{rate} target {target:g}"


def identification_parts(table: pd.DataFrame, run: Mapping[str, Any]) -> tuple[str, list[str]]:
    """identification_line in pieces: its head, then one part per backend (the last with the
    distance range), each backend named as the summary table names it."""
    info = run.get("identification") or {}
    first = table.iloc[0]
    head = (f"identification ({info.get('enrolled_identities', '?')} people enrolled, {int(first.n_mated)} mated / "
            f"{int(first.n_nonmated)} non-mated probes, threshold {float(first.threshold):.3f}; identification.csv):")
    parts = []
    labels = backend_labels(table.backend)  # external:NAME=PATH as NAME, as in the table above
    for backend, rows in table.groupby("backend", sort=False):
        near, far = rows.iloc[0], rows.iloc[-1]
        parts.append(f"{labels[str(backend)]} rank-1 {near.rank1:.2f} -> {far.rank1:.2f}, "
                     f"TPIR {near.tpir:.2f} -> {far.tpir:.2f}")
    parts[-1] += f" ({table.distance_m.min():g} -> {table.distance_m.max():g} m)"
    return head, parts


def identification_line(table: pd.DataFrame, run: Mapping[str, Any]) -> str:
    """1:N identification in a few words per backend: rank-1 and TPIR, closest -> farthest."""
    head, parts = identification_parts(table, run)
    return head + " " + "; ".join(parts)


def title(result: SweepResult) -> str:
    identifying = result.rates is not result.sweep
    config = result.config
    if identifying:
        threshold = float(result.rates.threshold.iloc[0])
        basis = threshold_basis(result.run, config.target_fpir, True)
        return f"{result.model_name}, identification: threshold {threshold:.3f} ({basis}), camera {result.camera.name}"
    basis = threshold_basis(result.run, config.target_far)
    return f"{result.model_name}, verification: threshold {result.threshold:.3f} ({basis}), camera {result.camera.name}"

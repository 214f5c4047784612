"""A comparison on disk and on screen: compare.csv, compare_tar.csv, compare.json,
compare.png and report.html (the report's templates), and the lines the CLI prints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from facequant.analysis.compare import (
    COMPARE_CSV,
    COMPARE_JSON,
    COMPARE_PLOT,
    COMPARE_TAR_CSV,
    Comparison,
)
from facequant.names import ESCAPE
from facequant.results.directory import pyplot, save_figure
from facequant.results.jsonfile import write_json
from facequant.results.output import staged_output
from facequant.results.report import REPORT_HTML, data_uri, render, table
from facequant.results.summary import interval, metres

COMPARE_TEMPLATE = "compare.html"


def summary(c: Comparison) -> dict[str, Any]:
    """compare.json: the two runs, whether they compare, how the intervals were made."""
    return {"a": str(c.a), "b": str(c.b), "comparable": c.comparable, "problems": c.problems,
            "paired": c.paired, "intervals": c.pairing, "only_in_a": c.only_a, "only_in_b": c.only_b,
            "warnings_only_in_a": c.warnings_a, "warnings_only_in_b": c.warnings_b,
            "provenance_differences": [{"what": w, "a": x, "b": y} for w, x, y in c.provenance]}


def plot_comparison(c: Comparison, path: Path) -> None:
    """Left: TAR vs distance per backend, A dashed and B solid, 95 % bands. Right: each
    backend's reliable-distance shift B - A with its interval (none drawn: no interval)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    for i, (backend, rows) in enumerate(c.tar.groupby("backend", sort=False)):
        colour = f"C{i % 10}"
        for tag, style in (("a", "--"), ("b", "-")):
            if f"tar_{tag}" not in rows or rows[f"tar_{tag}"].isna().all():
                continue
            left.plot(rows.distance_m, rows[f"tar_{tag}"], ls=style, marker="o", ms=3, color=colour,
                      label=f"{backend} ({tag.upper()})")
            if f"tar_ci_low_{tag}" in rows:
                left.fill_between(rows.distance_m, rows[f"tar_ci_low_{tag}"], rows[f"tar_ci_high_{tag}"],
                                  color=colour, alpha=0.1)
    left.set(xlabel="distance (m)", ylabel="TAR (each run at its own threshold)", ylim=(-0.02, 1.02),
             title="TAR vs distance: A dashed, B solid (95% bands)")
    left.grid(alpha=0.3)
    left.legend(fontsize="x-small", ncol=2, loc="upper left", bbox_to_anchor=(0.0, -0.15))
    shift = c.table["reliable_shift_m"].to_numpy(float)
    low = c.table["reliable_shift_low_m"].to_numpy(float)
    high = c.table["reliable_shift_high_m"].to_numpy(float)
    y = np.arange(len(c.table))
    finite = np.isfinite(shift)
    right.axvline(0.0, color="grey", lw=1)
    err = np.vstack([np.where(np.isfinite(low), shift - low, 0.0), np.where(np.isfinite(high), high - shift, 0.0)])
    right.errorbar(shift[finite], y[finite], xerr=np.abs(err[:, finite]), fmt="o", capsize=3)
    right.set_yticks(y, list(c.table["backend"]))
    right.invert_yaxis()
    right.set(xlabel="reliable distance B - A (m)",
              title="Shift, 95% interval" + (" (paired)" if c.paired else " (unpaired)"))
    right.grid(alpha=0.3, axis="x")
    if not c.comparable:
        fig.suptitle("NOT COMPARABLE: " + "; ".join(c.problems)[:120], color="tab:red", fontsize="small")
    save_figure(fig, path)


def _pair(value: object, low: object, high: object) -> tuple[str, str]:
    return metres(value), interval(low, high)


def _shift(value: float, low: float, high: float, words: str) -> tuple[str, str]:
    """(the shift, its interval): "no shift" when the interval holds zero (no number: it is
    not one), "+1.20 m (farther)" when it does not, "+1.20 m (no interval)" without one."""
    point = "-" if math.isnan(value) else (f"{value:+.2f} m" if math.isfinite(value) else "open")
    if words == "no shift":
        return words, interval(low, high, signed=True)
    if not words:
        return (f"{point} (no interval)" if point != "-" else "-"), ""
    return f"{point} ({words})", interval(low, high, signed=True)


def display_rows(c: Comparison) -> list[list[tuple[str, str]]]:
    """Per backend: backend, verdict A -> B, reliable A, reliable B, shift, cliff A, cliff B, shift."""
    rows = []
    for r in c.table.to_dict("records"):
        verdict = f"{r['verdict_a']} -> {r['verdict_b']}" if r["verdict_changed"] else str(r["verdict_a"])
        row = [(str(r["backend"]), ""), (verdict, "CHANGED" if r["verdict_changed"] else "")]
        for what in ("reliable", "cliff"):
            row += [_pair(r[f"{what}_a_m"], r[f"{what}_a_low_m"], r[f"{what}_a_high_m"]),
                    _pair(r[f"{what}_b_m"], r[f"{what}_b_low_m"], r[f"{what}_b_high_m"]),
                    _shift(r[f"{what}_shift_m"], r[f"{what}_shift_low_m"], r[f"{what}_shift_high_m"],
                           str(r[f"{what}_shift"]))]
        rows.append(row)
    return rows


HEADERS = ("backend", "verdict vs fp32 (A -> B)", "reliable A", "reliable B", "reliable shift B - A", "cliff A",
           "cliff B", "cliff shift B - A")


def context(c: Comparison, folder: Path) -> dict[str, Any]:
    return {"title": f"facequant comparison: {c.b.name} against {c.a.name}", "a": str(c.a), "b": str(c.b),
            "problems": c.problems, "pairing": c.pairing, "headers": HEADERS, "rows": display_rows(c),
            "backends": [str(b) for b in c.table["backend"]], "only_a": c.only_a, "only_b": c.only_b,
            "tar": table(c.tar, max_rows=200), "provenance": c.provenance,
            "warnings_a": c.warnings_a, "warnings_b": c.warnings_b,
            "plot": data_uri(folder / COMPARE_PLOT) if (folder / COMPARE_PLOT).is_file() else ""}


def write_into(c: Comparison, folder: Path) -> None:
    c.table.to_csv(folder / COMPARE_CSV, index=False, errors=ESCAPE)
    c.tar.to_csv(folder / COMPARE_TAR_CSV, index=False, errors=ESCAPE)
    write_json(summary(c), folder / COMPARE_JSON)
    plot_comparison(c, folder / COMPARE_PLOT)
    html = render(COMPARE_TEMPLATE, context(c, folder))
    (folder / REPORT_HTML).write_text(html, encoding="utf-8")


def write_comparison(c: Comparison, out: Path, force: bool = False) -> Path:
    """Everything into `out` atomically (the two compared directories are inputs it may not be)."""
    with staged_output(out, force, [("A", str(c.a)), ("B", str(c.b))]) as staging:
        write_into(c, staging)
    return out


def lines(c: Comparison) -> list[str]:
    """What the CLI prints: comparability first, then a line per backend, then provenance."""
    out = [f"comparing B = {c.b} against A = {c.a}"]
    if c.problems:
        out.append("NOT COMPARABLE: " + "; ".join(c.problems))
    out.append(f"intervals: {c.pairing}")
    for row in display_rows(c):
        (name, _), (verdict, _) = row[0], row[1]
        rel_a, rel_b, rel_s, cl_a, cl_b, cl_s = row[2:]
        rel, cliff = (" ".join(p for p in s if p) for s in (rel_s, cl_s))
        out.append(f"  {name}: {verdict}; reliable {rel_a[0]} -> {rel_b[0]}, shift {rel}; "
                   f"cliff {cl_a[0]} -> {cl_b[0]}, shift {cliff}")
    if c.only_a or c.only_b:
        out.append(f"  not in both: {', '.join(c.only_a) or '-'} only in A; {', '.join(c.only_b) or '-'} only in B")
    out += [f"warning only in A: {w}" for w in c.warnings_a] + [f"warning only in B: {w}" for w in c.warnings_b]
    if c.provenance:
        out.append(f"provenance differs in {len(c.provenance)} place(s):")
        out += [f"  {what}: {x} -> {y}" for what, x, y in c.provenance[:12]]
        if len(c.provenance) > 12:
            out.append(f"  ... {len(c.provenance) - 12} more in {COMPARE_JSON}")
    return out

"""A diagnosis on disk: layers.csv, summary.csv, run.json and the plots (facequant.render.diagnosis shows it)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: progress(stage, done, total): stages "faces", "calibration" (building backends), "diagnose".
from facequant.analysis.diagnose.measure import LevelHistogram
from facequant.analysis.diagnose.run import DiagnoseResult
from facequant.results.directory import pyplot, save_figure
from facequant.results.jsonfile import write_run_json
from facequant.results.output import inputs_of, staged_output

LAYERS_CSV = "layers.csv"
SUMMARY_CSV = "summary.csv"
RUN_JSON = "run.json"
OUTPUT_SNR_PLOT = "output_snr_vs_distance.png"
_PLOT_GROUPS = 256  # bars in a level histogram; 16-bit levels are grouped to fit
# --- results directory -------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def heartbeat_path(backend: str) -> str:
    return f"heartbeat_{_safe(backend)}.png"


def histogram_path(backend: str) -> str:
    return f"histogram_{_safe(backend)}.png"


def write_diagnosis(result: DiagnoseResult, out: Path, force: bool = False) -> Path:
    """Write layers.csv, summary.csv, run.json and the plots into `out`, atomically: a failure
    midway leaves any old results intact."""
    out = Path(out)
    with staged_output(out, force, inputs_of(result.config.sweep)) as staging:
        t0 = time.perf_counter()
        result.layers.to_csv(staging / LAYERS_CSV, index=False)
        result.summary.to_csv(staging / SUMMARY_CSV, index=False)
        for backend in result.backends:
            plot_heartbeat(result.layers, backend, result.config.snr_threshold_db, staging / heartbeat_path(backend))
        for backend, hist in result.histograms.items():
            plot_histogram(hist, staging / histogram_path(backend))
        plot_output_snr(result.summary, staging / OUTPUT_SNR_PLOT)
        run = dict(result.run)
        timings = result.run.get("timings")
        run["timings"] = {**(timings if isinstance(timings, dict) else {}), "write_s": time.perf_counter() - t0}
        run["files"] = sorted(p.name for p in staging.iterdir()) + [RUN_JSON]
        write_run_json(run, staging / RUN_JSON)
    return out


def plot_heartbeat(layers: pd.DataFrame, backend: str, threshold_db: float, path: Path) -> None:
    """SNR against depth, one line per distance (000_'s 'heartbeat'), head layers shaded."""
    plt = pyplot()
    rows = layers[layers.backend == backend]
    distances = sorted(rows.distance_m.unique())
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    for i, d in enumerate(distances):
        r = rows[rows.distance_m == d].sort_values("depth")
        snr = r.snr_db.where(np.isfinite(r.snr_db))
        ax.plot(r.depth, snr, color=cmap(i / max(len(distances) - 1, 1)), lw=1.2, label=f"{d:g} m")
    first = rows[rows.distance_m == distances[0]].sort_values("depth") if distances else rows
    head = first[first["head"].astype(bool)]
    if len(head):
        ax.axvspan(head.depth.min() - 0.5, head.depth.max() + 0.5, color="0.9", zorder=0, label="head")
    ax.axhline(threshold_db, color="crimson", ls="--", lw=1, label=f"{threshold_db:g} dB")
    weighted = first[first.weighted.astype(bool)]
    step = max(1, len(weighted) // 12)
    ax.set_xticks(weighted.depth.iloc[::step], weighted.layer.iloc[::step], rotation=60, fontsize=7)
    ax.set(xlabel="depth (weighted layers labelled)", ylabel="SNR vs float (dB)",
           title=f"{backend}: per-layer SNR by distance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    save_figure(fig, path)


def plot_histogram(hist: LevelHistogram, path: Path) -> None:
    """Occupancy of one activation's quantization levels (000_'s 'wasted bits' figure). 16-bit
    levels are drawn in groups of consecutive levels, with the share of each group's levels
    occupied on a second axis: 65536 bars cannot be read."""
    plt = pyplot()
    values, counts, scale = hist.tap.level_values(), hist.counts, hist.tap.scale
    used = int(np.count_nonzero(counts))
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    group = max(1, len(counts) // _PLOT_GROUPS)
    grouped = counts.reshape(-1, group).sum(axis=1)
    edges = np.append(values[::group], values[-1] + scale) - scale / 2
    label = "codes on these probes" + (f" (per {group} levels)" if group > 1 else "")
    ax.stairs(grouped, edges, fill=True, color="tab:blue", alpha=0.8, label=label)
    occupied = values[counts > 0]
    if occupied.size:
        ax.axvspan(occupied.min(), occupied.max(), color="tab:green", alpha=0.08, label="occupied span")
    ax.set_yscale("symlog", linthresh=1)
    ax.set(xlabel=f"activation value ({hist.tap.bits}-bit levels, scale {scale:.3g}, zero point {hist.tap.zero_point})",
           ylabel="count", title=f"{hist.backend}: {hist.layer} at {hist.distance_m:g} m: {used} of {hist.tap.levels} "
                                 f"levels used ({used / hist.tap.levels:.1%})")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if group > 1:
        share = ax.twinx()
        line, = share.plot((edges[:-1] + edges[1:]) / 2, 100 * (counts > 0).reshape(-1, group).mean(axis=1),
                           color="tab:orange", lw=1, label="levels occupied in the group (%)")
        share.set(ylabel="levels occupied (%)", ylim=(0, 105))
        handles.append(line)
        labels.append(line.get_label())
    ax.legend(handles, labels, fontsize=8, loc="upper left")
    save_figure(fig, path)


def plot_output_snr(summary: pd.DataFrame, path: Path) -> None:
    """SNR of the embedding output against distance, one line per backend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for backend, rows in summary.groupby("backend", sort=False):
        ax.plot(rows.distance_m, rows.output_snr_db, marker="o", label=str(backend))
    ax.set(xlabel="distance (m)", ylabel="embedding output SNR vs float (dB)",
           title="Quantization noise on the embedding, by distance")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)

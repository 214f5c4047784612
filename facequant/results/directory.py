"""Writing a results directory: CSVs, run.json, plots, report.html (reading it back: facequant.results.reading)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from facequant.evaluate import metrics
from facequant.names import ESCAPE
from facequant.results.jsonfile import write_run_json
from facequant.results.output import check_output_dir, inputs_of, staged_output  # noqa: F401 (check_output_dir: kept importable here)
from facequant.results.reading import (  # noqa: F401 (the readers: kept importable here)
    CLIFF_CSV,
    COST_CSV,
    IDENTIFICATION_CSV,
    RUN_JSON,
    SWEEP_CSV,
    backend_labels,
    load_results,
    read_run_json,
    read_table,
    run_warnings,
)
from facequant.sweep.result import SweepResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

RESULTS_CSV = "results.csv"  # the tidy table: backend x distance x metric
PROBES_CSV = "probes.csv"
GENUINE_PARQUET = "genuine.parquet"  # the genuine comparisons (linear in photos); all of them with --save-comparisons
COMPARISONS_PARQUET = "comparisons.parquet"
IDENTIFICATION_PLOT = "identification_vs_distance.png"
TAR_PLOT = "tar_vs_distance.png"
PRENORM_PLOT = "match_vs_prenorm.png"


def write_results(result: SweepResult, out: Path, force: bool = False) -> Path:
    """Write everything into `out` atomically: a failure midway leaves any old results intact."""
    out = Path(out)
    with staged_output(out, force, inputs_of(result.config)) as staging:
        write_into(result, staging)
    return out


def write_into(result: SweepResult, staging: Path) -> None:
    """Every file of one sweep's results into a folder being staged (no marker: the caller's)."""
    staging.mkdir(parents=True, exist_ok=True)
    # errors=ESCAPE: a name from the command line (a model path) may hold undecodable bytes
    result.sweep.to_csv(staging / SWEEP_CSV, index=False, errors=ESCAPE)
    result.cliff.to_csv(staging / CLIFF_CSV, index=False, errors=ESCAPE)
    if result.cost is not None:
        result.cost.to_csv(staging / COST_CSV, index=False, errors=ESCAPE)
    metrics.to_long(result.sweep).to_csv(staging / RESULTS_CSV, index=False, errors=ESCAPE)
    result.probes.to_csv(staging / PROBES_CSV, index=False, errors=ESCAPE)
    with open(staging / GENUINE_PARQUET, "wb") as fh:  # a handle: pyarrow cannot open undecodable paths
        result.genuine.to_parquet(fh, index=False)
    if result.comparisons_file is not None:
        shutil.move(result.comparisons_file, staging / COMPARISONS_PARQUET)
    if result.identification is not None:
        result.identification.to_csv(staging / IDENTIFICATION_CSV, index=False, errors=ESCAPE)
        plot_identification(result.identification, staging / IDENTIFICATION_PLOT)
    _copy_pow2_moves(result.run, staging)
    write_run_json(result.run, staging / RUN_JSON)
    plot_tar_vs_distance(result.sweep, staging / TAR_PLOT, result.cliff, result.model_name, result.camera.name)
    plot_match_vs_prenorm(result.genuine, result.threshold, result.cliff, staging / PRENORM_PLOT)
    write_report_safely(staging)


def write_report_safely(folder: Path) -> None:
    """report.html from the files just written. A report that fails to build is said and the
    results are kept (`facequant report DIR` remakes it): losing a sweep to its summary page
    would cost the hours the page reports on."""
    from facequant.cache import warn
    from facequant.results.report import write_report

    try:
        write_report(folder)
    except Exception as exc:  # noqa: BLE001 (any failure: the results matter more than their page)
        warn(f"report.html not written ({type(exc).__name__}: {exc}); remake it with `facequant report DIR`")


def _copy_pow2_moves(run: dict[str, object], staging: Path) -> None:
    """Keep each power-of-two backend's per-scale moves with the results, not only in the cache."""
    backends = run.get("backends") or {}
    assert isinstance(backends, dict)
    for name, info in backends.items():
        moves = info.get("pow2_scales", {}).get("moves_file") if isinstance(info, dict) else None
        if moves and Path(moves).is_file():
            target = staging / f"pow2_moves_{name.replace(':', '_').replace('/', '_')}.json"
            shutil.copyfile(moves, target)
            info["pow2_scales"]["moves_file"] = target.name


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the headless Agg backend (servers and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: Path) -> None:
    """Lay out, write and free a figure (an open figure per plot would pile up in a long run)."""
    fig.tight_layout()
    fig.savefig(path)
    pyplot().close(fig)


def plot_tar_vs_distance(sweep: pd.DataFrame, path: Path, cliff: pd.DataFrame | None = None, model: str = "",
                         camera: str = "") -> None:
    save_figure(tar_figure(sweep, cliff, model, camera), path)


def tar_figure(sweep: pd.DataFrame, cliff: pd.DataFrame | None = None, model: str = "", camera: str = "") -> Figure:
    """TAR per backend with its 95 % band, the reliable bar (dotted; the TAR a distance needs to
    count as reliable), the face size in pixels along the top, the model and camera in the
    title, and the key beside the axes, off the data."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8.4, 4.4), dpi=120)
    for backend, rows in sweep.groupby("backend", sort=False):
        line, = ax.plot(rows.distance_m, rows.tar, marker="o", label=str(backend))
        ax.fill_between(rows.distance_m, rows.tar_ci_low, rows.tar_ci_high, color=line.get_color(), alpha=0.15)
    bar = _reliable_bar(cliff)
    if bar is not None:
        ax.axhline(bar, color="black", ls=":", lw=1.2, label=f"reliable bar ({bar:.3f})")
    threshold = float(sweep.threshold.iloc[0])
    what = ", ".join(p for p in (model, f"camera {camera}" if camera else "") if p)
    ax.set(xlabel="distance (m)", ylabel=f"TAR at cosine >= {threshold:.3f}", ylim=(-0.02, 1.02),
           title=(f"{what}\n" if what else "") + "True accept rate vs distance (95% bands over people)")
    _face_px_axis(ax, sweep)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", borderaxespad=0.0)
    return fig


def _reliable_bar(cliff: pd.DataFrame | None) -> float | None:
    """The reliable bar of the run (cliff.csv's reliable_tar: 90 % of fp32's close-range TAR)."""
    if cliff is None or "reliable_tar" not in cliff:
        return None
    bars = pd.to_numeric(cliff["reliable_tar"], errors="coerce").dropna()
    return float(bars.iloc[0]) if len(bars) and bars.nunique() == 1 else None


def _face_px_axis(ax: Axes, sweep: pd.DataFrame) -> None:
    """Face pixels along the top: face_px = k / distance for one camera, k read off the sweep."""
    k = pd.to_numeric(sweep.face_px * sweep.distance_m, errors="coerce").median()
    if not np.isfinite(k) or k <= 0:
        return

    def convert(x: ArrayLike) -> np.ndarray:  # its own inverse; finite at 0 (matplotlib asks there)
        return k / np.maximum(np.asarray(x, dtype=np.float64), 1e-6)

    near, far = float(sweep.distance_m.min()), float(sweep.distance_m.max())
    margin = 0.04 * (far - near) if far > near else 0.1 * near
    ax.set_xlim(max(near - margin, 0.5 * near), far + margin)  # > 0: a face size exists there
    top = ax.secondary_xaxis("top", functions=(convert, convert))
    low, high = ax.get_xlim()
    ticks: list[float] = []  # round sizes, at least 6 % of the axis apart (px crowd near the camera)
    for px in (12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024):
        d = k / px
        if low <= d <= high and all(abs(d - k / t) >= 0.06 * (high - low) for t in ticks):
            ticks.append(px)
    top.set_xticks(ticks)
    top.set_xlabel("aligned face crop side in the camera (px)")


def plot_identification(table: pd.DataFrame, path: Path) -> None:
    """Rank-1 rate (solid) and open-set TPIR at the FPIR threshold (dashed) per backend."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for backend, rows in table.groupby("backend", sort=False):
        line, = ax.plot(rows.distance_m, rows.rank1, marker="o", label=f"{backend} rank-1")
        ax.plot(rows.distance_m, rows.tpir, marker=".", ls="--", color=line.get_color(), label=f"{backend} TPIR")
        ax.fill_between(rows.distance_m, rows.tpir_ci_low, rows.tpir_ci_high, color=line.get_color(), alpha=0.12)
    threshold = float(table.threshold.iloc[0])
    ax.set(xlabel="distance (m)", ylabel="identification rate", ylim=(-0.02, 1.02),
           title=f"1:N identification vs distance (TPIR at cosine >= {threshold:.3f}; 95% Wilson bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    save_figure(fig, path)


def plot_paired_gain(paired: pd.DataFrame, base: str, other: str, contested: list[float], path: Path) -> None:
    """TAR(other) - TAR(base) per distance with its 95 % interval; the contested distances shaded."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    if contested:
        ax.axvspan(min(contested), max(contested), color="tab:orange", alpha=0.12, label="contested distances")
    ax.axhline(0.0, color="grey", lw=1)
    err = [paired.gain - paired.gain_ci_low, paired.gain_ci_high - paired.gain]
    ax.errorbar(paired.distance_m, paired.gain, yerr=err, marker="o", capsize=3, label=f"{other} - {base}")
    ax.set(xlabel="distance (m)", ylabel="TAR difference (same comparisons)",
           title="Paired TAR gain, 95% identity-bootstrap intervals")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, path)


def plot_match_vs_prenorm(genuine: pd.DataFrame, threshold: float, cliff: pd.DataFrame, path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for backend, rows in genuine.groupby("backend", sort=False):
        bins = np.quantile(rows.probe_prenorm, np.linspace(0, 1, 16))
        bins = np.unique(bins)
        if len(bins) < 3:
            continue
        which = np.clip(np.digitize(rows.probe_prenorm, bins[1:-1]), 0, len(bins) - 2)
        matched = (rows.cosine >= threshold).to_numpy()
        centres = [rows.probe_prenorm.to_numpy()[which == b].mean() for b in range(len(bins) - 1) if (which == b).any()]
        rates = [matched[which == b].mean() for b in range(len(bins) - 1) if (which == b).any()]
        line, = ax.plot(centres, rates, marker="o", label=str(backend))
        row = cliff[cliff.backend == backend]
        if len(row) and np.isfinite(row.cliff_prenorm.iloc[0]):
            ax.axvline(row.cliff_prenorm.iloc[0], color=line.get_color(), ls="--", alpha=0.6)
    ax.set(xlabel="embedding pre-norm (L2 norm before normalisation)", ylabel="genuine match rate",
           ylim=(-0.02, 1.02), title="Match probability vs pre-norm (dashed: 50% point)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # constant pre-norms (a collapsed model) give no line
        ax.legend()
    save_figure(fig, path)

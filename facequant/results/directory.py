"""Writing and reading a results directory: CSVs, run.json, plots, the summary table."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from facequant.errors import FacequantError
from facequant.evaluate import metrics
from facequant.evaluate.identification import as_rates_view
from facequant.names import ESCAPE
from facequant.results.jsonfile import write_run_json
from facequant.results.output import check_output_dir, inputs_of, staged_output  # noqa: F401 (check_output_dir: kept importable here)
from facequant.results.pairs import is_multi_model, paired, pairs_view
from facequant.sweep.result import SweepResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SWEEP_CSV = "sweep.csv"
COST_CSV = "cost.csv"
CLIFF_CSV = "cliff.csv"
RESULTS_CSV = "results.csv"  # the tidy table: backend x distance x metric
PROBES_CSV = "probes.csv"
GENUINE_PARQUET = "genuine.parquet"  # the genuine comparisons (linear in photos); all of them with --save-comparisons
COMPARISONS_PARQUET = "comparisons.parquet"
IDENTIFICATION_CSV = "identification.csv"
IDENTIFICATION_PLOT = "identification_vs_distance.png"
RUN_JSON = "run.json"
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
    plot_tar_vs_distance(result.sweep, staging / TAR_PLOT)
    plot_match_vs_prenorm(result.genuine, result.threshold, result.cliff, staging / PRENORM_PLOT)


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


#: Columns a results directory's tables must have, and the columns that must hold numbers
#: when present (NaN and inf allowed: "not measured", "beyond the sweep").
_REQUIRED = {SWEEP_CSV: ("backend", "distance_m", "face_px", "tar", "far"), CLIFF_CSV: ("backend",),
             COST_CSV: ("backend",)}
_NUMERIC = ("distance_m", "face_px", "n_probes", "n_genuine", "n_impostor", "threshold", "tar", "tar_ci_low",
            "tar_ci_high", "far", "far_ci_low", "far_ci_high", "tar_close", "reliable_distance_m", "reliable_tar",
            "cliff_distance_m", "cliff_face_px", "cliff_prenorm", "cliff_prenorm_width", "distance_cost_m",
            "file_bytes", "cpu_latency_p50_ms", "cpu_latency_p95_ms", "device_latency_ms", "latency_vs_fp32",
            "worse_from_m", "reliable_distance_low_m", "reliable_distance_high_m", "cliff_distance_low_m",
            "cliff_distance_high_m", "distance_cost_low_m", "distance_cost_high_m", "cpu_latency_low_ms",
            "cpu_latency_high_ms", "cpu_vs_fp32", "cpu_vs_fp32_low", "cpu_vs_fp32_high", "latency_vs_fp32_low",
            "latency_vs_fp32_high")
#: What a run can write in each numeric column (NaN, "not measured", passes unless said):
#: rates in [0, 1], cosines in [-1, 1], distances and sizes positive and finite (a cliff beyond
#: the sweep is +inf), counts whole and >= 0, norms and costs >= 0. Anything else did not come
#: from facequant and is refused, not drawn or recommended on.
_RATES = ("tar", "tar_ci_low", "tar_ci_high", "far", "far_ci_low", "far_ci_high", "tar_close", "reliable_tar",
          "tar_far_end", "rank1", "rank1_ci_low", "rank1_ci_high", "tpir", "tpir_ci_low", "tpir_ci_high", "fpir",
          "fpir_ci_low", "fpir_ci_high")
_COSINES = ("threshold", "cos_to_fp32_mean", "genuine_cos_mean", "impostor_cos_mean", "mated_score_mean",
            "nonmated_top_mean")
_DISTANCES = ("distance_m", "face_px", "close_distance_m", "far_distance_m", "worse_from_m")
_REACH = ("cliff_distance_m", "cliff_face_px", "reliable_distance_m")  # +inf: beyond the sweep
#: An interval's ends: positive, or +-inf (beyond the sweep's farthest / before its closest distance).
_BOUNDS = ("reliable_distance_low_m", "reliable_distance_high_m", "cliff_distance_low_m", "cliff_distance_high_m")
_COUNTS = ("n_probes", "n_genuine", "n_impostor", "n_mated", "n_nonmated", "n_not_simulated", "n_genuine_fit",
           "layers_8bit", "layers_16bit", "layers_float", "latency_rounds")
_NON_NEGATIVE = ("prenorm_mean", "prenorm_p05", "prenorm_p50", "prenorm_p95", "cliff_prenorm", "cliff_prenorm_width",
                 "file_bytes", "cpu_latency_p50_ms", "cpu_latency_p95_ms", "device_latency_ms", "latency_vs_fp32",
                 "device_power_w", "cpu_latency_low_ms", "cpu_latency_high_ms", "cpu_vs_fp32", "cpu_vs_fp32_low",
                 "cpu_vs_fp32_high", "latency_vs_fp32_low", "latency_vs_fp32_high")
_SLACK = 1e-6
#: Columns that must hold a number in every row (a sweep row is at a distance).
_NEVER_MISSING = {SWEEP_CSV: ("distance_m", "face_px"), IDENTIFICATION_CSV: ("distance_m", "face_px")}


def _domain_problem(column: str, values: np.ndarray, required: bool) -> np.ndarray:
    """Per row: the value cannot have come from a run (see _RATES ...)."""
    missing = np.isnan(values)
    with np.errstate(invalid="ignore"):
        if column in _RATES:  # with float rounding's slack (a cosine of a vector with itself: 1.0000000000000002)
            bad = (values < -_SLACK) | (values > 1 + _SLACK) | np.isinf(values)
        elif column in _COSINES:
            bad = (values < -1 - _SLACK) | (values > 1 + _SLACK) | np.isinf(values)
        elif column in _DISTANCES:
            bad = (values <= 0) | np.isinf(values)
        elif column in _REACH:
            bad = (values <= 0) | np.isneginf(values)
        elif column in _BOUNDS:
            bad = (values <= 0) & np.isfinite(values)
        elif column in _COUNTS:
            bad = (values < 0) | np.isinf(values) | (~missing & (values != np.round(values)))
        elif column in _NON_NEGATIVE:
            bad = (values < 0) | np.isinf(values)
        else:
            bad = np.zeros(len(values), dtype=bool)
    return bad | (missing if required else False)


def _check_domains(path: Path, table: pd.DataFrame) -> None:
    required = _NEVER_MISSING.get(path.name, ())
    for column in table.columns:
        if column not in (*_RATES, *_COSINES, *_DISTANCES, *_REACH, *_BOUNDS, *_COUNTS, *_NON_NEGATIVE):
            continue
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = _domain_problem(str(column), values, column in required)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = ("a rate in [0, 1]" if column in _RATES else "a cosine in [-1, 1]" if column in _COSINES
                    else "a whole count >= 0" if column in _COUNTS else "a number >= 0" if column in _NON_NEGATIVE
                    else "a positive distance (inf: beyond the sweep)" if column in _REACH
                    else "a positive distance or +-inf (beyond the sweep)" if column in _BOUNDS
                    else "a positive, finite number")
            raise FacequantError(f"{path}:{row + 2}: column {column} holds {table[column].iloc[row]!r}, not {what}; "
                                 "not a value facequant writes")


def read_table(path: Path) -> pd.DataFrame:
    """One results CSV, checked: parseable, complete (a truncated file has no final newline),
    its required columns there and its numeric columns numbers. FacequantError naming the file."""
    try:
        raw = path.read_bytes()
        table = pd.read_csv(path, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FacequantError(f"{path}: cannot read as CSV ({_reason(exc)})") from exc
    if not raw.endswith((b"\n", b"\r")):
        raise FacequantError(f"{path}: truncated (the last line is incomplete)")
    missing = [c for c in _REQUIRED.get(path.name, ()) if c not in table.columns]
    if missing:
        raise FacequantError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in (c for c in _NUMERIC if c in table.columns):
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = numbers.isna() & table[column].notna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # the header is line 1
            raise FacequantError(f"{path}:{line}: column {column} holds {table[column][bad].iloc[0]!r}, not a number")
    _check_domains(path, table)
    return table


def _reason(exc: BaseException) -> str:
    """An exception as a short phrase: the OS's words, else its message's last line."""
    text = getattr(exc, "strerror", None) or str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def read_run_json(path: Path) -> dict[str, object]:
    """run.json as a mapping; FacequantError naming the file when it is not one."""
    try:
        run = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FacequantError(f"{path}: cannot read as JSON ({_reason(exc)})") from exc
    if not isinstance(run, dict):
        raise FacequantError(f"{path}: expected a JSON object, got a {type(run).__name__}")
    for key in ("config", "camera", "model"):
        if key in run and not isinstance(run[key], dict):
            raise FacequantError(f"{path}: {key} must be an object, got a {type(run[key]).__name__}")
    return run


def load_results(out: Path) -> dict[str, object]:
    """Read a results directory back (sweep, cliff, run) without recomputing anything."""
    out = Path(out)
    for name in (SWEEP_CSV, CLIFF_CSV, RUN_JSON):
        if not (out / name).is_file():
            raise FacequantError(f"{out}: not a facequant results directory (missing {name})")
    cliff = read_table(out / CLIFF_CSV)
    for column in ("degenerate", "verdict"):
        if column in cliff:  # CSV turns "" (healthy; fp32's verdict) into NaN; read it back as text
            cliff[column] = [v if isinstance(v, str) else "" for v in cliff[column]]
    sweep, run = read_table(out / SWEEP_CSV), read_run_json(out / RUN_JSON)
    ident = read_table(out / IDENTIFICATION_CSV) if (out / IDENTIFICATION_CSV).is_file() else None
    # What the run's protocol reads (cliff, recommendation, TUI colours): TAR, or TPIR.
    multi = is_multi_model(run)
    if multi:  # several models: every (model, backend) pair is a candidate of its own
        sweep, ident = paired(sweep) or sweep, paired(ident)
    rates = as_rates_view(sweep, ident) if run.get("protocol") == "identification" and ident is not None else sweep
    loaded: dict[str, object] = {"sweep": sweep, "cliff": cliff, "identification": ident, "rates": rates,
              "cost": read_table(out / COST_CSV) if (out / COST_CSV).is_file() else None,
              "run": run, "path": out}
    return pairs_view(loaded) if multi else loaded


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


def plot_tar_vs_distance(sweep: pd.DataFrame, path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for backend, rows in sweep.groupby("backend", sort=False):
        ax.plot(rows.distance_m, rows.tar, marker="o", label=str(backend))
        ax.fill_between(rows.distance_m, rows.tar_ci_low, rows.tar_ci_high, alpha=0.15)
    threshold = float(sweep.threshold.iloc[0])
    ax.set(xlabel="distance (m)", ylabel=f"TAR at cosine >= {threshold:.3f}", ylim=(-0.02, 1.02),
           title="True accept rate vs distance (95% Wilson bands)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


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


def backend_labels(backends: Iterable[object]) -> dict[str, str]:
    """How tables show each backend: `external:NAME=PATH` as NAME (the path stays in the CSVs
    and run.json; a long one would squeeze every other column), unless two share that NAME."""
    names = [str(b) for b in dict.fromkeys(backends)]
    short = {b: b[len("external:"):].partition("=")[0] if b.startswith("external:") and "=" in b else b for b in names}
    taken = Counter(short.values())
    return {b: s if taken[s] == 1 else b for b, s in short.items()}


def run_warnings(run: dict[str, object]) -> list[str]:
    """run.json's warnings (every warning of a run is there; an older run.json has none)."""
    warnings = run.get("warnings")
    return [str(w) for w in warnings] if isinstance(warnings, list) else []

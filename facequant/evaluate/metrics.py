"""Verification metrics over sweep tables: thresholds, TAR/FAR with intervals, per-distance summaries.

Every function here is pure: it reads numpy arrays / pandas DataFrames and returns new ones,
so the same sweep always gives the same table (scikit-learn style, no hidden state).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import roc_curve

from facequant.errors import FacequantError
from facequant.values import as_float

#: The 97.5% standard-normal quantile: a two-sided 95% interval.
Z_95 = 1.959964

#: Columns a probes table must carry (one row per backend x distance x probe image).
PROBE_COLUMNS: tuple[str, ...] = (
    "model",
    "backend",
    "distance_m",
    "face_px",
    "image",
    "identity",
    "prenorm",
    "cos_to_fp32",
    "simulated",
)

#: Columns a comparisons table must carry (one row per backend x distance x probe x gallery).
COMPARISON_COLUMNS: tuple[str, ...] = (
    "backend",
    "distance_m",
    "face_px",
    "probe",
    "gallery",
    "genuine",
    "cosine",
    "probe_prenorm",
)

#: The contract: sweep_table's columns start exactly with these, in this order.
SWEEP_COLUMNS: tuple[str, ...] = (
    "model",
    "backend",
    "distance_m",
    "face_px",
    "n_probes",
    "n_genuine",
    "n_impostor",
    "prenorm_mean",
    "prenorm_p05",
    "prenorm_p50",
    "prenorm_p95",
    "cos_to_fp32_mean",
    "genuine_cos_mean",
    "impostor_cos_mean",
    "threshold",
    "tar",
    "tar_ci_low",
    "tar_ci_high",
    "far",
)

#: Extra columns appended after SWEEP_COLUMNS.
SWEEP_EXTRA_COLUMNS: tuple[str, ...] = ("far_ci_low", "far_ci_high", "n_not_simulated")

#: Counts: kept as integers in the sweep table and restored as integers by from_long.
COUNT_COLUMNS: frozenset[str] = frozenset(
    {"n_probes", "n_genuine", "n_impostor", "n_not_simulated"}
)

#: Identifier columns of the tidy (long) form; every other sweep column becomes a metric.
LONG_ID_COLUMNS: tuple[str, ...] = ("model", "backend", "distance_m", "face_px")

# Rows of the wide table are keyed by these; face_px is carried along, not a key, because it
# is a function of distance and may be NaN (which would make a poor index key).
_ROW_KEY: list[str] = ["model", "backend", "distance_m"]


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion successes / n.

    Wilson rather than the normal (Wald) interval because TAR/FAR sit near 0 or 1 exactly
    where the cliff is interesting, and Wald collapses to zero width there.
    Returns (nan, nan) when n == 0: there is no proportion to bound.
    """
    if n < 0 or successes < 0 or successes > n:
        raise FacequantError(f"wilson_interval: need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # At p == 0 / p == 1 the bound is exactly 0 / 1; rounding would leave it a hair off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def _as_scores(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise FacequantError(f"{name}: scores must be numeric ({exc})") from exc
    arr = arr.reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        raise FacequantError(f"{name}: {int(np.sum(~np.isfinite(arr)))} scores are NaN or infinite")
    return arr


def threshold_at_far(
    impostor_scores: np.ndarray, genuine_scores: np.ndarray, target_far: float
) -> float:
    """The lowest score threshold whose false-accept rate is <= target_far.

    A comparison is accepted when ``score >= threshold`` (sklearn.metrics.roc_curve's
    convention). FAR(t) = fraction of impostor scores >= t only drops at impostor scores, so
    the lowest threshold meeting the target lies just above the impostor score at which FAR
    would first exceed the target; that is what is returned (the next representable value
    above that impostor score, in the scores' own float precision so a float32 comparison
    cannot round it back down onto the impostor). The threshold therefore depends on the
    impostor distribution only; genuine scores merely ride along in the ROC.

    When target_far < 1 / n_impostors the only achievable FAR is 0, so the threshold is just
    above the maximum impostor score and the measured FAR is exactly 0: the requested FAR is
    finer than the impostor set can resolve, and the result is as strict as the data allows.
    When target_far >= 1 every score is accepted and the lowest score is returned.

    Raises FacequantError when there are no impostor scores (FAR is undefined), when scores
    are not finite, or when target_far is outside [0, 1].
    """
    if not (0.0 <= float(target_far) <= 1.0):
        raise FacequantError(f"threshold_at_far: target_far must be in [0, 1], got {target_far}")
    imp = _as_scores(impostor_scores, "impostor scores")
    gen = _as_scores(genuine_scores, "genuine scores")
    if imp.size == 0:
        raise FacequantError(
            "threshold_at_far: no impostor scores, so FAR (and a threshold for it) is undefined"
        )
    # Keep float32 precision when all scores are float32; anything else is compared in float64.
    common = np.result_type(imp, gen) if gen.size else imp.dtype
    ftype: type[np.floating] = np.float32 if common == np.float32 else np.float64
    y_true = np.concatenate([np.zeros(imp.size, dtype=np.int8), np.ones(gen.size, dtype=np.int8)])
    scores = np.concatenate([imp, gen]).astype(ftype)
    with warnings.catch_warnings():
        # Without genuine scores TPR is undefined, but the FPR column we use is still exact.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        # drop_intermediate=False: the point where FPR first exceeds the target may be a
        # collinear ROC point, which the default would drop.
        fpr, _tpr, thresholds = roc_curve(y_true, scores, drop_intermediate=False)
    # roc_curve counts false positives per distinct score; recompute FAR as counts / n so the
    # comparison with target_far is not muddied by float division differences.
    n_imp = imp.size
    over = np.flatnonzero(np.rint(fpr * n_imp) > target_far * n_imp + 1e-9)
    if over.size == 0:
        # Target allows every impostor: accepting everything is the lowest threshold.
        return float(np.min(scores))
    offending = ftype(thresholds[over[0]])
    return float(np.nextafter(offending, ftype(np.inf)))


def match_rates(
    genuine_scores: np.ndarray, impostor_scores: np.ndarray, threshold: float
) -> dict[str, float | int]:
    """TAR and FAR at a fixed threshold (accept when score >= threshold), with Wilson 95% CIs.

    Keys: tar, tar_ci_low, tar_ci_high, far, far_ci_low, far_ci_high, n_genuine, n_impostor.
    A rate with no scores behind it is NaN (with NaN bounds) rather than 0, so an empty cell
    is never mistaken for a total failure.
    """
    gen = _as_scores(genuine_scores, "genuine scores")
    imp = _as_scores(impostor_scores, "impostor scores")
    thr = float(threshold)
    # Compare in float64 so a Python-float threshold is not rounded to float32 scores' precision.
    n_accept_gen = int(np.sum(gen.astype(np.float64) >= thr))
    n_accept_imp = int(np.sum(imp.astype(np.float64) >= thr))
    tar_lo, tar_hi = wilson_interval(n_accept_gen, gen.size)
    far_lo, far_hi = wilson_interval(n_accept_imp, imp.size)
    return {
        "tar": n_accept_gen / gen.size if gen.size else math.nan,
        "tar_ci_low": tar_lo,
        "tar_ci_high": tar_hi,
        "far": n_accept_imp / imp.size if imp.size else math.nan,
        "far_ci_low": far_lo,
        "far_ci_high": far_hi,
        "n_genuine": int(gen.size),
        "n_impostor": int(imp.size),
    }


def require_columns(df: pd.DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise FacequantError(f"{what} table is missing column(s): {', '.join(missing)}")


def as_bool(series: pd.Series, what: str) -> pd.Series:
    """A boolean column; NaN counts as False (not shown to be simulated / genuine)."""
    if pd.api.types.is_bool_dtype(series) and not series.isna().any():
        return series.astype(bool)
    try:
        return series.astype("boolean").fillna(False).astype(bool)
    except (TypeError, ValueError) as exc:
        raise FacequantError(f"{what}: column must be boolean ({exc})") from exc


def simulated_comparisons(comparisons: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """The comparisons whose probe was actually simulated at that backend and distance.

    A comparison is dropped when its (backend, distance_m, probe) matches a probes row with
    simulated == False. Comparisons with no matching probes row are kept: the probes table is
    the only place a probe can be marked unsimulated, and there it is not.
    """
    require_columns(probes, ["backend", "distance_m", "image", "simulated"], "probes")
    require_columns(comparisons, ["backend", "distance_m", "probe"], "comparisons")
    sim = as_bool(probes["simulated"], "probes.simulated")
    bad = probes.loc[~sim, ["backend", "distance_m", "image"]].drop_duplicates()
    if bad.empty:
        return comparisons.copy()
    bad_keys = pd.MultiIndex.from_frame(bad)
    comp_keys = pd.MultiIndex.from_frame(comparisons[["backend", "distance_m", "probe"]])
    return comparisons.loc[~comp_keys.isin(bad_keys)].copy()


def _mean(values: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.mean()) if len(v) else math.nan


def _percentile(values: pd.Series, q: float) -> float:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=np.float64)
    return float(np.percentile(v, q)) if v.size else math.nan


def _ordered_keys(*frames: pd.DataFrame) -> list[tuple[object, float]]:
    """(backend, distance_m) pairs: backends in order of first appearance, distances ascending."""
    pairs = pd.concat([f[["backend", "distance_m"]] for f in frames], ignore_index=True)
    backend_order = {b: i for i, b in enumerate(pd.unique(pairs["backend"]))}
    unique = pairs.drop_duplicates()
    return sorted(
        ((b, float(d)) for b, d in unique.itertuples(index=False, name=None)),
        key=lambda k: (backend_order[k[0]], k[1]),
    )


def sweep_table(
    probes: pd.DataFrame, comparisons: pd.DataFrame, threshold: float, model: str
) -> pd.DataFrame:
    """One row per backend x distance_m: probe statistics and TAR/FAR at a fixed threshold.

    Columns: SWEEP_COLUMNS in order, then SWEEP_EXTRA_COLUMNS. Probe rows with
    simulated == False, and every comparison made with such a probe, are left out of all
    statistics; they are only counted in n_not_simulated. A backend x distance cell appears
    if it has any probe or comparison row, so a distance where nothing could be simulated
    still shows up (with n_probes == 0 and NaN rates). face_px is the median over the cell's
    simulated probes (over all its probes if none was simulated, else over its comparisons).
    Rows are ordered by backend order of first appearance, then distance ascending.
    ``model`` fills the model column (the tables themselves are per model).
    """
    require_columns(probes, PROBE_COLUMNS, "probes")
    require_columns(comparisons, COMPARISON_COLUMNS, "comparisons")
    thr = float(threshold)
    sim = as_bool(probes["simulated"], "probes.simulated")
    kept_probes = probes.loc[sim]
    kept_comps = simulated_comparisons(comparisons, probes)
    genuine = as_bool(kept_comps["genuine"], "comparisons.genuine")

    # Pre-split by cell once instead of filtering the whole table per cell.
    all_probe_groups = dict(list(probes.groupby(["backend", "distance_m"], sort=False)))
    probe_groups = dict(list(kept_probes.groupby(["backend", "distance_m"], sort=False)))
    comp_groups = dict(list(kept_comps.groupby(["backend", "distance_m"], sort=False)))
    raw_comp_groups = dict(list(comparisons.groupby(["backend", "distance_m"], sort=False)))
    empty_probes = probes.iloc[0:0]
    empty_comps = kept_comps.iloc[0:0]

    rows: list[dict[str, object]] = []
    for key in _ordered_keys(probes, comparisons):
        cell_all = all_probe_groups.get(key, empty_probes)
        cell = probe_groups.get(key, empty_probes)
        comps = comp_groups.get(key, empty_comps)
        is_gen = genuine.loc[comps.index]
        gen_scores = comps.loc[is_gen, "cosine"].to_numpy(dtype=np.float64)
        imp_scores = comps.loc[~is_gen, "cosine"].to_numpy(dtype=np.float64)
        rates = match_rates(gen_scores, imp_scores, thr)

        if len(cell):
            face_px = _percentile(cell["face_px"], 50)
        elif len(cell_all):
            face_px = _percentile(cell_all["face_px"], 50)
        else:
            face_px = _percentile(raw_comp_groups.get(key, empty_comps)["face_px"], 50)

        rows.append(
            {
                "model": model,
                "backend": key[0],
                "distance_m": key[1],
                "face_px": face_px,
                "n_probes": len(cell),
                "n_genuine": rates["n_genuine"],
                "n_impostor": rates["n_impostor"],
                "prenorm_mean": _mean(cell["prenorm"]),
                "prenorm_p05": _percentile(cell["prenorm"], 5),
                "prenorm_p50": _percentile(cell["prenorm"], 50),
                "prenorm_p95": _percentile(cell["prenorm"], 95),
                "cos_to_fp32_mean": _mean(cell["cos_to_fp32"]),
                "genuine_cos_mean": float(gen_scores.mean()) if gen_scores.size else math.nan,
                "impostor_cos_mean": float(imp_scores.mean()) if imp_scores.size else math.nan,
                "threshold": thr,
                "tar": rates["tar"],
                "tar_ci_low": rates["tar_ci_low"],
                "tar_ci_high": rates["tar_ci_high"],
                "far": rates["far"],
                "far_ci_low": rates["far_ci_low"],
                "far_ci_high": rates["far_ci_high"],
                "n_not_simulated": len(cell_all) - len(cell),
            }
        )

    columns = list(SWEEP_COLUMNS) + list(SWEEP_EXTRA_COLUMNS)
    table = pd.DataFrame(rows, columns=columns)
    for col in COUNT_COLUMNS:
        table[col] = table[col].astype(np.int64)
    float_cols = [c for c in columns if c not in COUNT_COLUMNS and c not in ("model", "backend")]
    table[float_cols] = table[float_cols].astype(np.float64)
    return table


def to_long(sweep: pd.DataFrame) -> pd.DataFrame:
    """Tidy form: model, backend, distance_m, face_px, metric, value.

    One row per backend x distance x metric, where every non-identifier column of the sweep is
    a metric; rows keep the sweep's row order, metrics their column order. Values are float64
    (counts included), which is what plotting and concatenating across runs want.
    """
    require_columns(sweep, LONG_ID_COLUMNS, "sweep")
    metrics = [c for c in sweep.columns if c not in LONG_ID_COLUMNS]
    wide = sweep.reset_index(drop=True)
    long = wide.melt(
        id_vars=list(LONG_ID_COLUMNS),
        value_vars=metrics,
        var_name="metric",
        value_name="value",
        ignore_index=False,
    )
    # melt stacks metric-by-metric; a stable sort on the original row puts each sweep row's
    # metrics together, in column order.
    long = long.sort_index(kind="stable").reset_index(drop=True)
    long["value"] = pd.to_numeric(long["value"], errors="coerce").astype(np.float64)
    return long[[*LONG_ID_COLUMNS, "metric", "value"]]


def from_long(long: pd.DataFrame) -> pd.DataFrame:
    """Inverse of to_long: one row per (model, backend, distance_m), one column per metric.

    Rows and metric columns come back in order of first appearance; count columns
    (COUNT_COLUMNS) come back as int64 when they hold no NaN. Raises FacequantError when a
    (model, backend, distance_m, metric) appears twice, since it could not be undone.
    """
    require_columns(long, [*LONG_ID_COLUMNS, "metric", "value"], "long")
    dup = long.duplicated([*_ROW_KEY, "metric"])
    if dup.any():
        first = long.loc[dup, [*_ROW_KEY, "metric"]].iloc[0].tolist()
        raise FacequantError(f"long table has duplicate rows for {first}")
    keys = long[_ROW_KEY].drop_duplicates()
    metric_order = list(pd.unique(long["metric"]))
    wide = long.pivot(index=_ROW_KEY, columns="metric", values="value")
    row_index = pd.MultiIndex.from_frame(keys)
    wide = wide.reindex(index=row_index, columns=metric_order)
    wide.columns.name = None
    face_px = long.groupby(_ROW_KEY, sort=False)["face_px"].first().reindex(row_index)
    wide.insert(0, "face_px", face_px.to_numpy())
    out = wide.reset_index()
    out = out[[*LONG_ID_COLUMNS, *metric_order]]
    for col in metric_order:
        if col in COUNT_COLUMNS and not out[col].isna().any():
            out[col] = out[col].astype(np.int64)
    return out



def cell_row(model: str, backend: str, distance: float, face_px: float, cell: pd.DataFrame,
             genuine_scores: np.ndarray, n_impostor: int, impostor_sum: float, impostor_accepted: int,
             threshold: float, n_not_simulated: int) -> dict[str, object]:
    """One sweep-table row from a cell's simulated probe rows, its genuine scores and its
    impostor counts (facequant.evaluate.scoring): what sweep_table computes from per-pair
    rows, without them. Columns SWEEP_COLUMNS + SWEEP_EXTRA_COLUMNS."""
    gen = np.asarray(genuine_scores, dtype=np.float64)
    n_accept = int(np.count_nonzero(gen >= float(threshold)))
    tar_lo, tar_hi = wilson_interval(n_accept, gen.size)
    far_lo, far_hi = wilson_interval(impostor_accepted, n_impostor)
    return {
        "model": model, "backend": backend, "distance_m": distance, "face_px": face_px, "n_probes": len(cell),
        "n_genuine": int(gen.size), "n_impostor": int(n_impostor),
        "prenorm_mean": _mean(cell["prenorm"]), "prenorm_p05": _percentile(cell["prenorm"], 5),
        "prenorm_p50": _percentile(cell["prenorm"], 50), "prenorm_p95": _percentile(cell["prenorm"], 95),
        "cos_to_fp32_mean": _mean(cell["cos_to_fp32"]),
        "genuine_cos_mean": float(gen.mean()) if gen.size else math.nan,
        "impostor_cos_mean": impostor_sum / n_impostor if n_impostor else math.nan,
        "threshold": float(threshold), "tar": n_accept / gen.size if gen.size else math.nan,
        "tar_ci_low": tar_lo, "tar_ci_high": tar_hi,
        "far": impostor_accepted / n_impostor if n_impostor else math.nan, "far_ci_low": far_lo, "far_ci_high": far_hi,
        "n_not_simulated": int(n_not_simulated),
    }


def table_from_rows(rows: list[dict[str, object]]) -> pd.DataFrame:
    """cell_row dicts -> the sweep table, with sweep_table's row order (backends in order of
    first appearance, distances ascending), column order and dtypes."""
    columns = list(SWEEP_COLUMNS) + list(SWEEP_EXTRA_COLUMNS)
    order = {b: i for i, b in enumerate(dict.fromkeys(str(r["backend"]) for r in rows))}
    rows = sorted(rows, key=lambda r: (order[str(r["backend"])], as_float(r["distance_m"])))
    table = pd.DataFrame(rows, columns=columns)
    for col in COUNT_COLUMNS:
        table[col] = table[col].astype(np.int64)
    float_cols = [c for c in columns if c not in COUNT_COLUMNS and c not in ("model", "backend")]
    table[float_cols] = table[float_cols].astype(np.float64)
    return table

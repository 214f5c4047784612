"""Where does matching break? Reliable distance, cliff distance and the pre-norm cliff.

A quantized backend tends not to degrade gently: its match rate holds, then collapses once the
embedding pre-norm (L2 norm before normalisation) drops below some level. These functions put
numbers on that from a sweep table (see facequant.evaluate.metrics.sweep_table) and its comparisons.
They also flag a *degenerate* backend (degenerate_reason): one whose embeddings collapsed, so
that its high match rate is an artefact (every face matches every other) and its distances
must not be read as success. All are pure functions of their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from facequant.errors import FacequantError
from facequant.evaluate.crossing import level_crossing, reliable_crossing
from facequant.evaluate.degenerate import (
    AS_REFERENCE,
    BROKEN_REFERENCE,
    DEFAULT_DEGENERATE,
    DegenerateSettings,
    degenerate_reason,
)
from facequant.evaluate.metrics import as_bool, require_columns, simulated_comparisons
from facequant.evaluate.verdicts import VERDICT_COLUMNS

#: The contract: cliff_table's columns start exactly with these, in this order.
CLIFF_COLUMNS: tuple[str, ...] = (
    "model",
    "backend",
    "threshold",
    "tar_close",
    "reliable_distance_m",
    "cliff_distance_m",
    "cliff_face_px",
    "cliff_prenorm",
    "cliff_prenorm_width",
    "distance_cost_m",
)

#: Extra columns appended after CLIFF_COLUMNS. "degenerate" comes first, right after the
#: contract, so a collapsed backend is flagged next to the numbers it invalidates; then the
#: verdict against fp32 and the distances' intervals (facequant.evaluate.verdicts: empty / NaN
#: until a sweep's per-person counts fill them).
CLIFF_EXTRA_COLUMNS: tuple[str, ...] = (
    "degenerate",
    *VERDICT_COLUMNS,
    "reliable_tar",
    "close_distance_m",
    "far_distance_m",
    "tar_far_end",
    "n_genuine_fit",
)

# logit(0.9) = -logit(0.1) = ln 9: the P=0.1 and P=0.9 points bracket the fitted transition.
_LOGIT_90 = math.log(9.0)
# Inverse regularisation strength on the standardised log-prenorm. Large enough that the
# penalty is negligible next to the data, finite so a perfectly separable (hard-step) sample
# still gives a finite slope instead of diverging; see prenorm_cliff.
_LOGREG_C = 1e4
# The fitted 50% point must lie within this factor of the observed prenorm range.
_RANGE_STRETCH = 2.0


@dataclass(frozen=True)
class CliffSettings:
    """Fractions of the close-range TAR that define 'reliable' and 'the cliff'."""

    #: A distance is reliable while TAR >= reliable_fraction * tar_close.
    reliable_fraction: float = 0.9
    #: The cliff is where TAR first falls to cliff_fraction * tar_close.
    cliff_fraction: float = 0.5


def reliable_distance(
    distances: np.ndarray, tar: np.ndarray, tar_close: float, fraction: float = 0.9
) -> float:
    """How far TAR stays >= fraction * tar_close walking outwards from the closest distance,
    read between grid points where TAR crosses that bar (facequant.evaluate.crossing.
    reliable_crossing): +inf when it never drops below within the sweep, NaN when even the
    closest distance fails, when there are no distances, and when tar_close is NaN or <= 0 (a
    backend that never matches is reliable nowhere). A NaN TAR ends the run at the last distance
    that passed; a later recovery after a failure does not extend it."""
    tc = float(tar_close)
    bar = fraction * tc if math.isfinite(tc) and tc > 0.0 else math.nan
    return float(reliable_crossing(distances, tar, bar)[0])


def cliff_distance(
    distances: np.ndarray, tar: np.ndarray, tar_close: float, fraction: float = 0.5
) -> float:
    """The distance where TAR first falls to fraction * tar_close, linearly interpolated
    (facequant.evaluate.crossing.level_crossing): e.g. TAR [1, 1, 0.8, 0.2] at [1, 2, 3, 4] m
    with tar_close 1 crosses 0.5 at 3.5 m. If the first distance is already at or below the
    level, that distance is returned. Distances with a NaN TAR are skipped (interpolated
    across). Returns +inf when TAR never falls that far within the sweep (report it as "beyond
    the sweep"), and NaN when tar_close is 0 or NaN (no close-range performance to lose) or
    there is no finite TAR at all.
    """
    tc = float(tar_close)
    level = fraction * tc if math.isfinite(tc) and tc > 0.0 else math.nan
    return float(level_crossing(distances, tar, level)[0])


def prenorm_cliff(prenorm: np.ndarray, matched: np.ndarray) -> tuple[float, float]:
    """Where P(match) crosses 50% as a function of embedding pre-norm, and how sharply.

    Fits a logistic regression of matched on log(prenorm) (sklearn LogisticRegression with a
    negligible penalty) and returns (prenorm at P=0.5, width), where width = prenorm at P=0.9
    minus prenorm at P=0.1. A small width relative to the 50% point means a cliff (matching
    switches off over a narrow pre-norm band); a large one means a gradual slope.

    Why log(prenorm) rather than prenorm: the pre-norm is a positive scale quantity that
    shrinks multiplicatively as the face shrinks (face px ~ 1/distance), so effects are
    ratios, not differences; in log space the fitted curve is symmetric in ratios, the
    10%/90% points can never land at a negative (impossible) pre-norm, and width/p50 is
    scale-free, so models with different norm scales compare directly.

    Rows whose prenorm is not finite or not > 0 are ignored (log undefined). Returns
    (nan, nan) when:
      * only one class is present (or fewer than two distinct pre-norms): nothing to fit;
      * the fitted slope is <= 0: matching does not improve with pre-norm, so there is no
        cliff to place;
      * the fitted 50% point lies outside the observed pre-norm range stretched by 2x, i.e.
        outside [min / 2, 2 * max] (a factor of 2 beyond each end on the log scale the fit
        uses): the data never approach the transition, so its position would be a pure
        extrapolation of a nearly flat curve.
    """
    x = np.asarray(prenorm, dtype=np.float64).reshape(-1)
    y_raw = np.asarray(matched).reshape(-1)
    if x.shape != y_raw.shape:
        raise FacequantError(
            f"prenorm and matched must have the same length, got {x.size} and {y_raw.size}"
        )
    y = y_raw.astype(bool)
    keep = np.isfinite(x) & (x > 0.0)
    x, y = x[keep], y[keep]
    if x.size == 0 or y.all() or not y.any():
        return (math.nan, math.nan)
    logx = np.log(x)
    centre, scale = float(logx.mean()), float(logx.std())
    if scale <= 0.0:
        return (math.nan, math.nan)
    # Standardise so lbfgs is well conditioned and C means the same for every pre-norm scale.
    z = ((logx - centre) / scale).reshape(-1, 1)
    model = LogisticRegression(C=_LOGREG_C, max_iter=1000).fit(z, y)
    slope = float(model.coef_[0, 0])
    intercept = float(model.intercept_[0])
    if not slope > 0.0:
        return (math.nan, math.nan)

    def prenorm_at(logit: float) -> float:
        return math.exp(centre + scale * (logit - intercept) / slope)

    p50 = prenorm_at(0.0)
    lo, hi = float(x.min()), float(x.max())
    if not (lo / _RANGE_STRETCH <= p50 <= hi * _RANGE_STRETCH):
        return (math.nan, math.nan)
    return (p50, prenorm_at(_LOGIT_90) - prenorm_at(-_LOGIT_90))


def _face_px_at(distance: float, distances: np.ndarray, face_px: np.ndarray) -> float:
    """face_px at a distance, interpolated linearly in 1/distance (face px ~ 1/distance)."""
    if not math.isfinite(distance) or distance <= 0.0:
        # An infinite (beyond-the-sweep) or undefined cliff has no face size.
        return math.nan
    ok = np.isfinite(distances) & np.isfinite(face_px) & (distances > 0.0)
    if not ok.any():
        return math.nan
    inv = 1.0 / distances[ok]
    px = face_px[ok]
    order = np.argsort(inv, kind="stable")
    # np.interp clamps outside the sweep; the cliff always lies within it, so no harm.
    return float(np.interp(1.0 / distance, inv[order], px[order]))


def _distance_cost(reference: float, this: float) -> float:
    """reference cliff - this cliff, defining the infinite cases instead of warning."""
    if math.isnan(reference) or math.isnan(this):
        return math.nan
    if math.isinf(reference) and math.isinf(this):
        return math.nan  # both beyond the sweep: the cost is not measured
    return reference - this  # inf - finite = inf (reference beyond the sweep), finite - inf = -inf


def _reference_tar_close(sweep: pd.DataFrame, reference_backend: str) -> float:
    """The reference backend's TAR at its closest measured distance; NaN when it is absent."""
    cell = sweep.loc[sweep["backend"] == reference_backend].sort_values("distance_m", kind="stable")
    tar = pd.to_numeric(cell["tar"], errors="coerce").dropna()
    return float(tar.iloc[0]) if len(tar) else math.nan


def cliff_table(
    sweep: pd.DataFrame,
    comparisons: pd.DataFrame,
    model: str,
    reference_backend: str = "fp32",
    settings: CliffSettings = CliffSettings(),  # noqa: B008 - frozen, so a shared default is safe
    probes: pd.DataFrame | None = None,
    degenerate_settings: DegenerateSettings = DEFAULT_DEGENERATE,
    embedding_dims: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per backend: where it stops being reliable, where it falls off the cliff.

    Columns: CLIFF_COLUMNS in order, then CLIFF_EXTRA_COLUMNS. Backends appear in order of
    first appearance in ``sweep``.

    * threshold: the backend's sweep threshold (its value at the close distance).
    * tar_close: TAR at the closest distance with a measured (non-NaN) TAR; that distance is
      close_distance_m (normally the closest of the sweep). Farther distances only are then
      used for the reliable / cliff distances.
    * reliable_distance_m / cliff_distance_m: reliable_distance / cliff_distance with the
      settings' fractions; cliff_distance_m is +inf when TAR never falls that far.
    * reliable_tar: the TAR a distance needs to count as reliable: reliable_fraction times the
      reference backend's tar_close, one bar for every backend, so "reliable to 5 m" means the
      same TAR whichever backend says it (a backend's own close TAR varies by a few matches
      from backend to backend, and with it a per-backend bar moved the reliable distance by
      a metre on a flat curve). Without the reference in the sweep, each backend's own.
      The cliff stays relative to the backend's own tar_close: it is about the curve's shape.
    * cliff_face_px: face_px interpolated at the cliff distance, linearly in 1/distance since
      face px ~ 1/distance; NaN when the cliff is beyond the sweep or undefined.
    * cliff_prenorm / cliff_prenorm_width: prenorm_cliff over the backend's genuine
      comparisons at all distances, x = probe_prenorm, y = cosine >= threshold.
    * distance_cost_m: the reference backend's cliff distance minus this backend's (> 0: this
      backend breaks closer to the camera). NaN when the reference backend is not in the
      sweep, when either cliff is NaN, and when both are +inf (both beyond the sweep, cost
      unmeasured). Reference +inf and this backend finite gives +inf: "at least the rest of
      the sweep"; the reverse gives -inf.
    * tar_far_end / far_distance_m: TAR at the farthest distance, and that distance.
    * n_genuine_fit: genuine comparisons that went into the pre-norm fit.
    * degenerate: degenerate_reason over the backend's sweep rows (and probe rows when
      ``probes`` is given): "" when healthy, else why its embeddings look collapsed. A
      flagged backend's TAR and distances are artefacts of the collapse, not success. When the
      reference backend itself is flagged, its reason says it is the float model or its
      preprocessing that is broken, not quantization.

    ``probes`` (optional, an extension of the contract): when given, comparisons made with
    probes marked simulated == False are dropped before the pre-norm fit, as sweep_table does,
    and the pre-norm spread across photos feeds the degenerate check (without it the sweep's
    pre-norm percentiles stand in). ``embedding_dims`` (optional): values per face by backend,
    for the degenerate check's size criterion.
    """
    require_columns(sweep, ["backend", "distance_m", "face_px", "threshold", "tar"], "sweep")
    require_columns(comparisons, ["backend", "genuine", "cosine", "probe_prenorm"], "comparisons")
    # Rows without a probe key (identification's mated searches) come from simulated probes only.
    comps = comparisons if probes is None or "probe" not in comparisons else simulated_comparisons(comparisons, probes)
    genuine_comps = comps.loc[as_bool(comps["genuine"], "comparisons.genuine")]
    genuine_by_backend = dict(list(genuine_comps.groupby("backend", sort=False)))

    ref_close = _reference_tar_close(sweep, reference_backend)
    rows: list[dict[str, Any]] = []
    for backend in pd.unique(sweep["backend"]):
        cell = sweep.loc[sweep["backend"] == backend].sort_values("distance_m", kind="stable")
        backend_probes = None
        if probes is not None and "backend" in probes:
            backend_probes = probes.loc[probes["backend"] == backend]
        d = cell["distance_m"].to_numpy(dtype=np.float64)
        tar = cell["tar"].to_numpy(dtype=np.float64)
        px = cell["face_px"].to_numpy(dtype=np.float64)
        thr_values = cell["threshold"].to_numpy(dtype=np.float64)

        measured = np.flatnonzero(np.isfinite(tar))
        if measured.size:
            i_close = int(measured[0])
            tar_close = float(tar[i_close])
            close_d = float(d[i_close])
            d_out, tar_out = d[i_close:], tar[i_close:]
        else:
            i_close, tar_close, close_d = 0, math.nan, math.nan
            d_out, tar_out = d, tar
        threshold = float(thr_values[i_close]) if thr_values.size else math.nan

        bar_close = ref_close if math.isfinite(ref_close) and ref_close > 0 else tar_close
        reliable = reliable_distance(d_out, tar_out, bar_close, settings.reliable_fraction)
        cliff = cliff_distance(d_out, tar_out, tar_close, settings.cliff_fraction)

        fit = genuine_by_backend.get(backend)
        if fit is not None and math.isfinite(threshold):
            scores = pd.to_numeric(fit["cosine"], errors="coerce").to_numpy(dtype=np.float64)
            x = pd.to_numeric(fit["probe_prenorm"], errors="coerce").to_numpy(dtype=np.float64)
            # A NaN cosine is not a match; NaN pre-norms are dropped inside prenorm_cliff.
            # "matched" (identification: right person first, above the threshold) when given.
            matched = fit["matched"].to_numpy(dtype=bool) if "matched" in fit else scores >= threshold
            p50, width = prenorm_cliff(x, matched)
            n_fit = int(np.sum(np.isfinite(x) & (x > 0.0)))
        else:
            p50, width, n_fit = math.nan, math.nan, 0

        rows.append(
            {
                "model": model,
                "backend": backend,
                "threshold": threshold,
                "tar_close": tar_close,
                "reliable_distance_m": reliable,
                "cliff_distance_m": cliff,
                "cliff_face_px": _face_px_at(cliff, d, px),
                "cliff_prenorm": p50,
                "cliff_prenorm_width": width,
                "degenerate": degenerate_reason(cell, backend_probes, degenerate_settings,
                                                (embedding_dims or {}).get(str(backend))),
                **{c: "" if c == "verdict" else math.nan for c in VERDICT_COLUMNS},
                "reliable_tar": settings.reliable_fraction * bar_close,
                "close_distance_m": close_d,
                "far_distance_m": float(d[-1]) if d.size else math.nan,
                "tar_far_end": float(tar[-1]) if tar.size else math.nan,
                "n_genuine_fit": n_fit,
            }
        )

    ref_cliff = next(
        (r["cliff_distance_m"] for r in rows if r["backend"] == reference_backend), None
    )
    broken = any(r["backend"] == reference_backend and r["degenerate"] for r in rows)
    for r in rows:
        if r["backend"] == reference_backend and r["degenerate"]:
            r["degenerate"] = f"{r['degenerate']}; {BROKEN_REFERENCE}"
        elif broken and r["degenerate"]:  # issue 12: inherited from the float model, not caused here
            r["degenerate"] = f"{r['degenerate']}; {AS_REFERENCE}"
    for r in rows:
        r["distance_cost_m"] = (
            math.nan
            if ref_cliff is None
            else _distance_cost(float(ref_cliff), float(r["cliff_distance_m"]))
        )

    table = pd.DataFrame(rows, columns=[*CLIFF_COLUMNS, *CLIFF_EXTRA_COLUMNS])
    table["n_genuine_fit"] = table["n_genuine_fit"].astype(np.int64)
    return table

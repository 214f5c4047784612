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

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from facequant.errors import FacequantError
from facequant.evaluate.metrics import _as_bool, _require_columns, simulated_comparisons

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
#: contract, so a collapsed backend is flagged next to the numbers it invalidates.
CLIFF_EXTRA_COLUMNS: tuple[str, ...] = (
    "degenerate",
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


def _sorted_curve(distances: object, tar: object) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    t = np.asarray(tar, dtype=np.float64).reshape(-1)
    if d.shape != t.shape:
        raise FacequantError(
            f"distances and tar must have the same length, got {d.size} and {t.size}"
        )
    if np.isnan(d).any():
        raise FacequantError("distances contain NaN")
    # Stable sort: callers may pass the sweep in any order; the rules below walk outwards.
    order = np.argsort(d, kind="stable")
    return d[order], t[order]


def reliable_distance(
    distances: np.ndarray, tar: np.ndarray, tar_close: float, fraction: float = 0.9
) -> float:
    """The farthest distance still reliable: TAR >= fraction * tar_close all the way out.

    Walks outwards from the closest distance and stops at the first distance that fails; the
    answer is the last distance of that contiguous passing run. A later noisy recovery after
    a failure does not extend it, because a user cannot rely on a range with a hole in it.
    A NaN TAR (no genuine comparisons there) also ends the run: it is not evidence of
    reliability. Returns NaN when even the closest distance fails, when there are no
    distances, and when tar_close is NaN or <= 0 (a backend that never matches is reliable
    nowhere).
    """
    d, t = _sorted_curve(distances, tar)
    tc = float(tar_close)
    if d.size == 0 or not math.isfinite(tc) or tc <= 0.0:
        return math.nan
    # NaN >= x is False, so a NaN TAR fails the test as documented.
    passing = t >= fraction * tc
    if not passing[0]:
        return math.nan
    n_run = d.size if passing.all() else int(np.argmin(passing))
    return float(d[n_run - 1])


def cliff_distance(
    distances: np.ndarray, tar: np.ndarray, tar_close: float, fraction: float = 0.5
) -> float:
    """The distance where TAR first falls to fraction * tar_close, linearly interpolated.

    Walking outwards, find the first distance whose TAR is <= the level and interpolate
    between it and the previous distance (TAR linear in distance between sweep points): e.g.
    TAR [1, 1, 0.8, 0.2] at [1, 2, 3, 4] m with tar_close 1 crosses 0.5 at 3.5 m. If the
    first distance is already at or below the level, that distance is returned. Distances
    with a NaN TAR are skipped (interpolated across). Returns +inf when TAR never falls that
    far within the sweep (report it as "beyond the sweep"), and NaN when tar_close is 0 or NaN
    (no close-range performance to lose) or there is no finite TAR at all.
    """
    d, t = _sorted_curve(distances, tar)
    tc = float(tar_close)
    if not math.isfinite(tc) or tc <= 0.0:
        return math.nan
    ok = np.isfinite(t)
    d, t = d[ok], t[ok]
    if d.size == 0:
        return math.nan
    level = fraction * tc
    below = np.flatnonzero(t <= level)
    if below.size == 0:
        return math.inf
    i = int(below[0])
    if i == 0:
        return float(d[0])
    d0, d1, t0, t1 = d[i - 1], d[i], t[i - 1], t[i]
    # t0 > level >= t1, so t0 - t1 > 0 and the fraction lies in (0, 1].
    return float(d0 + (t0 - level) / (t0 - t1) * (d1 - d0))


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


# ---------------------------------------------------------------- degenerate backends
#
# Why: a team put INT16 on every layer of a Hailo model and its embeddings collapsed (constant
# pre-norm near 2, every face matched every other at cosine 0.99). TAR was then ~1 at every
# distance and the naive report called it the best backend. A collapsed backend must be flagged
# instead. The thresholds below were set against the healthy numbers measured on the shared
# MobileFaceNet and celebs13 (61 photos, 280 genuine / 3380 impostor comparisons per distance,
# 1080p 90-degree camera, threshold 0.421 set at FAR 1e-3) for fp32, int8-pt, int8-pc and
# a16w8 at all twelve default distances (0.5 to 12 m):
#
#   * genuine cosine mean 0.71-0.72 at 0.5 m, falling to 0.15 at 12 m;
#   * impostor cosine mean -0.009 to 0.035 at every distance (std 0.085-0.11, single
#     worst impostor pair 0.50 at close range);
#   * FAR at the shared threshold <= 0.0018;
#   * pre-norm CV across photos 0.090-0.095 at 0.5 m, 0.09-0.15 at every distance.
#
# and against deliberately broken INT8 QDQ builds of the same model (tests/test_degenerate.py;
# TensorQuantOverrides forcing absurd ranges): the first Conv output clipped to [0, 1e-4]
# gives impostor = genuine = 1.00, pre-norm 1.8-1.9 with CV ~0, FAR 1.00 (TAR 1.00: the naive
# report's "success"); the first PRelu output clipped the same way gives impostor 0.94 ~
# genuine 0.95, pre-norm 1.9 with CV 0.027-0.030 (the Hailo symptom; caught by (a) and (c),
# not by (b)); the final output clipped symmetrically to +-1e-3 gives sign-only embeddings,
# pre-norm 0.0226 with CV 0.001, while impostors stay at 0.015 and FAR at 0 (only (b)).


@dataclass(frozen=True)
class DegenerateSettings:
    """Thresholds of degenerate_reason; the defaults are justified against measured numbers."""

    #: (a) Impostors score like genuines: impostor mean >= genuine mean - this margin ...
    cosine_margin: float = 0.1
    #: ... while the impostor mean itself is above this floor. The floor is why a healthy
    #: sweep that *starts* far away is not flagged: at 12 m fp32's genuine mean (0.15) is only
    #: 0.16 above its impostor mean (-0.01), but both are near 0, whereas in a collapse both are
    #: high. 0.2 is 6x the largest healthy impostor mean (0.035) and about 2 impostor std above
    #: the healthy mean.
    impostor_floor: float = 0.2
    #: (a) Or impostors score high outright: the average stranger above 0.5 sits above the
    #: fp32 threshold (0.42); healthy impostor means never exceed 0.035, and 0.5 is the single
    #: worst healthy impostor pair out of 3380.
    impostor_max: float = 0.5
    #: (b) Pre-norm nearly constant across faces: CV (std / mean over photos) below this.
    #: Healthy CV is 0.09-0.15 for every backend at every distance, 9x or more above 0.01.
    prenorm_cv_min: float = 0.01
    #: (b) Without per-photo probes, the sweep's pre-norm percentiles stand in: (p95 - p05) /
    #: p50 below this. For a normal spread p95 - p05 = 3.29 std, so 0.033 ~ CV 0.01; healthy
    #: is 0.29 at 0.5 m.
    prenorm_spread_min: float = 0.033
    #: (b) does not apply when the pre-norm is within this of 1: a graph that L2-normalises
    #: its own output has pre-norm exactly 1 for every face by design, not by collapse (a
    #: collapsed direction is still caught by (a) and (c)).
    unit_norm_tolerance: float = 1e-3
    #: (c) FAR far above target: more than half of all strangers accepted. Healthy FAR at the
    #: shared threshold is <= 0.0018 (target 0.001); 0.5 is ~300x that.
    far_max: float = 0.5
    #: (b) needs this many photos for a CV to mean anything.
    min_photos: int = 3
    #: (d) An embedding with a pre-norm below this is zero for matching purposes: its cosine
    #: is undefined (a zero vector is written as cosine 0, a non-match). Healthy pre-norms here
    #: are 3.4-4.5 (fp32 at 0.5 m), 1 for graphs that normalise their output, and even the
    #: sign-only output clipped to +-1e-3 above has 0.0226; 1e-4 over 512 values is ~4e-6 per
    #: value, below float16's smallest normal number, so no deployed output keeps a direction.
    zero_prenorm: float = 1e-4
    #: (e) Fewer values per face than this is not a face embedding (ArcFace-style models give
    #: 128 to 1024; the shared ones 256, 512, 1024): a scalar or a handful of numbers per face
    #: cannot separate thousands of identities.
    min_embedding_dim: int = 32
    #: (a') Impostor cosine mean at or above this: every face gives the same embedding.
    same_embedding_cosine: float = 0.999


#: The default thresholds (a module constant, so a default argument is not a call).
DEFAULT_DEGENERATE = DegenerateSettings()

#: Appended to a degenerate float reference's reason: nothing quantized caused it.
BROKEN_REFERENCE = "the float reference itself: a broken model or preprocessing, not quantization damage"
#: Appended to a quantized backend's reason when the float reference is degenerate too.
AS_REFERENCE = "so is the float reference: a broken model or preprocessing, not quantization damage"


def _finite(value: object) -> float:
    """value as a float, NaN when missing or not numeric."""
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return f


def _one_backend(rows: pd.DataFrame, what: str) -> None:
    if "backend" in rows.columns:
        names = pd.unique(rows["backend"].dropna())
        if len(names) > 1:
            raise FacequantError(
                f"degenerate_reason: {what} rows hold {len(names)} backends "
                f"({', '.join(map(str, names))}); pass one backend's rows"
            )


def _close_row(sweep_rows: pd.DataFrame) -> pd.Series | None:
    """The closest-distance row that measured anything a criterion reads, or None."""
    evidence = [c for c in ("genuine_cos_mean", "impostor_cos_mean", "far") if c in sweep_rows]
    if not evidence:
        return None
    values = sweep_rows[evidence].apply(pd.to_numeric, errors="coerce")
    measured = sweep_rows.loc[values.notna().any(axis=1)]
    if measured.empty:
        return None
    # A distance where nothing could be simulated has NaN everywhere and is passed over, the
    # same way cliff_table takes tar_close at the closest *measured* distance.
    return measured.sort_values("distance_m", kind="stable").iloc[0]


def _close_prenorms(close: pd.Series, probe_rows: pd.DataFrame, backend: object) -> np.ndarray | None:
    """Finite pre-norms of the judged backend's simulated probes at the close distance."""
    rows = probe_rows
    if backend is not None and "backend" in rows:
        # Passing the whole probes table is allowed: keep the backend being judged.
        rows = rows.loc[rows["backend"] == backend]
    _one_backend(rows, "probe")
    if "distance_m" in rows:
        d = pd.to_numeric(rows["distance_m"], errors="coerce").to_numpy(dtype=np.float64)
        rows = rows.loc[np.isclose(d, float(close["distance_m"]))]
    if "simulated" in rows:
        # An unsimulated probe is left out of every metric (sweep_table); here too.
        rows = rows.loc[_as_bool(rows["simulated"], "probes.simulated")]
    if "prenorm" not in rows:
        return None
    x = pd.to_numeric(rows["prenorm"], errors="coerce").to_numpy(dtype=np.float64)
    return x[np.isfinite(x)]


def _zero_embeddings(close: pd.Series, prenorms: np.ndarray | None, s: DegenerateSettings) -> str:
    """Criterion (d) as a reason fragment: embeddings with (near-)zero pre-norm."""
    if prenorms is not None:
        k = int(np.sum(prenorms < s.zero_prenorm))
        if k == 0:
            return ""
        return (f"{k} of {prenorms.size} embeddings zero or near zero (pre-norm < {s.zero_prenorm:g}): "
                "no direction to compare")
    p05 = _finite(close.get("prenorm_p05"))
    if math.isfinite(p05) and p05 < s.zero_prenorm:
        return f"pre-norm p05 {p05:.2g} (< {s.zero_prenorm:g}): embeddings zero or near zero, no direction to compare"
    return ""


def _prenorm_spread(
    close: pd.Series, prenorms: np.ndarray | None, has_probes: bool, s: DegenerateSettings
) -> str:
    """Criterion (b) as a reason fragment, "" when the pre-norm varies as faces do."""
    if has_probes:
        if prenorms is None:
            return ""
        x = prenorms[prenorms > 0.0]
        if x.size < s.min_photos:
            return ""
        mean = float(x.mean())
        if abs(mean - 1.0) <= s.unit_norm_tolerance:
            return ""
        cv = float(x.std()) / mean
        return f"pre-norm CV {cv:.2g} (constant)" if cv < s.prenorm_cv_min else ""
    # No probes: the sweep's percentiles of the same close-range pre-norms stand in.
    p05, p50, p95 = (_finite(close.get(c)) for c in ("prenorm_p05", "prenorm_p50", "prenorm_p95"))
    n = _finite(close.get("n_probes"))
    if not (math.isfinite(p05) and math.isfinite(p95) and math.isfinite(p50) and p50 > 0.0):
        return ""
    if math.isfinite(n) and n < s.min_photos:
        return ""
    if abs(p50 - 1.0) <= s.unit_norm_tolerance:
        return ""
    spread = (p95 - p05) / p50
    if spread < s.prenorm_spread_min:
        return f"pre-norm p05-p95 spread {spread:.2g} of median (constant)"
    return ""


def degenerate_reason(
    sweep_rows: pd.DataFrame,
    probe_rows: pd.DataFrame | None,
    settings: DegenerateSettings = DEFAULT_DEGENERATE,
    embedding_dim: int | None = None,
) -> str:
    """Why one backend's embeddings look collapsed, or "" when they look healthy.

    ``sweep_rows``: that backend's rows of a sweep table (facequant.evaluate.metrics.sweep_table);
    ``probe_rows``: its rows of the probes table, or None. Judged at the closest distance with
    a measured genuine/impostor cosine or FAR, where a healthy backend is at its best, so a
    failure there cannot be blamed on distance:

    (a) impostors score like genuines: impostor_cos_mean >= genuine_cos_mean - cosine_margin
        with impostor_cos_mean > impostor_floor, or impostor_cos_mean > impostor_max;
    (b) the pre-norm is nearly constant across different faces: CV of the simulated probes'
        pre-norm over photos < prenorm_cv_min (without probes: (p95 - p05) / p50 of the
        sweep row < prenorm_spread_min); skipped for a unit pre-norm (the graph normalises
        its own output) and for fewer than min_photos photos;
    (c) FAR far above target: far > far_max;
    (d) embeddings zero or near zero: any simulated close-range probe with pre-norm <
        zero_prenorm (without probes: prenorm_p05 below it), whose cosine is undefined;
    (e) too few values per face to be a face embedding: embedding_dim (when given) <
        min_embedding_dim.

    (a) also says so outright when every face gives the same embedding (impostor cosine
    mean >= same_embedding_cosine). Any one criterion flags the backend. The reason lists each that fired, joined by "; ",
    e.g. "impostor cosine 0.97 ~ genuine 0.98; pre-norm CV 0.003 (constant); FAR 1.00 at
    threshold 0.421". Criteria whose columns are absent are not evaluated. Raises
    FacequantError when the rows hold several backends or lack distance_m.
    """
    _require_columns(sweep_rows, ["distance_m"], "sweep")
    _one_backend(sweep_rows, "sweep")
    close = _close_row(sweep_rows)
    if close is None:
        return ""  # nothing measured: no evidence either way, and "" keeps the column clean
    backend = close.get("backend") if "backend" in sweep_rows else None
    s = settings
    reasons: list[str] = []

    gen, imp = _finite(close.get("genuine_cos_mean")), _finite(close.get("impostor_cos_mean"))
    if math.isfinite(imp):
        if math.isfinite(gen) and imp >= gen - s.cosine_margin and imp > s.impostor_floor:
            reasons.append(f"impostor cosine {imp:.2f} ~ genuine {gen:.2f}")
        elif imp > s.impostor_max:
            reasons.append(f"impostor cosine {imp:.2f} > {s.impostor_max:g}")

        if imp >= s.same_embedding_cosine:
            reasons.append(f"every face gives the same embedding (impostor cosine {imp:.4f})")

    prenorms = None if probe_rows is None else _close_prenorms(close, probe_rows, backend)
    spread = _prenorm_spread(close, prenorms, probe_rows is not None, s)
    if spread:
        reasons.append(spread)

    far = _finite(close.get("far"))
    if math.isfinite(far) and far > s.far_max:
        thr = _finite(close.get("threshold"))
        at = f" at threshold {thr:.3f}" if math.isfinite(thr) else ""
        reasons.append(f"FAR {far:.2f}{at}")
    reasons.append(_zero_embeddings(close, prenorms, s))
    if embedding_dim is not None and embedding_dim < s.min_embedding_dim:
        reasons.append(f"embedding has {embedding_dim} value(s) per face (< {s.min_embedding_dim}): too small to be "
                       "a face embedding")
    return "; ".join(r for r in reasons if r)


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
    _require_columns(sweep, ["backend", "distance_m", "face_px", "threshold", "tar"], "sweep")
    _require_columns(comparisons, ["backend", "genuine", "cosine", "probe_prenorm"], "comparisons")
    # Rows without a probe key (identification's mated searches) come from simulated probes only.
    comps = comparisons if probes is None or "probe" not in comparisons else simulated_comparisons(comparisons, probes)
    genuine_comps = comps.loc[_as_bool(comps["genuine"], "comparisons.genuine")]
    genuine_by_backend = dict(list(genuine_comps.groupby("backend", sort=False)))

    ref_close = _reference_tar_close(sweep, reference_backend)
    rows: list[dict[str, object]] = []
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

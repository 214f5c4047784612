"""Degenerate backends: embeddings that collapsed, so a high match rate is an artefact.

degenerate_reason says why a backend's numbers must not be read as success (every face matches
every other, a constant pre-norm, FAR far above target, zero embeddings, an output too small to
be a face embedding). Pure functions of a sweep table and its probe rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from facequant.errors import FacequantError
from facequant.evaluate.metrics import as_bool, require_columns
from facequant.values import as_float

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


_finite = as_float  # value as a float, NaN when missing or not numeric


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
        rows = rows.loc[as_bool(rows["simulated"], "probes.simulated")]
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
    require_columns(sweep_rows, ["distance_m"], "sweep")
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

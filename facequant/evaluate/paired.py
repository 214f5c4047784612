"""Paired TAR gain between two backends on the same genuine comparisons, with an identity
bootstrap interval (identities are resampled, not pairs, since pairs of one person correlate)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from facequant.errors import FacequantError
from facequant.evaluate.metrics import as_bool, require_columns
from facequant.evaluate.people import resample_weights


def _paired_counts(comparisons: pd.DataFrame, threshold: float, base: str, other: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Genuine comparisons present for both backends, counted per identity x distance:
    (distances, n, matched by base, matched by other); the count arrays are identities x distances."""
    require_columns(comparisons, ["backend", "distance_m", "probe", "gallery", "genuine", "cosine"], "comparisons")
    genuine = comparisons[as_bool(comparisons["genuine"], "comparisons.genuine")]
    key = ["distance_m", "probe", "gallery"]
    a = genuine[genuine.backend == base].set_index(key).cosine
    b = genuine[genuine.backend == other].set_index(key).cosine
    if a.empty or b.empty:
        raise FacequantError(f"no genuine comparisons for backend '{base if a.empty else other}'")
    both = pd.DataFrame({"a": a, "b": b}).dropna().reset_index()
    both["identity"] = both.probe.astype(str).str.split("/").str[0]
    both["ma"], both["mb"] = both.a >= threshold, both.b >= threshold
    counts = both.groupby(["identity", "distance_m"]).agg(n=("a", "size"), ma=("ma", "sum"), mb=("mb", "sum"))
    grid = counts.unstack("distance_m", fill_value=0)
    return (grid["n"].columns.to_numpy(float), grid["n"].to_numpy(float), grid["ma"].to_numpy(float),
            grid["mb"].to_numpy(float))


def _identity_weights(k: int, n_boot: int, seed: int) -> np.ndarray:
    # Each bootstrap draw reweights identities by how often they were drawn (the cliff's bootstrap's draws).
    return np.concatenate(list(resample_weights(k, n_boot, seed)))


def paired_tar_gain(
    comparisons: pd.DataFrame, threshold: float, base: str, other: str, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """TAR(other) - TAR(base) per distance on the same genuine comparisons, with a 95% interval
    from a bootstrap over identities.

    Both backends see the same probes and gallery photos, so the difference is paired: most
    sampling noise cancels, and what is left is resampled by identity (the probe path's first
    folder) because one person's comparisons succeed or fail together; resampling comparisons
    would give intervals far too narrow for a dozen people. Only comparisons present for both
    backends count. Columns: distance_m, n_genuine, n_identities, tar_base, tar_other, gain,
    gain_ci_low, gain_ci_high.
    """
    distances, n, ma, mb = _paired_counts(comparisons, threshold, base, other)
    weights = _identity_weights(n.shape[0], n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (weights @ (mb - ma)) / (weights @ n)  # draws x distances
    low, high = np.nanquantile(boot, [0.025, 0.975], axis=0)
    total = n.sum(0)
    return pd.DataFrame({
        "distance_m": distances, "n_genuine": total.astype(int), "n_identities": (n > 0).sum(0),
        "tar_base": ma.sum(0) / total, "tar_other": mb.sum(0) / total, "gain": (mb - ma).sum(0) / total,
        "gain_ci_low": low, "gain_ci_high": high,
    })


def pooled_tar_gain(
    comparisons: pd.DataFrame, threshold: float, base: str, other: str, distances: Sequence[float],
    n_boot: int = 2000, seed: int = 0,
) -> tuple[float, float, float]:
    """Mean over `distances` of TAR(other) - TAR(base), with a 95% identity-bootstrap interval
    (the same identity draw at every distance, so the pooling keeps the pairing). Returns
    (gain, ci_low, ci_high); NaNs when none of `distances` was swept."""
    swept, n, ma, mb = _paired_counts(comparisons, threshold, base, other)
    pick = np.isin(swept, np.asarray(distances, float))
    if not pick.any():
        return math.nan, math.nan, math.nan
    n, diff = n[:, pick], (mb - ma)[:, pick]
    weights = _identity_weights(n.shape[0], n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.nanmean((weights @ diff) / (weights @ n), axis=1)
    low, high = np.nanquantile(boot, [0.025, 0.975])
    return float(np.mean(diff.sum(0) / n.sum(0))), float(low), float(high)

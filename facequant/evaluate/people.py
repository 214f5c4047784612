"""People, not pairs, are the independent unit: per-person match counts, a bootstrap that
resamples people, and a paired test between two backends that flips people, not pairs.

One person's genuine comparisons succeed or fail together (the same face, the same photos), so
a dozen people with 280 pairs carry far less information than 280 independent pairs. Everything
here therefore works on a [person x backend x distance] array of match counts (a genuine pair
belongs to its person; in identification a mated probe does): a bootstrap resample is a
vector of person weights, a resampled TAR a weighted sum, and there is no loop over pairs.
Pure functions of arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from facequant.errors import FacequantError

#: The bootstrap's random stream, apart from calibration's, the noise's and the split's.
BOOTSTRAP_STREAM = 0xB007
#: Resamples by default: the 2.5 % and 97.5 % points are then order statistics 50 deep, which
#: moves an interval end by a few hundredths of a metre between seeds on celebs13.
DEFAULT_RESAMPLES = 2000
#: Resamples drawn at once (bounds the weights array to CHUNK x people).
CHUNK = 250
#: The exact sign-flip distribution is built when people x total difference stays below this;
#: beyond it (thousands of people) its normal approximation is as good as exact.
EXACT_WORK = 20_000_000


@dataclass(frozen=True)
class PersonCounts:
    """Genuine outcomes per person: matched[p, k, d] of total[p, d] pairs (the same pairs for
    every backend k, so a difference between two backends is paired)."""

    people: tuple[str, ...]
    backends: tuple[str, ...]
    distances: np.ndarray  # [D], ascending
    matched: np.ndarray  # [P, K, D] int64
    total: np.ndarray  # [P, D] int64

    def index(self, backend: str) -> int:
        return self.backends.index(backend)

    def tar(self) -> np.ndarray:
        """[K, D] TAR over everyone (NaN where a distance has no pairs)."""
        n = self.total.sum(axis=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.matched.sum(axis=0) / n[None, :]


def outcomes(comparisons: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """backend, distance_m, probe, matched of genuine comparisons (cosine >= threshold), or of
    identification's mated searches (their own `matched` column)."""
    genuine = comparisons[comparisons["genuine"].astype(bool)] if "genuine" in comparisons else comparisons
    matched = (genuine["matched"].astype(bool) if "matched" in genuine
               else pd.to_numeric(genuine["cosine"], errors="coerce") >= float(threshold))
    return pd.DataFrame({"backend": genuine["backend"].astype(str), "distance_m": genuine["distance_m"].astype(float),
                         "probe": genuine["probe"].astype(str), "matched": matched.to_numpy(bool)})


def person_counts(outcomes: pd.DataFrame, person_of: Mapping[str, str], backends: Sequence[str] | None = None,
                  distances: Sequence[float] | None = None) -> PersonCounts:
    """Per-person counts from one row per backend x distance x genuine pair (or mated probe):
    columns backend, distance_m, probe, matched. person_of maps a probe key to its person;
    distances: the sweep's grid (a distance without pairs gets zero totals), else the rows'.
    Every backend must hold the same pairs per person and distance as the first (fp32): the
    sweep scores them all on the same probes, so anything else is a broken run."""
    for column in ("backend", "distance_m", "probe", "matched"):
        if column not in outcomes:
            raise FacequantError(f"genuine outcomes are missing column {column}")
    names = list(backends) if backends is not None else [str(b) for b in pd.unique(outcomes["backend"])]
    probes = outcomes["probe"].astype(str)
    unknown = ~probes.isin(list(person_of))
    if unknown.any():
        raise FacequantError(f"genuine outcomes: probe {probes[unknown].iloc[0]} has no person")
    # The people with pairs (or mated probes): someone with none carries no information.
    people = sorted({str(person_of[k]) for k in pd.unique(probes)})
    person_code = {p: i for i, p in enumerate(people)}
    probe_codes = probes.map(lambda k: person_code[str(person_of[k])])
    seen = {float(d) for d in outcomes["distance_m"]}
    grid = np.array(sorted(seen | {float(d) for d in distances or ()}), dtype=np.float64)
    d_code = np.searchsorted(grid, outcomes["distance_m"].to_numpy(np.float64))
    b_code = outcomes["backend"].astype(str).map({b: i for i, b in enumerate(names)}).to_numpy()
    if pd.isna(b_code).any():
        raise FacequantError("genuine outcomes hold a backend that is not in the list")
    b_code = b_code.astype(np.int64)
    n_p, n_k, n_d = len(people), len(names), len(grid)
    cell = (probe_codes.to_numpy(np.int64) * n_k + b_code) * n_d + d_code
    size = n_p * n_k * n_d
    matched = np.bincount(cell, weights=outcomes["matched"].to_numpy(bool), minlength=size).reshape(n_p, n_k, n_d)
    totals = np.bincount(cell, minlength=size).reshape(n_p, n_k, n_d)
    if n_k and (totals != totals[:, :1, :]).any():
        k = int(np.flatnonzero((totals != totals[:, :1, :]).any(axis=(0, 2)))[0])
        raise FacequantError(f"backend {names[k]} was scored on other genuine pairs than {names[0]}: "
                             "a paired comparison needs the same pairs")
    return PersonCounts(tuple(people), tuple(names), grid, np.rint(matched).astype(np.int64),
                        totals[:, 0, :].astype(np.int64) if n_k else np.zeros((n_p, n_d), np.int64))


def resample_weights(n_people: int, n_boot: int, seed: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Bootstrap resamples of people, `chunk` at a time: row r says how often each person was
    drawn (n_people draws with replacement). Seeded: the same seed gives the same resamples."""
    rng = np.random.default_rng([seed, BOOTSTRAP_STREAM])
    p = np.full(n_people, 1.0 / n_people) if n_people else np.zeros(0)
    done = 0
    while done < n_boot:
        size = min(chunk, n_boot - done)
        yield rng.multinomial(n_people, p, size=size).astype(np.float64)
        done += size


def resampled_tar(counts: PersonCounts, weights: np.ndarray) -> np.ndarray:
    """[R, K, D] TAR of each resample (weights: [R, P]); NaN where a resample has no pairs."""
    p, k, d = counts.matched.shape
    hits = weights @ counts.matched.reshape(p, k * d).astype(np.float64)
    n = weights @ counts.total.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits.reshape(-1, k, d) / n[:, None, :]


def percentile_interval(values: np.ndarray, confidence: float = 0.95, unknown: str = "both"
                        ) -> tuple[float, float]:
    """The percentile interval of bootstrap values, each end pushed out by two Monte Carlo
    standard errors of its tail share (with 2000 resamples the 1.8 % and 98.2 % points instead of
    2.5 % and 97.5 %): an end sitting a few resamples from a value (zero, for a difference)
    would otherwise cross it from seed to seed, and a headline with it. Order statistics, no
    interpolation, so an end beyond the sweep stays +-inf.

    A NaN value is a resample whose figure is not defined: unknown="both" counts it at both
    extremes (it could be anything: the interval opens), "low" at -inf (e.g. "reliable
    nowhere": below every distance)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    tail = max(0.0, tail - 2.0 * math.sqrt(tail * (1.0 - tail) / v.size))
    nan = np.isnan(v)
    low_vals = np.where(nan, -np.inf, v)
    high_vals = np.where(nan, np.inf if unknown == "both" else -np.inf, v)
    low = float(np.quantile(low_vals, tail, method="inverted_cdf"))
    high = float(np.quantile(high_vals, 1.0 - tail, method="inverted_cdf"))
    return low, high


def sign_flip_p(diff: np.ndarray) -> float:
    """Two-sided p-value of a paired difference with people as the unit: diff[i] is person i's
    matches by one backend minus the other's on the same pairs (integers). Under the null that
    the two backends are exchangeable for each person, every person's difference is as likely
    negated; the p-value is the share of the 2^n sign flips whose |sum| reaches the observed one.

    Computed exactly (the distribution of the flipped sum, person by person), which for one pair
    per person is the exact McNemar test; with thousands of people its normal approximation
    (sum / sqrt(sum of squares), the clustered McNemar statistic) is used instead."""
    d = np.abs(np.rint(np.asarray(diff, dtype=np.float64))).astype(np.int64)
    observed = abs(int(np.rint(np.asarray(diff, dtype=np.float64)).sum()))
    d = d[d > 0]
    if observed == 0 or d.size == 0:
        return 1.0
    total = int(d.sum())
    if d.size * (2 * total + 1) > EXACT_WORK:
        z = observed / math.sqrt(float(np.sum(d.astype(np.float64) ** 2)))
        return float(min(1.0, 2.0 * stats.norm.sf(z)))
    dist = np.zeros(2 * total + 1)
    dist[total] = 1.0  # index = sum + total
    for v in d.tolist():
        shifted = np.zeros_like(dist)
        shifted[v:] += 0.5 * dist[:-v]  # +v
        shifted[:-v] += 0.5 * dist[v:]  # -v
        dist = shifted
    sums = np.abs(np.arange(-total, total + 1))
    return float(min(1.0, dist[sums >= observed].sum()))


def smallest_p(diff: np.ndarray) -> float:
    """The smallest p-value sign_flip_p could give for these people, whatever their signs:
    every one of the k people who differ agreeing, 2 of 2^k flips."""
    k = int(np.count_nonzero(np.rint(np.asarray(diff, dtype=np.float64))))
    return 1.0 if k == 0 else min(1.0, 2.0 ** (1 - k))


def tarone_family(p_min: Sequence[float], alpha: float) -> np.ndarray:
    """Which tests enter the multiple-testing family (Tarone 1990): a test whose smallest
    achievable p exceeds alpha / m can never be significant among m, so it is left out; m is the
    smallest number with at most m tests able to reach alpha / m. It depends only on which
    people differ, not in which direction, so leaving them out does not bias the rest."""
    pm = np.asarray(p_min, dtype=np.float64)
    for m in range(1, pm.size + 1):
        able = pm <= alpha / m
        if int(able.sum()) <= m:
            return able
    return np.zeros(pm.size, dtype=bool)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error, any dependence): the k-th smallest
    of m times (m - k + 1), kept monotone, capped at 1."""
    pv = np.asarray(p, dtype=np.float64)
    m = pv.size
    if m == 0:
        return pv
    order = np.argsort(pv, kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate(pv[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = scaled
    return out

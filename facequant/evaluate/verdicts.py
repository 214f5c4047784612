"""Verdicts a user can trust: every distance of the cliff table with a bootstrap interval over
people, and each backend judged against fp32 on the same genuine pairs.

* Intervals: people are resampled with replacement (facequant.evaluate.people), each resample's
  TAR curves give a reliable distance, a cliff distance and a distance cost (fp32's cliff minus
  the backend's, from the same resample: paired), and the 95 % percentile interval is taken.
  The threshold stays the run's in every resample: it is the operating point being judged, and
  the question is how far a deployment at that threshold holds, not how well a threshold could
  be re-chosen. The reliable bar (90 % of fp32's close-range TAR) is recomputed per resample,
  as it is defined from the same data.
* Verdicts: per distance, an exact sign-flip test over people of the backend's matches minus
  fp32's on the same pairs (people.sign_flip_p: the exact McNemar test when each person has one pair);
  the distances form one family per backend, corrected by Holm's step-down at ALPHA, over the
  distances where a significant result is possible at all (Tarone's rule). A backend is
  `worse` when its TAR is significantly below fp32's somewhere (worse_from_m: the nearest such
  distance), `better` when significantly above somewhere, below nowhere, and not by accepting
  more impostors (its FAR at those distances within both the target and fp32's own: the
  threshold is shared, so a backend that false-accepts more also matches more genuines),
  `same` otherwise, and `degenerate` when its embeddings collapsed (cliff.csv's flag).
The tests are exact and use no random draw, so a verdict never depends on the bootstrap seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from facequant.evaluate import people
from facequant.evaluate.crossing import level_crossing, reliable_crossing

#: Family-wise significance level of a backend's verdict (over its distances).
ALPHA = 0.05
SAME, WORSE, BETTER, DEGENERATE = "same", "worse", "better", "degenerate"
#: The columns this module fills in cliff.csv, in order.
INTERVAL_COLUMNS: tuple[str, ...] = (
    "reliable_distance_low_m", "reliable_distance_high_m", "cliff_distance_low_m", "cliff_distance_high_m",
    "distance_cost_low_m", "distance_cost_high_m",
)
VERDICT_COLUMNS: tuple[str, ...] = ("verdict", "worse_from_m", *INTERVAL_COLUMNS)
TEST = ("exact sign-flip test over people of the matches the backend gains or loses against fp32 on the same "
        "genuine pairs (the exact McNemar test when each person has one pair)")
CORRECTION = ("Holm's step-down over one backend's distances, among those where a significant result is "
              "possible at all (Tarone's rule)")


@dataclass(frozen=True)
class VerdictSettings:
    alpha: float = ALPHA
    confidence: float = 0.95
    resamples: int = people.DEFAULT_RESAMPLES
    seed: int = 0
    reliable_fraction: float = 0.9
    cliff_fraction: float = 0.5


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b for distances that may be +inf (beyond the sweep) or NaN: both beyond the sweep
    leaves the difference unknown (NaN), as cliff.csv's distance cost does."""
    with np.errstate(invalid="ignore"):
        out = a - b
    return np.where(np.isinf(a) & np.isinf(b) & (a == b), np.nan, out)


def _curves(tar: np.ndarray, close: int, ref: int | None, k: int, distances: np.ndarray,
            s: VerdictSettings) -> tuple[np.ndarray, np.ndarray]:
    """Reliable and cliff distances of backend k for every resample (tar: [R, K, D])."""
    own = tar[:, k, close]
    base = tar[:, ref, close] if ref is not None else own
    with np.errstate(invalid="ignore"):
        bar_close = np.where(np.isfinite(base) & (base > 0), base, own)
        bar = np.where(np.isfinite(bar_close) & (bar_close > 0), s.reliable_fraction * bar_close, np.nan)
        level = np.where(np.isfinite(own) & (own > 0), s.cliff_fraction * own, np.nan)
    d = distances[close:]
    return reliable_crossing(d, tar[:, k, close:], bar), level_crossing(d, tar[:, k, close:], level)


def bootstrap_distances(counts: people.PersonCounts, s: VerdictSettings, reference: str = "fp32"
                        ) -> dict[str, dict[str, np.ndarray]]:
    """Per backend, its reliable and cliff distance, distance cost and reliable-distance
    difference to the reference in every resample ([R] arrays; resamples shared by all)."""
    n_p, n_k, _ = counts.matched.shape
    ref = counts.index(reference) if reference in counts.backends else None
    measured = np.flatnonzero(counts.total.sum(axis=0) > 0)
    close = int(measured[0]) if measured.size else 0
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("reliable", "cliff")}
    for weights in people.resample_weights(n_p, s.resamples, s.seed):
        tar = people.resampled_tar(counts, weights)
        curves = [_curves(tar, close, ref, k, counts.distances, s) for k in range(n_k)]
        parts["reliable"].append(np.stack([c[0] for c in curves]))
        parts["cliff"].append(np.stack([c[1] for c in curves]))
    reliable, cliff = (np.concatenate(parts[k], axis=1) if parts[k] else np.zeros((n_k, 0))
                       for k in ("reliable", "cliff"))
    out: dict[str, dict[str, np.ndarray]] = {}
    for k, name in enumerate(counts.backends):
        row = {"reliable": reliable[k], "cliff": cliff[k]}
        if ref is not None:  # both beyond the sweep in a resample: how far apart is not measured there
            row["cost"] = _difference(cliff[ref], cliff[k])
            row["reliable_difference"] = _difference(reliable[k], reliable[ref])
        out[name] = row
    return out


def paired_tests(counts: people.PersonCounts, backend: str, reference: str = "fp32", alpha: float = ALPHA
                 ) -> pd.DataFrame:
    """Per distance, backend vs reference on the same pairs: tar_difference, matches gained
    (negative: lost), people_differing, p (exact sign-flip), in_family (Tarone), p_holm (NaN
    outside the family) and significant (p_holm <= alpha)."""
    diff = counts.matched[:, counts.index(backend), :] - counts.matched[:, counts.index(reference), :]
    total = counts.total.sum(axis=0)
    p = np.array([people.sign_flip_p(diff[:, j]) for j in range(diff.shape[1])])
    family = people.tarone_family([people.smallest_p(diff[:, j]) for j in range(diff.shape[1])], alpha)
    p_holm = np.full(p.size, np.nan)
    p_holm[family] = people.holm(p[family])
    with np.errstate(invalid="ignore", divide="ignore"):
        tar_difference = diff.sum(axis=0) / total
    return pd.DataFrame({
        "distance_m": counts.distances, "n_pairs": total, "matches_gained": diff.sum(axis=0),
        "tar_difference": tar_difference, "people_differing": np.count_nonzero(diff, axis=0), "p": p,
        "in_family": family, "p_holm": p_holm, "significant": family & (p_holm <= alpha)})


def _m(d: float) -> str:
    return f"{d:g} m"


def _far_at(rates: pd.DataFrame, backend: str, distance: float) -> float:
    row = rates[(rates.backend == backend) & np.isclose(rates.distance_m.astype(float), distance)]
    return float(row.far.iloc[0]) if len(row) and "far" in row else math.nan


def verdict(tests: pd.DataFrame, rates: pd.DataFrame, backend: str, target_far: float, degenerate: str = "",
            reference: str = "fp32", rate: str = "TAR", false: str = "FAR") -> tuple[str, float, str]:
    """(verdict, worse_from_m, reason) from paired_tests' table. rates: the sweep's (FAR per
    backend and distance); rate / false: the protocol's words (TPIR / FPIR in identification)."""
    if degenerate:
        return DEGENERATE, math.nan, f"degenerate: {degenerate}"
    sig = tests[tests.significant]
    worse, better = sig[sig.matches_gained < 0], sig[sig.matches_gained > 0]
    n_family = int(tests.in_family.sum())
    how = (f"{'none' if not n_family else n_family} of {len(tests)} can reach it with these people"
           if n_family < len(tests) else f"all {len(tests)} tested")

    def listed(rows: pd.DataFrame) -> str:
        first = rows.iloc[0]
        return (f"{', '.join(f'{d:g}' for d in rows.distance_m)} m (at {_m(first.distance_m)}: "
                f"{first.tar_difference:+.3f}, {abs(int(first.matches_gained))} of {int(first.n_pairs)} pairs, "
                f"{int(first.people_differing)} people differ, Holm p {first.p_holm:.2g})")

    if len(worse):
        text = f"{rate} significantly below {reference}'s at {listed(worse)}"
        if len(better):
            text += f"; above it at {listed(better)}"
        return WORSE, float(worse.distance_m.min()), text
    if len(better):
        excess = []
        for d in better.distance_m:
            far, ref_far = _far_at(rates, backend, d), _far_at(rates, reference, d)
            if math.isfinite(far) and far > max(target_far, ref_far if math.isfinite(ref_far) else 0.0) + 1e-12:
                excess.append(f"{far:.2g} at {_m(d)} ({reference} {ref_far:.2g}, target {target_far:g})")
        if excess:
            return SAME, math.nan, (f"{rate} significantly above {reference}'s at {listed(better)}, but with more "
                                    f"false accepts: {false} {'; '.join(excess)}; at a shared threshold that is not "
                                    f"a gain at equal {false}")
        return BETTER, math.nan, f"{rate} significantly above {reference}'s at {listed(better)}"
    best = tests.p_holm.min() if n_family else math.nan
    tail = f", smallest Holm p {best:.2g}" if math.isfinite(best) else ""
    return SAME, math.nan, f"no distance where its {rate} differs significantly from {reference}'s ({how}{tail})"


def judge(cliff: pd.DataFrame, rates: pd.DataFrame, counts: people.PersonCounts, target_far: float,
          s: VerdictSettings = VerdictSettings(), reference: str = "fp32",  # noqa: B008 - frozen
          identification: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """cliff.csv with its verdict and interval columns filled in, and run.json's `verdicts`."""
    rate, false = ("TPIR", "FPIR") if identification else ("TAR", "FAR")
    table = cliff.copy()
    for column in VERDICT_COLUMNS:
        table[column] = "" if column == "verdict" else np.nan
    table["verdict"] = table["verdict"].astype(object)
    entries: dict[str, Any] = {}
    # No genuine pair anywhere (one photo per person): nothing to resample, nothing to judge.
    boot = bootstrap_distances(counts, s, reference) if counts.total.sum() > 0 else {}
    for i, row in table.iterrows():
        name = str(row.backend)
        if name not in boot:
            continue
        b = boot[name]
        table.loc[i, "reliable_distance_low_m"], table.loc[i, "reliable_distance_high_m"] = \
            people.percentile_interval(b["reliable"], s.confidence, unknown="low")
        table.loc[i, "cliff_distance_low_m"], table.loc[i, "cliff_distance_high_m"] = \
            people.percentile_interval(b["cliff"], s.confidence, unknown="low")
        flag = row.get("degenerate", "")
        degenerate = flag.strip() if isinstance(flag, str) else ""  # NaN read back from a CSV: healthy
        if name == reference or "cost" not in b:
            table.loc[i, ["distance_cost_low_m", "distance_cost_high_m"]] = row.distance_cost_m
            if degenerate:
                table.loc[i, "verdict"] = DEGENERATE
            continue
        low, high = people.percentile_interval(b["cost"], s.confidence)
        table.loc[i, "distance_cost_low_m"], table.loc[i, "distance_cost_high_m"] = low, high
        tests = paired_tests(counts, name, reference, s.alpha)
        v, worse_from, reason = verdict(tests, rates, name, target_far, degenerate, reference, rate, false)
        table.loc[i, "verdict"], table.loc[i, "worse_from_m"] = v, worse_from
        rel_low, rel_high = people.percentile_interval(b["reliable_difference"], s.confidence)
        ref_row = cliff[cliff.backend == reference]
        point = (float(_difference(np.array([row.reliable_distance_m]),
                                   ref_row.reliable_distance_m.to_numpy(float))[0]) if len(ref_row) else math.nan)
        entries[name] = {"verdict": v, "worse_from_m": worse_from, "reason": reason,
                         "reliable_difference_m": {"point": point, "low": rel_low, "high": rel_high},
                         "distances": tests.to_dict("records")}
    record = {"reference": reference, "alpha": s.alpha, "test": TEST, "correction": CORRECTION,
              "unit": "mated probes' person" if identification else "genuine pairs' person",
              "people": len(counts.people),
              "bootstrap": {"resamples": s.resamples, "seed": s.seed, "confidence": s.confidence,
                            "method": "percentile interval of a bootstrap that resamples people with replacement "
                                      "(order statistics); the threshold stays the run's in every resample",
                            "stream": people.BOOTSTRAP_STREAM},
              "backends": entries}
    return table, record

"""Scores without per-pair rows: blocked matrix products of unit embeddings.

Every probe is compared with every enrolled photo, so a sweep of N photos makes about N^2
comparisons per backend and distance. None of them becomes a row: a block of probes is
multiplied with the whole gallery at once (one BLAS call), and each block is folded into
small accumulators as it is produced:

- genuine comparisons (same person) are kept as compact arrays (probe, gallery, cosine,
  probe pre-norm): they grow with N times the photos per person, not with N^2, and the
  pre-norm cliff fit, the paired TAR gain and the match-vs-pre-norm plot need them;
- impostor comparisons are counted: how many, their sum (for the mean), how many reach the
  threshold, and, where the threshold is still to be set, only the K largest scores, which
  is all `threshold_from_top` needs.

Scores are float64 (unit vectors in float64, one GEMM per block): exact to ~1e-16, so the
result does not depend on how a BLAS splits its sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from facequant.errors import FacequantError

#: Score entries one block may hold (probes x gallery), about 32 MB of float64.
BLOCK_ENTRIES = 4_000_000
#: Bins of the impostor-score histogram one cell may keep for its AUC: cosines in [-1, 1], so a
#: bin is 0.0005 wide and a genuine score shares its bin with a negligible share of impostors.
AUC_BINS = 4096


def score_bins(scores: np.ndarray) -> np.ndarray:
    """The AUC histogram's bin of each cosine (clipped into [-1, 1])."""
    return np.clip(((np.asarray(scores, np.float64) + 1.0) * (AUC_BINS / 2)).astype(np.int64), 0, AUC_BINS - 1)


def auc_from_histogram(genuine: np.ndarray, histogram: np.ndarray) -> float:
    """ROC AUC, P(genuine score > impostor score), from genuine scores and a histogram of the
    impostor scores (score_bins): the Mann-Whitney count, an impostor in a genuine score's own
    bin counting half. NaN without either kind of score."""
    hist = np.asarray(histogram, np.float64)
    gen = np.asarray(genuine, np.float64)
    if gen.size == 0 or hist.sum() == 0:
        return math.nan
    below = np.concatenate([[0.0], np.cumsum(hist)[:-1]])
    b = score_bins(gen)
    return float(np.sum(below[b] + 0.5 * hist[b]) / (gen.size * hist.sum()))


def unit_rows(raw: np.ndarray, zero_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """(unit float64 rows, pre-norms) of raw embeddings. A row whose norm is below zero_norm
    has no direction: a zero vector (cosine 0 with anything, never NaN)."""
    raw = np.asarray(raw, dtype=np.float64)
    norm = np.linalg.norm(raw, axis=1)
    unit = np.where(norm[:, None] < zero_norm, 0.0, raw / np.maximum(norm[:, None], zero_norm))
    return unit, norm


def impostors_allowed(n_impostor: int, target_far: float) -> int:
    """How many impostors may reach the threshold at target_far (metrics.threshold_at_far's
    rule: the count may not exceed target_far * n)."""
    return int(math.floor(target_far * n_impostor + 1e-9))


class TopK:
    """The K largest values seen, with the (probe, gallery) pair of each: enough to set a
    threshold at a FAR (it sits just above the (allowed + 1)-th largest impostor score)."""

    def __init__(self, k: int) -> None:
        self.k = max(1, int(k))
        self.values = np.empty(0, np.float64)
        self.pairs = np.empty((0, 2), np.int64)

    def add(self, values: np.ndarray, probe: np.ndarray, gallery: np.ndarray) -> None:
        values = np.concatenate([self.values, np.asarray(values, np.float64)])
        pairs = np.concatenate([self.pairs, np.stack([probe, gallery], axis=1).astype(np.int64)])
        if len(values) > self.k:
            keep = np.argpartition(values, len(values) - self.k)[len(values) - self.k:]
            values, pairs = values[keep], pairs[keep]
        self.values, self.pairs = values, pairs

    def sorted_desc(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.lexsort((self.pairs[:, 1], self.pairs[:, 0], -self.values))  # ties: a fixed order
        return self.values[order], self.pairs[order]


def threshold_from_top(top_desc: np.ndarray, n_impostor: int, target_far: float) -> float:
    """The threshold metrics.threshold_at_far returns for n_impostor scores whose largest
    values are top_desc (descending, at least allowed + 1 of them): just above the
    (allowed + 1)-th largest, so at most `allowed` impostors reach it."""
    if n_impostor <= 0:
        raise FacequantError("no impostor comparisons at the closest distance: FAR (and a threshold for it) is undefined")
    k = impostors_allowed(n_impostor, target_far) + 1
    if k > n_impostor:
        raise FacequantError(f"target FAR {target_far:g} accepts every impostor; choose a smaller --far")
    if len(top_desc) < k:
        raise FacequantError(f"internal: {len(top_desc)} top scores kept, {k} needed")
    return float(np.nextafter(np.float64(top_desc[k - 1]), np.inf))


@dataclass
class ImpostorCounts:
    """One backend x distance cell's impostor comparisons, folded as they are scored."""

    n: int = 0
    total: float = 0.0
    accepted: int = 0  # scores >= threshold (when the threshold was known while scoring)
    histogram: np.ndarray | None = None  # AUC_BINS counts (score_bins), when asked for

    def add(self, scores: np.ndarray, threshold: float | None) -> None:
        self.n += int(scores.size)
        self.total += float(scores.sum())
        if threshold is not None:
            self.accepted += int(np.count_nonzero(scores >= threshold))
        if self.histogram is not None:
            self.histogram += np.bincount(score_bins(scores), minlength=AUC_BINS)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan


@dataclass
class GenuineScores:
    """One cell's genuine comparisons as arrays (indices into the sweep's photo list)."""

    probe: list[np.ndarray] = field(default_factory=list)
    gallery: list[np.ndarray] = field(default_factory=list)
    cosine: list[np.ndarray] = field(default_factory=list)

    def add(self, probe: np.ndarray, gallery: np.ndarray, cosine: np.ndarray) -> None:
        self.probe.append(probe.astype(np.int32))
        self.gallery.append(gallery.astype(np.int32))
        self.cosine.append(cosine.astype(np.float64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.probe:
            return np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float64)
        return np.concatenate(self.probe), np.concatenate(self.gallery), np.concatenate(self.cosine)


#: on_block(probe_rows, gallery_cols, cosines, genuine) for every comparison of a block:
#: how --save-comparisons streams pairs to disk without holding them.
BlockSink = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def _impostors(histogram: bool) -> ImpostorCounts:
    return ImpostorCounts(histogram=np.zeros(AUC_BINS, np.int64) if histogram else None)


@dataclass
class CellScores:
    genuine: GenuineScores
    impostors: ImpostorCounts
    top: TopK | None


def score_all_pairs(probes: np.ndarray, probe_rows: np.ndarray, gallery: np.ndarray, identity: np.ndarray,
                    same_photo: bool, threshold: float | None, keep_top: int = 0,
                    sink: BlockSink | None = None, histogram: bool = False) -> CellScores:
    """Every probe (unit rows `probes`, photo indices `probe_rows`) against every gallery photo
    (unit rows `gallery`, photo index = row). identity: an integer code per photo.
    Genuine: same identity, another photo (same_photo: the probe's own enrolment only).
    Impostor: another identity. A probe is never compared with its own photo otherwise.
    histogram: keep the impostor scores' histogram too (for the AUC)."""
    genuine, imp = GenuineScores(), _impostors(histogram)
    top = TopK(keep_top) if keep_top else None
    block = max(1, BLOCK_ENTRIES // max(1, len(gallery)))
    cols = np.arange(len(gallery))
    for start in range(0, len(probes), block):
        rows = probe_rows[start:start + block]
        scores = probes[start:start + block] @ gallery.T
        same_person = identity[rows][:, None] == identity[None, :]
        own = rows[:, None] == cols[None, :]
        is_gen = own if same_photo else same_person & ~own
        is_imp = ~same_person
        r, c = np.nonzero(is_gen)
        genuine.add(rows[r], c, scores[r, c])
        imp_scores = scores[is_imp]
        imp.add(imp_scores, threshold)
        if top is not None or sink is not None:
            ri, ci = np.nonzero(is_imp)
            if top is not None:
                top.add(imp_scores, rows[ri], ci)
            if sink is not None:
                sink(np.concatenate([rows[r], rows[ri]]), np.concatenate([c, ci]),
                     np.concatenate([scores[r, c], imp_scores]),
                     np.concatenate([np.ones(len(r), bool), np.zeros(len(ri), bool)]))
    return CellScores(genuine, imp, top)


def score_listed_pairs(probes_by_photo: dict[int, np.ndarray], gallery: np.ndarray, probe: np.ndarray,
                       enrolled: np.ndarray, is_genuine: np.ndarray, threshold: float | None, keep_top: int = 0,
                       sink: BlockSink | None = None, histogram: bool = False) -> CellScores:
    """Only the listed (probe photo, gallery photo, genuine) comparisons, e.g. a pairs CSV;
    pairs whose probe photo is missing from probes_by_photo (not simulated) are left out."""
    genuine, imp = GenuineScores(), _impostors(histogram)
    top = TopK(keep_top) if keep_top else None
    keep = np.array([p in probes_by_photo for p in probe.tolist()], dtype=bool)
    probe, enrolled, is_genuine = probe[keep], enrolled[keep], is_genuine[keep]
    if len(probe):
        vectors = np.stack([probes_by_photo[p] for p in probe.tolist()])
        scores = np.einsum("ij,ij->i", vectors, gallery[enrolled])
        genuine.add(probe[is_genuine], enrolled[is_genuine], scores[is_genuine])
        imp.add(scores[~is_genuine], threshold)
        if top is not None:
            top.add(scores[~is_genuine], probe[~is_genuine], enrolled[~is_genuine])
        if sink is not None:
            sink(probe, enrolled, scores, is_genuine)
    return CellScores(genuine, imp, top)

"""1:N identification, what a kiosk or a corridor camera does: a probe is searched in a gallery
of enrolled people and either named or rejected.

- The gallery holds one close-range photo per enrolled person (a seeded choice).
- Some people are not enrolled at all (a seeded fraction of the identities): their photos are
  the non-mated probes, people the system must reject.
- Every other photo of an enrolled person is a mated probe, at every distance.

Per backend and distance: the rank-1 identification rate (the top gallery match is the right
person), and open-set TPIR at a threshold set at a target FPIR: a mated probe counts when its
top match is the right person *and* scores at least the threshold; a non-mated probe is a false
positive when its top match scores at least the threshold. One threshold serves every backend,
set on fp32's non-mated probes at the closest distance, like the verification threshold.
Rates carry Wilson 95 % intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from facequant.evaluate.metrics import wilson_interval
from facequant.evaluate.scoring import BLOCK_ENTRIES
from facequant.values import as_float

#: The columns of identification.csv, in order.
IDENTIFICATION_COLUMNS: tuple[str, ...] = (
    "model", "backend", "distance_m", "face_px", "n_mated", "n_nonmated", "threshold",
    "rank1", "rank1_ci_low", "rank1_ci_high", "tpir", "tpir_ci_low", "tpir_ci_high",
    "fpir", "fpir_ci_low", "fpir_ci_high", "mated_score_mean", "nonmated_top_mean",
)
DEFAULT_NONMATED_FRACTION = 0.2
_SPLIT_STREAM = 0x1D3A  # the split's random stream, apart from calibration's and the noise's


@dataclass(frozen=True)
class Split:
    """Who is enrolled, with which photo, and which photos probe the gallery."""

    gallery_rows: np.ndarray  # photo index of each enrolled person's gallery photo
    gallery_identity: np.ndarray  # identity code of each gallery row
    mated_rows: np.ndarray  # photos of enrolled people, their gallery photo excepted
    nonmated_rows: np.ndarray  # photos of people who are not enrolled
    enrolled: tuple[str, ...]
    not_enrolled: tuple[str, ...]

    def to_dict(self, keys: list[str]) -> dict[str, object]:
        return {"enrolled_identities": len(self.enrolled), "not_enrolled_identities": list(self.not_enrolled),
                "gallery_photos": [keys[i] for i in self.gallery_rows.tolist()],
                "mated_probes": int(len(self.mated_rows)), "nonmated_probes": int(len(self.nonmated_rows))}


def split_identities(identity: np.ndarray, names: list[str], seed: int,
                     nonmated_fraction: float = DEFAULT_NONMATED_FRACTION) -> Split | None:
    """A seeded split of the photos (identity: a code per photo indexing names). None when the
    data cannot make both kinds of probe: fewer than two identities, or no enrolled person
    with a second photo."""
    codes = np.unique(identity)
    if len(codes) < 2:
        return None
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    n_out = min(len(codes) - 1, max(1, round(nonmated_fraction * len(codes))))
    # People with one photo can only be rejected (enrolled, they would have no mated probe):
    # they are left out first, then a seeded draw fills the rest.
    counts = {int(c): int(np.sum(identity == c)) for c in codes}
    singles = [c for c in codes.tolist() if counts[c] == 1]
    multi = [c for c in codes.tolist() if counts[c] > 1]
    out = set(rng.permutation(singles)[:n_out].tolist())
    rest = n_out - len(out)
    if rest > 0:
        out |= set(rng.permutation(multi)[:rest].tolist())
    enrolled = [c for c in codes.tolist() if c not in out]
    gallery_rows: list[int] = []
    mated: list[int] = []
    for c in enrolled:
        photos = np.flatnonzero(identity == c)
        pick = int(photos[rng.integers(len(photos))])
        gallery_rows.append(pick)
        mated.extend(int(p) for p in photos if p != pick)
    if not mated:
        return None
    nonmated = np.flatnonzero(np.isin(identity, sorted(out)))
    return Split(np.array(gallery_rows, np.int64), np.array(enrolled, np.int64), np.array(sorted(mated), np.int64),
                 nonmated.astype(np.int64), tuple(names[c] for c in enrolled), tuple(names[c] for c in sorted(out)))


@dataclass
class Searches:
    """One backend x distance cell: the top gallery match of every probe searched."""

    mated_rows: np.ndarray
    mated_correct: np.ndarray  # the top match is the right person
    mated_score: np.ndarray  # the probe's score against its own person's gallery photo
    mated_top: np.ndarray  # its top score (any person)
    nonmated_rows: np.ndarray
    nonmated_top: np.ndarray
    extra: dict[str, object] = field(default_factory=dict)

    def matched(self, threshold: float) -> np.ndarray:
        """Per mated probe: identified (right person first, at or above the threshold)."""
        return self.mated_correct & (self.mated_top >= threshold)


def _top1(probes: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per probe: the index of its top gallery row and that score, a block of probes at a time."""
    block = max(1, BLOCK_ENTRIES // max(1, len(gallery)))
    idx = np.empty(len(probes), np.int64)
    top = np.empty(len(probes), np.float64)
    for s in range(0, len(probes), block):
        scores = probes[s:s + block] @ gallery.T
        idx[s:s + block] = np.argmax(scores, axis=1)  # ties: the first gallery row, deterministically
        top[s:s + block] = scores[np.arange(len(scores)), idx[s:s + block]]
    return idx, top


def search(split: Split, unit_by_row: dict[int, np.ndarray], gallery_unit: np.ndarray,
           identity: np.ndarray) -> Searches:
    """Search every simulated probe of the split (unit_by_row: photo index -> unit embedding)
    in the gallery (gallery_unit: one row per enrolled person, split.gallery_rows order)."""
    mated = np.array([r for r in split.mated_rows.tolist() if r in unit_by_row], np.int64)
    nonmated = np.array([r for r in split.nonmated_rows.tolist() if r in unit_by_row], np.int64)
    dim = gallery_unit.shape[1]
    m_vec = np.stack([unit_by_row[r] for r in mated.tolist()]) if len(mated) else np.zeros((0, dim))
    n_vec = np.stack([unit_by_row[r] for r in nonmated.tolist()]) if len(nonmated) else np.zeros((0, dim))
    m_idx, m_top = _top1(m_vec, gallery_unit)
    _, n_top = _top1(n_vec, gallery_unit)
    own = {int(c): i for i, c in enumerate(split.gallery_identity.tolist())}
    own_rows = np.array([own[int(identity[r])] for r in mated.tolist()], np.int64)
    own_score = np.einsum("ij,ij->i", m_vec, gallery_unit[own_rows]) if len(mated) else np.empty(0)
    correct = split.gallery_identity[m_idx] == identity[mated] if len(mated) else np.empty(0, bool)
    return Searches(mated, correct.astype(bool), own_score, m_top, nonmated, n_top)


def _rate(successes: int, n: int) -> tuple[float, float, float]:
    low, high = wilson_interval(successes, n)
    return (successes / n if n else math.nan), low, high


def identification_row(model: str, backend: str, distance: float, face_px: float, s: Searches,
                       threshold: float) -> dict[str, object]:
    n_m, n_n = len(s.mated_rows), len(s.nonmated_rows)
    rank1 = _rate(int(s.mated_correct.sum()), n_m)
    tpir = _rate(int(s.matched(threshold).sum()), n_m)
    fpir = _rate(int(np.count_nonzero(s.nonmated_top >= threshold)), n_n)
    return {"model": model, "backend": backend, "distance_m": distance, "face_px": face_px, "n_mated": n_m,
            "n_nonmated": n_n, "threshold": threshold, "rank1": rank1[0], "rank1_ci_low": rank1[1],
            "rank1_ci_high": rank1[2], "tpir": tpir[0], "tpir_ci_low": tpir[1], "tpir_ci_high": tpir[2],
            "fpir": fpir[0], "fpir_ci_low": fpir[1], "fpir_ci_high": fpir[2],
            "mated_score_mean": float(s.mated_score.mean()) if n_m else math.nan,
            "nonmated_top_mean": float(s.nonmated_top.mean()) if n_n else math.nan}


def identification_table(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Rows ordered like the sweep table: backends in order of first appearance, distances ascending."""
    order = {b: i for i, b in enumerate(dict.fromkeys(str(r["backend"]) for r in rows))}
    rows = sorted(rows, key=lambda r: (order[str(r["backend"])], as_float(r["distance_m"])))
    table = pd.DataFrame(rows, columns=list(IDENTIFICATION_COLUMNS))
    for col in ("n_mated", "n_nonmated"):
        table[col] = table[col].astype(np.int64)
    return table


def as_rates_view(sweep: pd.DataFrame, identification: pd.DataFrame) -> pd.DataFrame:
    """The sweep table with its match rates replaced by identification's (TPIR for TAR, FPIR
    for FAR, mated / non-mated counts for genuine / impostor): what the cliff, the
    recommendation and the TUI read when a run's protocol is identification. The cosine and
    pre-norm columns stay the verification ones (the degenerate check reads them)."""
    view = sweep.copy()
    ident = identification.set_index(["backend", "distance_m"])
    key = pd.MultiIndex.from_frame(view[["backend", "distance_m"]])
    for target, source in (("tar", "tpir"), ("tar_ci_low", "tpir_ci_low"), ("tar_ci_high", "tpir_ci_high"),
                           ("far", "fpir"), ("far_ci_low", "fpir_ci_low"), ("far_ci_high", "fpir_ci_high"),
                           ("threshold", "threshold"), ("n_genuine", "n_mated"), ("n_impostor", "n_nonmated")):
        view[target] = ident[source].reindex(key).to_numpy()
    for col in ("n_genuine", "n_impostor"):
        view[col] = view[col].fillna(0).astype(np.int64)
    return view

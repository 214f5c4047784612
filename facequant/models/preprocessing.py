"""Which preprocessing a model really wants, checked on data rather than guessed.

A wrong preprocessing looks exactly like a quantization collapse, so before a sweep (and in
`facequant models check`) the float model embeds close-range aligned crops of a seeded subset
of photos under each candidate (RGB / BGR x raw 0..255, x / 255, (x - 127.5) / 127.5,
(x - 127.5) / 128, Caffe means, ImageNet mean / std, and the spec inferred from the graph), and
each is scored by verification AUC of cosine on genuine vs impostor pairs
(sklearn.metrics.roc_auc_score). `auto` keeps the inferred spec unless a candidate beats it
by more than the noise of the AUC; a spec the user gave is kept, with a warning when it
scores clearly worse than the best. Scores are cached by (model hash, data hash).

The scoring (`score_embeddings`), the candidate table (`candidates`) and the choice (`choose`)
are pure functions; `check_faces` runs the model.

This module holds the candidates, the scoring and the choice (pure functions);
facequant.analysis.preprocessing_check runs the model on crops, caches the scores, and
checks a sweep."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facequant.errors import FacequantError
from facequant.models.channels import Channels, format_channels
from facequant.values import as_float

if TYPE_CHECKING:
    from facequant.models.spec import ModelSpec

#: Bump when scoring changes: cached scores of older code are not reused. 2: exact scores.
CHECK_VERSION = 2
#: Photos the check embeds per candidate (identity-stratified, seeded): cheap, and enough
#: pairs for a broken preprocessing (AUC 0.5-0.8 on the shared models) to stand far apart
#: from a working one (0.99-1.0).
CHECK_PHOTOS = 32
#: Fewer pairs than this of either kind and AUCs are noise: nothing is checked.
MIN_PAIRS = 10
#: AUCs this close are a tie: auto keeps the inferred spec unless a candidate beats it by more
#: than this or than the best AUC's standard error, whichever is larger (a small set cannot
#: tell 0.82 from 0.83). Measured on celebs13: the right preprocessing and its near variants
#: differ by <= 0.001 (faceplugin 1.0000 for 127/128, 127.5/127.5, x/255 in either order).
AUC_TIE = 0.002
#: A given spec this far below the best (or two standard errors, if more) gets a warning:
#: (x - 127.5) / 127.5 on hse-faceres is 0.48 below, a second normalization on
#: human-mobileface 0.23; mobileface's BGR (which "also works, less well") is not warned about.
AUC_CLEARLY_WORSE = 0.01
#: Best AUC below this: no candidate works (a healthy face model scores > 0.99 here).
AUC_BROKEN = 0.9
#: Output norm with a coefficient of variation below this is constant across faces (healthy
#: pre-norms vary by 8-15 %: the cliff module's degenerate rule uses the same 0.01).
CONSTANT_NORM_CV = 0.01

AUTO = "auto"
INFERRED = "inferred"  # the spec read from the graph (and --model-override)

_CAFFE_BGR = (103.939, 116.779, 123.68)
_IMAGENET_RGB_MEAN = (123.675, 116.28, 103.53)
_IMAGENET_RGB_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Preprocessing:
    """(pixel - mean) / std on channels in channel_order; per-channel values in that order."""

    name: str
    channel_order: str
    mean: Channels
    std: Channels

    @property
    def key(self) -> str:
        """Identity of the arithmetic (names may change, scores stay cached)."""
        return f"{self.channel_order}|{format_channels(self.mean)}|{format_channels(self.std)}"

    def describe(self) -> str:
        return f"{self.channel_order}, (pixel - {format_channels(self.mean)}) / {format_channels(self.std)}"

    def apply(self, spec: ModelSpec) -> ModelSpec:
        return dataclasses.replace(
            spec, mean=self.mean, std=self.std, channel_order=self.channel_order
        )

    @classmethod
    def of(cls, name: str, spec: ModelSpec) -> Preprocessing:
        return cls(name, spec.channel_order, spec.mean, spec.std)


def _reordered(value: Channels, order: str) -> Channels:
    """Per-channel values given in RGB order, in the model's channel order."""
    return (
        value if order == "RGB" or not isinstance(value, tuple) else (value[2], value[1], value[0])
    )


def candidates(inferred: Preprocessing | None = None) -> list[Preprocessing]:
    """The candidate table: the inferred spec first (ties go to it), then RGB / BGR x the six
    conventions; a convention equal to an earlier one (same arithmetic) is left out."""
    caffe_rgb = (_CAFFE_BGR[2], _CAFFE_BGR[1], _CAFFE_BGR[0])
    table: list[Preprocessing] = [] if inferred is None else [inferred]
    for order in ("RGB", "BGR"):
        low = order.lower()
        table += [
            Preprocessing(f"{low}-raw", order, 0.0, 1.0),
            Preprocessing(f"{low}-div255", order, 0.0, 255.0),
            Preprocessing(f"{low}-sym127.5", order, 127.5, 127.5),
            Preprocessing(f"{low}-sym128", order, 127.5, 128.0),
            Preprocessing(f"{low}-caffe", order, _reordered(caffe_rgb, order), 1.0),
            Preprocessing(
                f"{low}-imagenet",
                order,
                _reordered(_IMAGENET_RGB_MEAN, order),
                _reordered(_IMAGENET_RGB_STD, order),
            ),
        ]
    seen: set[str] = set()
    unique = []
    for c in table:
        if c.key not in seen:
            seen.add(c.key)
            unique.append(c)
    return unique


def candidate_names() -> list[str]:
    """What --preprocessing takes besides auto and inferred."""
    return [c.name for c in candidates()]


def preprocessing_choices() -> list[str]:
    """Every value --preprocessing takes."""
    return [AUTO, INFERRED, *candidate_names()]


def check_mode(mode: str, overrides: Mapping[str, object] | None) -> None:
    """FacequantError unless `mode` is a --preprocessing value that agrees with the overrides."""
    if mode not in preprocessing_choices():
        raise FacequantError(
            f"--preprocessing {mode}: unknown; choose {', '.join(preprocessing_choices())}"
        )
    if mode != AUTO and {"mean", "std", "channel_order"} & set(overrides or {}):
        raise FacequantError(
            f"--preprocessing {mode}: conflicts with --model-override of mean, std or "
            "channel_order (give one or the other)"
        )


@dataclass(frozen=True)
class Score:
    """How well one preprocessing separates genuine from impostor pairs."""

    auc: float  # NaN when the embeddings are not finite
    genuine_cos: float
    impostor_cos: float
    prenorm_mean: float
    prenorm_cv: float  # std / mean of the output norm across faces

    def to_dict(self, digits: int | None = 6) -> dict[str, float | None]:
        """JSON-ready (NaN as null); rounded for run.json, exact (digits=None) for the cache, so
        a cached verdict is the computed one."""
        return {
            k: (None if math.isnan(v) else v if digits is None else round(v, digits))
            for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Score:
        return cls(
            **{
                f.name: math.nan if d.get(f.name) is None else as_float(d[f.name])
                for f in dataclasses.fields(cls)
            }
        )


def pairs(identities: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair (i < j) of photos and whether it is genuine."""
    ids = np.asarray(identities, dtype=object)
    i, j = np.triu_indices(len(ids), 1)
    return i, j, ids[i] == ids[j]


def score_embeddings(embeddings: np.ndarray, identities: Sequence[str]) -> Score:
    """Verification AUC of cosine similarity over every pair of photos (pure)."""
    from sklearn.metrics import roc_auc_score

    x = np.asarray(embeddings, dtype=np.float64)
    i, j, genuine = pairs(identities)
    if not np.all(np.isfinite(x)):
        return Score(math.nan, math.nan, math.nan, math.nan, math.nan)
    norm = np.linalg.norm(x, axis=1)
    # A zero embedding has no direction: cosine 0 with anything, as in the sweep.
    unit = np.where(norm[:, None] > 0, x / np.maximum(norm[:, None], 1e-30), 0.0)
    cos = np.sum(unit[i] * unit[j], axis=1)
    if genuine.all() or not genuine.any():
        raise ValueError("scoring needs genuine and impostor pairs")
    mean = float(norm.mean())
    return Score(
        auc=float(roc_auc_score(genuine, cos)),
        genuine_cos=float(cos[genuine].mean()),
        impostor_cos=float(cos[~genuine].mean()),
        prenorm_mean=mean,
        prenorm_cv=float(norm.std() / mean) if mean > 0 else math.nan,
    )


def check_subset(identities: Sequence[str], n: int = CHECK_PHOTOS, seed: int = 0) -> list[int]:
    """Indices of a seeded, identity-stratified subset of at most n photos: one photo of each
    identity in turn (seeded orders), so that every identity with several photos gives
    genuine pairs before any gives many."""
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[int]] = {}
    for index, identity in enumerate(identities):
        by_identity.setdefault(identity, []).append(index)
    names = sorted(by_identity)
    queues = [list(rng.permutation(by_identity[name])) for name in names]
    turn = [names.index(name) for name in rng.permutation(names)]
    chosen: list[int] = []
    while len(chosen) < n and any(queues):
        for q in turn:
            if queues[q] and len(chosen) < n:
                chosen.append(int(queues[q].pop(0)))
    return sorted(chosen)


# --------------------------------------------------------------------------- the choice


@dataclass
class Verdict:
    """The preprocessing a sweep uses, why, and every candidate's score (run.json)."""

    mode: str  # "auto", "given" (--model-override), or a candidate name (--preprocessing)
    chosen: Preprocessing
    reason: str  # one sentence: why this one
    candidates: list[Preprocessing] = field(default_factory=list)
    scores: dict[str, Score] = field(default_factory=dict)  # by candidate name
    best: str | None = None
    warnings: list[str] = field(default_factory=list)
    n_photos: int = 0
    n_genuine: int = 0
    n_impostor: int = 0
    seconds: float = 0.0  # spent scoring in this run (0 when every score came from the cache)
    cached: bool = False
    inferred_from: str = ""  # why the graph's spec is what it is

    @property
    def checked(self) -> bool:
        return bool(self.scores)

    def auc(self, name: str) -> float:
        score = self.scores.get(name)
        return score.auc if score is not None else math.nan

    def summary(self) -> str:
        """The summary line."""
        what = f"{self.chosen.name} = {self.chosen.describe()}"
        if not self.checked:
            return f"preprocessing: {what} ({self.reason})"
        cost = "cached" if self.cached else f"{self.seconds:.1f} s"
        return (
            f"preprocessing: {what}, {self.reason} (verification AUC on {self.n_genuine} genuine / "
            f"{self.n_impostor} impostor close-range pairs of {self.n_photos} photos, "
            f"{len(self.scores)} candidates, {cost})"
        )

    def phrase(self) -> str:
        """What a degenerate float reference's message names: the check's verdict."""
        if not self.checked:
            return f"preprocessing {self.chosen.describe()}, not checked on data ({self.reason})"
        best = self.best or self.chosen.name
        text = f"preprocessing {self.chosen.name} ({self.chosen.describe()}), AUC {self.auc(self.chosen.name):.3f}"
        if best != self.chosen.name:
            text += f"; the best candidate, {best}, scores {self.auc(best):.3f}"
        elif self.auc(best) < AUC_BROKEN:
            text += ", the best of every candidate: no preprocessing tried makes this model work"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "chosen": self.chosen.name,
            "channel_order": self.chosen.channel_order,
            "mean": _json(self.chosen.mean),
            "std": _json(self.chosen.std),
            "formula": "(pixel - mean) / std",
            "reason": self.reason,
            "inferred_from": self.inferred_from,
            "best": self.best,
            "checked": self.checked,
            "photos": self.n_photos,
            "genuine_pairs": self.n_genuine,
            "impostor_pairs": self.n_impostor,
            "seconds": round(self.seconds, 3),
            "cached": self.cached,
            "candidates": [
                {
                    "name": c.name,
                    "channel_order": c.channel_order,
                    "mean": _json(c.mean),
                    "std": _json(c.std),
                    **(self.scores[c.name].to_dict() if c.name in self.scores else {}),
                }
                for c in self.candidates
            ],
            "warnings": list(self.warnings),
        }


def _json(value: Channels) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


def auc_standard_error(auc: float, n_genuine: int, n_impostor: int) -> float:
    """Hanley & McNeil's (1982) standard error of an AUC from its value and the two counts."""
    if not (n_genuine and n_impostor) or math.isnan(auc):
        return math.nan
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = auc * (1 - auc) + (n_genuine - 1) * (q1 - auc * auc) + (n_impostor - 1) * (q2 - auc * auc)
    return math.sqrt(max(var, 0.0) / (n_genuine * n_impostor))


def best_candidate(table: Sequence[Preprocessing], scores: Mapping[str, Score]) -> str | None:
    """The highest AUC (earlier candidates win exact ties); None when nothing scored."""
    finite = [c.name for c in table if c.name in scores and not math.isnan(scores[c.name].auc)]
    return max(finite, key=lambda n: scores[n].auc) if finite else None


def choose(
    table: Sequence[Preprocessing],
    scores: Mapping[str, Score],
    mode: str,
    given: str | None = None,
    se: float = 0.0,
) -> tuple[str, str, list[str]]:
    """(chosen candidate name, reason, warnings), pure. table[0] is the inferred spec; `se`
    the standard error of the best AUC (auc_standard_error), 0 when unknown.

    auto: the inferred spec unless some candidate's AUC is more than max(AUC_TIE, se) above
    it (then the best). Otherwise `given` (a --model-override spec or a --preprocessing name)
    is kept, with a warning when its AUC is more than max(AUC_CLEARLY_WORSE, 2 se) below the
    best."""
    inferred = table[0].name
    best = best_candidate(table, scores)
    if best is None:
        keep = given or inferred
        return keep, "not checked on data", []
    warnings: list[str] = []
    b = scores[best].auc
    se = 0.0 if math.isnan(se) else se
    if b < AUC_BROKEN:
        warnings.append(
            f"no candidate preprocessing makes the model separate faces: the best, {best}, scores "
            f"verification AUC {b:.3f} on close-range pairs (a healthy face model scores > 0.99): "
            "a broken model, faces cropped unlike its training (alignment, --crop-margin), or a "
            "preprocessing none of the candidates covers"
        )
    if mode == AUTO:
        a = scores[inferred].auc if inferred in scores else math.nan
        if not math.isnan(a) and a >= b - max(AUC_TIE, se):
            why = "the graph's spec" + (
                ", the best" if best == inferred else f", as good as the best ({best}, {b:.4f})"
            )
            return inferred, f"chosen by the check: {why}, AUC {a:.4f}", warnings
        return (
            best,
            f"chosen by the check: the best, AUC {b:.4f} (the graph's spec: {a:.4f})",
            warnings,
        )
    assert given is not None
    g = scores[given].auc if given in scores else math.nan
    label = "--model-override" if mode == "given" else f"--preprocessing {given}"
    if not g >= b - max(
        AUC_CLEARLY_WORSE, 2 * se
    ):  # `not >=`: a NaN AUC (non-finite output) is worse too
        c = next(c for c in table if c.name == given)
        warnings.append(
            f"preprocessing: the given {c.describe()} ({label}) scores verification AUC {g:.3f} on "
            f"close-range pairs, clearly below {best}'s {b:.3f} "
            f"({next(c for c in table if c.name == best).describe()}); kept as given"
        )
    return given, f"as given ({label}), AUC {g:.4f}", warnings

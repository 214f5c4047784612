"""Statistical honesty: what a run's data can support, and which of its photos are suspect.

Pure functions over the sweep's tables and embeddings. The sweep writes what they find into
run.json (``threshold.min_resolvable_far``, ``duplicates``, ``pairs``) and every finding a
reader must see as a sentence into run.json's ``warnings`` list, which the summary and the TUI
print. Any part of a run adds its own warnings there (``add_warning``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from facequant.evaluate import metrics
from facequant.evaluate.scoring import threshold_from_top

#: The rule of three: with 0 false accepts in n impostors, FAR < 3 / n at 95 % confidence
#: (exactly -ln(0.05) / n = 2.996 / n). A target FAR below 3 / n cannot be resolved.
RULE_OF_THREE = 3.0

#: A TAR is known within +-TAR_HALF_WIDTH (95 %) whatever its value once n_genuine >=
#: MIN_GENUINE: z^2 / (4 h^2), the binomial's worst case at TAR 0.5. 0.1 is the gap between the
#: reliable bar (90 % of close TAR) and the close TAR itself, so less cannot place a distance.
TAR_HALF_WIDTH = 0.1
MIN_GENUINE = math.ceil(metrics.Z_95**2 / (4 * TAR_HALF_WIDTH**2))  # 97

#: Two photos whose close-range fp32 embeddings have cosine >= this are the same image. Measured
#: on celebs13 with the shared MobileFaceNet (enrolment embeddings, native resolution): the
#: highest impostor cosine is 0.44, the highest between two different photos of one person
#: 0.90; a photo re-saved as JPEG 70-90 or shrunk to 0.5-0.8x scores 0.9915-0.9999 against
#: its original. 0.98 sits 0.08 above any two different photos and below every copy measured.
DUPLICATE_COSINE = 0.98

#: Below this pre-norm an embedding is all zero: it has no direction (sweep._Embeddings
#: gives it a zero unit vector, so its cosine is 0 and it matches nothing).
ZERO_NORM = 1e-12

#: At most this many duplicate pairs are spelled out in the warnings (run.json lists all).
MAX_LISTED = 5


def add_warning(run: dict[str, object], message: str) -> None:
    """Append one warning to run.json's ``warnings`` (the one list every warning goes to);
    an empty message (a check that found nothing) is not one."""
    warnings = run.setdefault("warnings", [])
    assert isinstance(warnings, list)
    if message and message not in warnings:
        warnings.append(message)


def min_resolvable_far(n_impostor: int) -> float:
    """The smallest FAR n_impostor comparisons can vouch for at 95 % (rule of three)."""
    return RULE_OF_THREE / n_impostor if n_impostor > 0 else math.inf


def far_resolution(n_impostor: int, target_far: float) -> dict[str, object]:
    """run.json's threshold fields: the impostor count, the FAR it resolves, and whether that
    reaches the target FAR."""
    floor = min_resolvable_far(n_impostor)
    return {"n_impostor": int(n_impostor), "min_resolvable_far": floor, "far_resolved": bool(target_far >= floor)}


def distinct(value: float, other: float) -> str:
    """value with just enough significant digits that it does not print as `other` (3 / 2998 is
    0.0010007, not "0.001" beside a target of 0.001)."""
    for digits in range(2, 8):
        text = f"{value:.{digits}g}"
        if text != f"{other:.{digits}g}" or value == other:
            return text
    return f"{value:.8g}"


def far_resolution_warning(threshold: float, target_far: float, n_impostor: int, distance_m: float,
                           given: bool = False, rate: str = "FAR", what: str = "fp32 impostor comparisons",
                           remedy: str = "", score: str = "impostor score") -> str:
    """Why a threshold set at target_far is not what it claims, or (given threshold) why the
    FAR columns cannot show it meets target_far ("" when the impostors resolve target_far).
    rate, what, score: the words of the protocol (identification: FPIR, non-mated probes)."""
    floor = min_resolvable_far(n_impostor)
    if target_far >= floor:
        return ""
    floor_text = distinct(floor, target_far)
    resolve = (f"{n_impostor} {what} at {distance_m:g} m, which resolve {rate} only down to ~{floor_text} "
               f"(rule of three, 95 %), above the target {target_far:g}")
    need = math.ceil(RULE_OF_THREE / target_far)
    remedy = remedy or f"use a set with >= {need} {what.removeprefix('fp32 ')}"
    if given:
        return (f"{rate} is measured on {resolve}: the {rate} columns cannot show whether threshold "
                f"{threshold:.3f} meets {rate} {target_far:g} (a {rate} of 0 means below ~{floor_text}); {remedy}")
    k = math.floor(target_far * n_impostor + 1e-9)  # impostors the target lets through
    nth = {1: "", 2: "2nd-", 3: "3rd-"}.get(k + 1, f"{k + 1}th-")
    where = f"just above the {nth}largest {score}"
    return (f"threshold {threshold:.3f} is set at {rate} {target_far:g} on {resolve}: it sits {where}, so its "
            f"real {rate} is known only to be below ~{floor_text}, not below {target_far:g}; give --threshold, "
            f"or {remedy}")


def identification_findings(info: dict[str, object], n_nonmated: int | None, target_fpir: float, protocol: str,
                            threshold_set: float | None, distance_m: float) -> str:
    """run.json's identification resolution (recorded always) and the warning to give: why
    identification was not measured, or (when it is what the run reads and its threshold was set
    here) that its non-mated probes cannot resolve the target FPIR; "" when there is nothing to say."""
    if n_nonmated is None:
        return ("identification not measured: it needs at least two people and a second photo of someone enrolled"
                + ("" if protocol == "verification" else "; the cliff and the recommendation read verification"))
    floor = min_resolvable_far(n_nonmated)
    info.update({"n_nonmated_at_closest": n_nonmated, "min_resolvable_fpir": floor,
                 "fpir_resolved": target_fpir >= floor})
    if target_fpir >= floor or threshold_set is None or protocol != "identification":
        return ""
    return "identification " + far_resolution_warning(
        threshold_set, target_fpir, n_nonmated, distance_m, rate="FPIR", what="fp32 non-mated probes",
        score="non-mated top score", remedy="use more people, or leave more of them out (--nonmated-fraction)")


#: A float reference below either bar is weak: every verdict is relative to it. A face model
#: on full-resolution faces misses fewer than 1 genuine pair in 10 at FAR 1e-3 and ranks a
#: genuine pair above an impostor pair 99.9 % of the time; the shared MobileFaceNet reaches
#: TAR 0.993 and AUC 1.000 on celebs13.
WEAK_TAR = 0.9
WEAK_AUC = 0.99


def reference_quality(tar_close: float, auc_close: float, broken: bool = False) -> dict[str, object]:
    """run.json's `reference`: fp32's close-range TAR (at the run's threshold) and ROC AUC
    (threshold-free), the bars, and the warning when either is below its bar ("" otherwise, and
    when fp32 is degenerate: a broken reference is said already, and louder)."""
    weak = []
    if math.isfinite(tar_close) and tar_close < WEAK_TAR:
        weak.append(f"TAR {tar_close:.3f}, below {WEAK_TAR:g}")
    if math.isfinite(auc_close) and auc_close < WEAK_AUC:
        weak.append(f"AUC {auc_close:.4f}, below {WEAK_AUC:g}")
    warning = ""
    if weak and not broken:
        other = "" if len(weak) == 2 else (f" (AUC {auc_close:.4f})" if "TAR" in weak[0] else f" (TAR {tar_close:.3f})")
        warning = (f"weak float reference: fp32 at the closest distance has {' and '.join(weak)}{other}, so every "
                   "distance and verdict here is relative to a model that already misses faces it sees in full; "
                   "check its preprocessing (facequant models check) and the photos before reading the rest")
    return {"tar_close": tar_close, "auc_close": auc_close, "weak_tar_below": WEAK_TAR, "weak_auc_below": WEAK_AUC,
            "weak": bool(weak), "warning": warning}


def thin_tar_warning(sweep: pd.DataFrame) -> str:
    """The distances whose TAR rests on too few genuine comparisons to place the reliable and
    cliff distances ("" when every distance has enough). n_genuine is the same for every
    backend at a distance (they see the same probes), so the first backend's rows speak for all."""
    if sweep.empty:
        return ""
    first = sweep.loc[sweep["backend"] == sweep["backend"].iloc[0]].sort_values("distance_m")
    thin = first.loc[first["n_genuine"] < MIN_GENUINE]
    if thin.empty:
        return ""
    counts = sorted({int(n) for n in thin["n_genuine"]})
    at = ", ".join(f"{d:g}" for d in thin["distance_m"])
    n_text = f"{counts[0]} to {counts[-1]}" if len(counts) > 1 else str(counts[0])
    widest = float((thin["tar_ci_high"] - thin["tar_ci_low"]).max()) if thin["n_genuine"].gt(0).any() else 1.0
    return (f"TAR rests on {n_text} genuine comparisons at {at} m (about {MIN_GENUINE} are needed to know a TAR "
            f"within +-{TAR_HALF_WIDTH:g} at 95 %; 95 % intervals up to {widest:.2f} wide here): the close-range TAR "
            "and the reliable and cliff distances are not resolved; add photos per person")


def far_excess_warning(sweep: pd.DataFrame, backend: str, target_far: float) -> str:
    """A backend whose FAR exceeds 3x the target somewhere, with the count behind it, and
    whether that count can tell ("" if its FAR never exceeds it)."""
    rows = sweep.loc[(sweep["backend"] == backend) & (sweep["far"] > 3 * target_far)]
    if rows.empty:
        return ""
    worst = rows.loc[rows["far"].idxmax()]
    n = int(worst["n_impostor"])
    k = int(round(float(worst["far"]) * n))
    said = (f"{backend}: FAR {worst['far']:.4f} ({k} of {n} impostors) at {worst['distance_m']:g} m is above 3x the "
            f"target {target_far:g}")
    low, high = metrics.wilson_interval(k, n)
    if low <= 3 * target_far:
        return f"{said}, but {n} impostors cannot tell (95 % interval {low:.2g}-{high:.2g})"
    return f"{said} (see sweep.csv): its longer reach is bought with false accepts"


def find_duplicates(keys: Sequence[str], identities: Sequence[str], digests: Sequence[str],
                    unit: np.ndarray | None, cosine_min: float = DUPLICATE_COSINE,
                    block: int = 1024) -> list[dict[str, object]]:
    """Pairs of photos that are the same image: identical bytes (sha256) or close-range fp32
    unit embeddings with cosine >= cosine_min (unit None: bytes only). One dict per pair (a
    before b in `keys` order) with both keys and identities, same_identity, how it was found
    and the embeddings' cosine (None without embeddings)."""
    found: dict[tuple[int, int], str] = {}
    first: dict[str, int] = {}
    for j, digest in enumerate(digests):
        if digest in first:
            found[(first[digest], j)] = "identical file (sha256)"
        first.setdefault(digest, j)
    vectors = np.zeros((len(keys), 0), np.float32) if unit is None else np.asarray(unit, np.float32)
    for start in range(0, len(keys) if unit is not None else 0, block):  # blocks: a full matrix may not fit
        cos = vectors[start:start + block] @ vectors.T
        for i, j in zip(*np.nonzero(cos >= cosine_min), strict=True):
            a, b = start + int(i), int(j)
            if a < b:
                found.setdefault((a, b), "near-identical embedding")
    out = []
    for (a, b), how in sorted(found.items()):
        out.append({"a": keys[a], "b": keys[b], "identity_a": identities[a], "identity_b": identities[b],
                    "same_identity": identities[a] == identities[b], "how": how,
                    "cosine": None if unit is None else round(float(vectors[a] @ vectors[b]), 4)})
    return out


def duplicate_warnings(duplicates: list[dict[str, object]], threshold_effect: str = "") -> list[str]:
    """One warning per duplicate pair (the first MAX_LISTED), then the rest counted, then how
    far the impostor duplicates moved the threshold."""
    out = []
    for d in duplicates[:MAX_LISTED]:
        how = str(d["how"]) if d["cosine"] is None else f"{d['how']}, cosine {d['cosine']:.3f}"
        if d["same_identity"]:
            out.append(f"photos {d['a']} and {d['b']} (both under '{d['identity_a']}') are the same image ({how}): "
                       "their genuine comparisons match trivially and inflate TAR")
        else:
            out.append(f"photo {d['a']} under '{d['identity_a']}' and {d['b']} under '{d['identity_b']}' are the same "
                       f"image ({how}): impostor scores include it, and the copy's comparisons with its person's "
                       "other photos")
    if len(duplicates) > MAX_LISTED:
        out.append(f"{len(duplicates) - MAX_LISTED} more duplicate photo pairs (run.json: duplicates)")
    if threshold_effect:
        out.append(threshold_effect)
    return out


def duplicate_comparisons(duplicates: list[dict[str, object]], keys: Sequence[str]) -> set[tuple[int, int]]:
    """The (probe, gallery) photo-index pairs of duplicates across identities, both ways."""
    index = {k: i for i, k in enumerate(keys)}
    out: set[tuple[int, int]] = set()
    for d in duplicates:
        if not d["same_identity"]:
            a, b = index[str(d["a"])], index[str(d["b"])]
            out |= {(a, b), (b, a)}
    return out


def duplicate_threshold_effect(top_desc: np.ndarray, top_pairs: np.ndarray, n_impostor: int,
                               duplicate_pairs: set[tuple[int, int]], n_duplicate_comparisons: int, threshold: float,
                               target_far: float) -> tuple[str, float | None]:
    """How far duplicate pairs across identities pushed a FAR-set threshold, from the largest
    fp32 close-range impostor scores (top_desc, with their (probe, gallery) pairs; they must
    hold every duplicate comparison and `allowed + 1` more): (warning, threshold without them);
    ("", None) when none of them is an impostor comparison here."""
    is_dup = np.array([(int(p), int(g)) in duplicate_pairs for p, g in top_pairs], dtype=bool)
    n_dup = int(is_dup.sum())
    if not n_dup or n_dup >= n_impostor:
        return "", None
    without = threshold_from_top(top_desc[~is_dup], n_impostor - n_duplicate_comparisons, target_far)
    return (f"the threshold at FAR {target_far:g} is pushed to {threshold:.3f} by {n_dup} impostor "
            f"comparison(s) of duplicate photos ({without:.3f} without them); the pairs stay in (label noise is "
            "the data's to fix): move or remove the copies, or give --threshold"), without


def zero_embedding_warnings(probes: pd.DataFrame, gallery_prenorms: dict[str, np.ndarray], floor: float) -> list[str]:
    """Per backend, the embeddings at any distance (and in its gallery) that are all zero
    (cosine undefined: written as 0, never NaN, so a non-match) or whose pre-norm is below
    floor (a direction no float16 or fixed-point output keeps). Said for every distance: the
    degenerate flag looks at the closest only."""
    out = []
    sim = probes.loc[probes["simulated"].astype(bool)]
    for backend, rows in sim.groupby("backend", sort=False):
        gallery = gallery_prenorms.get(str(backend), np.zeros(0))
        for low, high, what in ((-1.0, ZERO_NORM, "are all-zero embeddings: cosine is undefined, written as 0 and "
                                 "counted as non-matches"),
                                (ZERO_NORM, floor, f"have a near-zero pre-norm (< {floor:g}): a direction no float16 "
                                 "or fixed-point output would keep")):
            hit = rows.loc[(rows["prenorm"] >= low) & (rows["prenorm"] < high)]
            n_gallery = int(np.sum((gallery >= low) & (gallery < high)))
            if hit.empty and not n_gallery:
                continue
            at = ", ".join(f"{d:g}" for d in sorted(hit["distance_m"].unique()))
            parts = [f"{len(hit)} of {len(rows)} probes" + (f" (at {at} m)" if at else "")]
            if n_gallery:
                parts.append(f"{n_gallery} of {gallery.size} enrolled photos")
            out.append(f"{backend}: {' and '.join(parts)} {what}")
    return out

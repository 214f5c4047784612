"""Running the preprocessing check: embedding crops under each candidate, caching the scores by
(model hash, data hash), checking a sweep's photos (check_for_sweep) and what run.json and the
summary say of it."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facequant import cache as cache_entry
from facequant import settings
from facequant.errors import FacequantError
from facequant.models.spec import ModelSpec, channel_values

if TYPE_CHECKING:
    from facequant.faces.pipeline import AlignedFace

from facequant.models.preprocessing import (
    AUTO,
    CHECK_PHOTOS,
    CHECK_VERSION,
    CONSTANT_NORM_CV,
    INFERRED,
    MIN_PAIRS,
    Preprocessing,
    Score,
    Verdict,
    auc_standard_error,
    best_candidate,
    candidates,
    check_subset,
    choose,
    pairs,
    preprocessing_choices,
    score_embeddings,
)

# --------------------------------------------------------------------------- running it


def _embed_all(
    model: Path, spec: ModelSpec, crops: np.ndarray, table: Sequence[Preprocessing], batch_size: int
) -> dict[str, np.ndarray]:
    """Raw float embeddings of the crops under each candidate, one ORT session for all."""
    import onnxruntime as ort

    from facequant.backends.base import preprocess, session_options

    try:
        session = ort.InferenceSession(
            str(model), session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise FacequantError(f"{model}: ONNX Runtime cannot load it ({exc})") from exc
    out: dict[str, np.ndarray] = {}
    for c in table:
        x = preprocess(crops, c.apply(spec))
        rows = [
            session.run([spec.output_name], {spec.input_name: x[i : i + batch_size]})[0]
            for i in range(0, len(x), batch_size)
        ]
        out[c.name] = np.concatenate(rows).reshape(len(x), -1)
    return out


def data_sha256(crops: np.ndarray, identities: Sequence[str]) -> str:
    """Identity of the check's data: the crops the model sees and who is in each."""
    h = hashlib.sha256(repr((crops.shape, list(identities))).encode())
    h.update(np.ascontiguousarray(crops).tobytes())
    return h.hexdigest()


def _cache_file(model_sha: str, data_sha: str) -> Path:
    # The version in the name: entries of older code are left alone, never "rebuilt" with a warning.
    return (
        settings.cache_dir()
        / "preprocessing"
        / f"{model_sha[:24]}-{data_sha[:24]}.v{CHECK_VERSION}.json"
    )


def _cached_scores(path: Path, key: Mapping[str, object]) -> tuple[dict[str, Score], float]:
    """Scores by Preprocessing.key and the seconds they first took; empty when not cached."""
    if not cache_entry.verified(path, key, "preprocessing check"):
        return {}, 0.0
    try:
        d = json.loads(path.read_text())
        return {k: Score.from_dict(v) for k, v in d["scores"].items()}, float(d.get("seconds", 0.0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, 0.0


def _store_scores(
    path: Path, key: Mapping[str, object], scores: Mapping[str, Score], seconds: float
) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(
                {"scores": {k: s.to_dict(None) for k, s in scores.items()}, "seconds": seconds},
                fh,
                indent=1,
            )
        cache_entry.commit(Path(tmp), path, key)
    except OSError:
        pass  # a read-only cache only costs time


def check_crops(
    model: Path,
    spec: ModelSpec,
    model_sha: str,
    crops: np.ndarray,
    identities: Sequence[str],
    inferred: Preprocessing,
    mode: str = AUTO,
    given: Preprocessing | None = None,
    inferred_from: str = "",
    batch_size: int = 64,
) -> Verdict:
    """Score every candidate (and the given spec) on these close-range crops with the float
    model (a normalized copy: any batch), and choose. mode: auto, or a candidate name
    (--preprocessing); `given`: the spec --model-override set (mode auto only)."""
    table = candidates(inferred)
    if given is not None and given.key not in {c.key for c in table}:
        table.append(given)
    if mode != AUTO and mode not in {c.name for c in table}:
        raise FacequantError(
            f"--preprocessing {mode}: unknown; choose {', '.join(preprocessing_choices())}"
        )
    if mode != AUTO and given is not None:
        raise FacequantError(
            f"--preprocessing {mode}: conflicts with --model-override of mean, std or channel_order"
        )
    given_name = (
        mode
        if mode != AUTO
        else (None if given is None else next(c.name for c in table if c.key == given.key))
    )
    _, _, genuine = pairs(identities)
    verdict = Verdict(
        mode=mode if given is None else "given",
        chosen=inferred,
        reason="",
        candidates=table,
        n_photos=len(identities),
        n_genuine=int(genuine.sum()),
        n_impostor=int((~genuine).sum()),
        inferred_from=inferred_from,
    )
    if verdict.n_genuine < MIN_PAIRS or verdict.n_impostor < MIN_PAIRS:
        verdict.chosen = next(c for c in table if c.name == (given_name or INFERRED))
        verdict.reason = (
            f"not checked on data: {verdict.n_genuine} genuine and {verdict.n_impostor} impostor "
            f"close-range pairs, fewer than {MIN_PAIRS} of either"
        )
        verdict.warnings.append(f"preprocessing {verdict.chosen.describe()} was {verdict.reason}")
        return verdict

    data_sha = data_sha256(crops, identities)
    key = {"model_sha256": model_sha, "data_sha256": data_sha, "version": CHECK_VERSION}
    path = _cache_file(model_sha, data_sha)
    by_key, first_seconds = _cached_scores(path, key)
    missing = [c for c in table if c.key not in by_key]
    t0 = time.perf_counter()
    if missing:
        embeddings = _embed_all(model, spec, crops, missing, batch_size)
        for c in missing:
            by_key[c.key] = score_embeddings(embeddings[c.name], identities)
        verdict.seconds = time.perf_counter() - t0
        _store_scores(path, key, by_key, first_seconds + verdict.seconds)
    verdict.cached = not missing
    verdict.scores = {c.name: by_key[c.key] for c in table}
    verdict.best = best_candidate(table, verdict.scores)
    se = (
        auc_standard_error(verdict.auc(verdict.best), verdict.n_genuine, verdict.n_impostor)
        if verdict.best
        else 0.0
    )
    name, verdict.reason, warnings = choose(table, verdict.scores, verdict.mode, given_name, se)
    verdict.chosen = next(c for c in table if c.name == name)
    verdict.warnings += warnings + norm_warnings(verdict.scores[name], verdict.chosen)
    return verdict


def close_range_crop(face: AlignedFace, model_px: int, margin: float = 0.0) -> np.ndarray:
    """A photo at its own resolution, resampled to the model input: the sweep's enrolment crop."""
    from facequant.faces.alignment import crop_side
    from facequant.simulate.camera import simulate

    return simulate(face.crop, crop_side(face.native_face_px, margin), model_px)


def check_faces(
    model: Path,
    spec: ModelSpec,
    model_sha: str,
    faces: Sequence[AlignedFace],
    identities: Sequence[str],
    *,
    mode: str = AUTO,
    overrides: Mapping[str, object] | None = None,
    margin: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    n_photos: int = CHECK_PHOTOS,
) -> tuple[ModelSpec, Verdict]:
    """The spec to run with and the verdict, from a seeded subset of aligned faces: the
    float model (normalized copy) scores each candidate on their close-range crops. `spec` is
    inspect_model's (overrides applied); the graph's own preprocessing is read from `model`."""
    from facequant.models.spec import inferred_preprocessing_source, inspect_model

    base = inspect_model(model)  # the normalized copy keeps its source's inferred preprocessing
    inferred = Preprocessing.of(INFERRED, base)
    given = given_preprocessing(overrides or {}, spec)
    subset = check_subset(identities, n_photos, seed)
    crops = np.stack([close_range_crop(faces[i], spec.input_size[0], margin) for i in subset])
    verdict = check_crops(
        model,
        spec,
        model_sha,
        crops,
        [identities[i] for i in subset],
        inferred,
        mode,
        given,
        inferred_preprocessing_source(model),
        batch_size,
    )
    return verdict.chosen.apply(spec), verdict


def norm_warnings(score: Score, chosen: Preprocessing) -> list[str]:
    """A model whose output norm is the same for every face carries no pre-norm."""
    if math.isnan(score.prenorm_cv) or score.prenorm_cv >= CONSTANT_NORM_CV:
        return []
    if abs(score.prenorm_mean - 1.0) < 1e-3:
        return [
            f"the model's output norm is 1 for every face (CV {score.prenorm_cv:.1e} under {chosen.name}): "
            "it L2-normalizes its output in a way facequant did not find in the graph, so the pre-norm "
            "columns carry no information; export the tensor before the normalization as the output"
        ]
    return [
        f"the model's output norm is nearly constant across faces ({score.prenorm_mean:.3g}, CV "
        f"{score.prenorm_cv:.1e} under {chosen.name}): the pre-norm carries no information, and a collapsed "
        "output is one explanation"
    ]


def given_preprocessing(overrides: Mapping[str, object], spec: ModelSpec) -> Preprocessing | None:
    """The user's own spec when --model-override set any of mean, std, channel_order."""
    if not {"mean", "std", "channel_order"} & set(overrides):
        return None
    return Preprocessing(
        "given", spec.channel_order, channel_values(spec.mean), channel_values(spec.std)
    )


# --------------------------------------------------------------------------- a sweep's check


@dataclass
class ModelCheck:
    """What a sweep learned about its model before any backend: the preprocessing verdict,
    what the graph does at its ends, and how faces are aligned for it (run.json, summary)."""

    preprocessing: Verdict
    graph: dict[str, object]
    alignment: dict[str, object]

    def warnings(self) -> list[str]:
        return list(self.preprocessing.warnings)

    def run_entries(self) -> dict[str, object]:
        return {
            "preprocessing": {
                **self.preprocessing.to_dict(),
                "summary": self.preprocessing.summary(),
            },
            "model_graph": self.graph,
            "alignment": self.alignment,
        }


def summary_lines(run: Mapping[str, object]) -> list[str]:
    """What a sweep's summary says about its model, from run.json: the preprocessing used and
    why, what the graph does at its ends when it does anything, the alignment when it is not
    the plain 112-px template."""
    lines: list[str] = []
    pre = run.get("preprocessing")
    if isinstance(pre, dict) and pre.get("summary"):
        lines.append(str(pre["summary"]))
    graph = run.get("model_graph")
    if isinstance(graph, dict):
        if graph.get("input_normalization"):
            lines.append(str(graph["summary"][0]))
        if graph.get("l2_normalized_output"):
            lines.append(str(graph["summary"][-1]))
    align = run.get("alignment")
    if isinstance(align, dict) and (
        align.get("crop_margin") or align.get("model_input") != [112, 112]
    ):
        lines.append(str(align.get("summary")))
    return lines


def graph_report(source: Path, normalized: Path) -> dict[str, object]:
    """The graph's two ends: its own input normalization, an output L2 normalization cut off."""
    from facequant.models.files import load_graph
    from facequant.models.graph import input_normalization
    from facequant.models.normalize import l2_cut

    norm = input_normalization(load_graph(source))
    tail = l2_cut(normalized)
    lines = []
    if norm is not None:
        lines.append(f"model input: {norm.describe()}")
    lines.append(
        f"model output: {tail.describe()}; facequant measures the pre-norm there"
        if tail is not None
        else "model output: no L2 normalization in the graph; its norm is the pre-norm"
    )
    return {
        "input_normalization": None if norm is None else norm.to_dict(),
        "l2_normalized_output": None if tail is None else tail.to_dict(),
        "summary": lines,
    }


def alignment_report(
    model_size: tuple[int, int], source_crop_px: int, margin: float
) -> dict[str, object]:
    """How faces are aligned for this model: the 112 ArcFace template scaled (never cropped)."""
    h, w = model_size
    scale = h / 112.0 / (1.0 + margin)
    border = (
        f", the face centred in a crop {1 + margin:g}x its size (--crop-margin {margin:g})"
        if margin
        else ""
    )
    return {
        "template": "ArcFace 5-point (insightface arcface_dst, 112 px)",
        "model_input": [h, w],
        "source_crop_px": source_crop_px,
        "crop_margin": margin,
        "template_scale": round(scale, 6),
        "summary": f"alignment: the 112-px ArcFace template scaled x{scale:.4g} to the {h}x{w} input{border} "
        f"(source crops {source_crop_px} px)",
    }


def check_for_sweep(
    config: object,
    model_path: Path,
    normalized: Path,
    spec: ModelSpec,
    model_sha: str,
    faces: Sequence[AlignedFace],
    identities: Sequence[str],
) -> tuple[ModelSpec, ModelCheck]:
    """The spec a sweep runs with and its ModelCheck; `config` is the SweepConfig (its
    preprocessing, model_overrides, crop_margin, seed, batch_size)."""
    margin = float(getattr(config, "crop_margin", 0.0))
    spec, verdict = check_faces(
        normalized,
        spec,
        model_sha,
        faces,
        identities,
        mode=str(getattr(config, "preprocessing", AUTO)),
        overrides=getattr(config, "model_overrides", None) or {},
        margin=margin,
        seed=int(getattr(config, "seed", 0)),
        batch_size=int(getattr(config, "batch_size", 64)),
    )
    for (
        message
    ) in verdict.warnings:  # said now, before the sweep spends minutes; run.json keeps them too
        cache_entry.warn(message)
    return spec, ModelCheck(
        verdict,
        graph_report(model_path, normalized),
        alignment_report(spec.input_size, int(faces[0].crop.shape[0]), margin),
    )

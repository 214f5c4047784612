"""`facequant models check MODEL --data DIR`: what a sweep would learn about a model before
running it (preprocessing scored on data, the graph's ends, alignment); facequant.render.check
shows it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from facequant.analysis import preprocessing_check
from facequant.errors import BadImageError, FacequantError
from facequant.models import preprocessing
from facequant.models.budget import check_buffers
from facequant.models.spec import ModelSpec
from facequant.params import WHAT, nested, param, validate
from facequant.ranges import COUNT_RANGE
from facequant.sweep.config import SweepConfig


@dataclass(frozen=True)
class ModelCheckConfig:
    """models check: the model and photos (and the preprocessing, overrides, crop margin and
    seed) as a sweep takes them, and how many photos to score on."""

    sweep: SweepConfig = nested(SweepConfig, help={"seed": "seed of the photo subset"})
    photos: int = param(preprocessing.CHECK_PHOTOS, help="photos to score on, identity-stratified (as a sweep "
                        "checks its preprocessing)", group=WHAT, range=COUNT_RANGE, integer=True)

    def __post_init__(self) -> None:
        validate(self, "models check")


@dataclass
class CheckReport:
    model: Path
    data: str
    spec: ModelSpec  # with the chosen preprocessing
    check: preprocessing_check.ModelCheck
    n_usable: int
    n_identities: int
    seconds: float  # the whole command: faces (cached after the first run) and scoring


def run_check(model: str, data: str, mode: str = preprocessing.AUTO, overrides: dict[str, object] | None = None,
              margin: float = 0.0, seed: int = 0, photos: int | None = None) -> CheckReport:
    """The same check a sweep runs before its backends, on `data`'s photos."""
    from facequant.datasets.load import load_dataset
    from facequant.faces.pipeline import pipeline_for_model
    from facequant.models.files import model_sha256
    from facequant.models.normalize import normalize_model
    from facequant.models.sources import resolve_model
    from facequant.models.spec import inspect_model

    t0 = time.perf_counter()
    preprocessing.check_mode(mode, overrides)
    path = resolve_model(model)
    spec = inspect_model(path, overrides or None)
    n_photos = photos or preprocessing.CHECK_PHOTOS
    check_buffers(path, spec.input_size, {f"--photos {n_photos}": n_photos})
    normalized = normalize_model(path)
    dataset = load_dataset(data)
    pipeline = pipeline_for_model(path, "primary", margin)
    faces, identities = [], []
    for img in dataset.images:
        try:
            faces.append(pipeline.extract(img.path))
        except BadImageError:
            continue  # as in a sweep: a photo without a usable face is left out
        identities.append(img.identity)
    if len(faces) < 2:
        raise FacequantError(f"{dataset.root}: only {len(faces)} usable face(s); need at least 2")
    spec, verdict = preprocessing_check.check_faces(normalized, spec, model_sha256(path), faces, identities, mode=mode,
                                              overrides=overrides, margin=margin, seed=seed,
                                              n_photos=n_photos)
    check = preprocessing_check.ModelCheck(verdict, preprocessing_check.graph_report(path, normalized),
                                     preprocessing_check.alignment_report(spec.input_size, int(faces[0].crop.shape[0]), margin))
    return CheckReport(path, str(dataset.root), spec, check, len(faces), len(set(identities)),
                       time.perf_counter() - t0)

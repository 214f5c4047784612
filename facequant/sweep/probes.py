"""The probes a sweep feeds its backends: which photos have a usable face, the enrolment crop
of each, its simulated crop at each distance, and the calibration crops.

Nothing here holds every photo's pixels: a face is kept as a few numbers (FaceInfo), and its
448-px aligned crop is read back from the crop cache (facequant.faces.pipeline) a chunk of
photos at a time, when a distance needs it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import overload

import numpy as np

from facequant.analysis import preprocessing_check
from facequant.backends.base import preprocess
from facequant.datasets.folders import IMAGE_SUFFIXES, Dataset, FaceImage, comparisons
from facequant.datasets.load import load_dataset
from facequant.errors import BadImageError, FacequantError, check_cancel
from facequant.faces.alignment import crop_side
from facequant.faces.pipeline import AlignedFace, FacePipeline, pipeline_for_model
from facequant.models.budget import check_buffers
from facequant.models.files import model_sha256
from facequant.models.normalize import normalize_model
from facequant.models.sources import resolve_model
from facequant.models.spec import ModelSpec, inspect_model
from facequant.names import display
from facequant.simulate.camera import (
    CameraProfile,
    camera_from_spec,
    distances_for_face_px,
    is_simulable,
    simulate,
)
from facequant.sweep import crops
from facequant.sweep.config import Progress, SweepConfig
from facequant.sweep.crops import CropStore


def probe_id(image_key: str, distance_m: float | None) -> str:
    """Stable id of one probe crop: what export-probes writes and external backends key on."""
    return f"{image_key}@enrol" if distance_m is None else f"{image_key}@{distance_m:g}m"


@dataclass(frozen=True)
class FaceInfo:
    """What a sweep keeps of a photo's face between uses: its size, how many faces the photo
    held, and the key its crop is cached under (its bytes + the face pipeline's settings)."""

    native_face_px: float
    n_faces: int
    crop_key: str


def extract_faces(dataset: Dataset, pipeline: FacePipeline, progress: Progress | None = None,
                  cancel: threading.Event | None = None, store: CropStore | None = None
                  ) -> tuple[dict[str, FaceInfo], list[dict[str, object]]]:
    """FaceInfo by image key (the crops go to the cache, not to memory), and the photos that
    gave none, with the reason. Stops (Cancelled) between photos once `cancel` is set.
    `store`: the run's crop store, which notes each crop-cache entry checked here."""
    faces: dict[str, FaceInfo] = {}
    skipped: list[dict[str, object]] = []
    for i, img in enumerate(dataset.images):
        check_cancel(cancel, "faces")
        try:
            face, photo_sha = store.extract(img.path) if store is not None else pipeline.extract_keyed(img.path)[:2]
            faces[img.key] = FaceInfo(face.native_face_px, face.n_faces, _crop_key(photo_sha, pipeline))
        except BadImageError as exc:
            skipped.append({"image": img.key, "reason": exc.reason})
        if progress:
            progress("faces", i + 1, len(dataset.images))
    return faces, skipped


def _crop_key(photo_sha: str, pipeline: FacePipeline) -> str:
    """A probe's key: the photo's SHA-256 and everything that makes its crop."""
    return hashlib.sha256(f"{photo_sha}|{pipeline.settings_key}".encode()).hexdigest()


def _calibration_faces(folder: Path, pipeline: FacePipeline, size: int, seed: int) -> dict[str, AlignedFace]:
    """Aligned faces of a seeded subset of a calibration folder (any tree of photos)."""
    if not folder.is_dir():
        raise FacequantError(f"{folder}: calibration folder not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    order = np.random.default_rng(seed).permutation(len(files))
    out: dict[str, AlignedFace] = {}
    for i in order:  # photos without a usable face are passed over, not fatal
        if len(out) >= size:
            break
        try:
            out[display(files[i].relative_to(folder).as_posix())] = pipeline.extract(files[i])
        except BadImageError:
            continue
    if not out:
        raise FacequantError(f"{folder}: no usable face to calibrate on")
    return out


def _calibration_seed(seed: int, image_index: int, distance_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, image_index, 1000 + distance_index])


@dataclass
class ProbeSet:
    """The exact crops a sweep feeds the backends: gallery enrolment, probes per distance,
    calibration. Built once; the sweep, diagnose and export-probes read it."""

    config: SweepConfig
    model_path: Path
    normalized: Path
    model_sha: str
    spec: ModelSpec
    camera: CameraProfile
    distances: tuple[float, ...]
    dataset: Dataset
    images: list[FaceImage]
    faces: dict[str, FaceInfo]
    skipped: list[dict[str, object]]
    pipeline: FacePipeline
    identity: np.ndarray  # an integer code per image (index into identity_names)
    identity_names: list[str]
    calibration_faces: dict[str, AlignedFace]
    #: With a pairs file: (probe row, gallery row, genuine) of every listed comparison; None
    #: compares every photo with every other (scored blockwise, never listed).
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    check: preprocessing_check.ModelCheck | None = None  # the preprocessing check, graph and alignment reports
    crops: CropStore | None = None  # None: every crop read through the face pipeline

    @property
    def model_px(self) -> int:
        return self.spec.input_size[0]

    @cached_property
    def keys(self) -> list[str]:
        """The photos' keys, in row order (made once: callers index it per comparison)."""
        return [img.key for img in self.images]

    def face_px(self, distance: float) -> float:
        return self.camera.face_px(distance, self.config.iod_mm)

    def _side(self, face_px: float) -> float:
        """The whole crop's side for a face of face_px (--crop-margin adds border around it)."""
        return crop_side(face_px, self.config.crop_margin)

    def simulable(self, distance: float) -> np.ndarray:
        """Per photo: it holds the detail a face at this distance needs (else it is left out)."""
        px = self.face_px(distance)
        return np.array([is_simulable(self._side(self.faces[img.key].native_face_px), self._side(px), self.model_px)
                         for img in self.images], dtype=bool)

    def chunks(self, rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Photo indices, config.chunk_size at a time."""
        rows = np.arange(len(self.images)) if rows is None else np.asarray(rows)
        for start in range(0, len(rows), self.config.chunk_size):
            yield rows[start:start + self.config.chunk_size]

    def source_crop(self, row: int) -> np.ndarray:
        """The photo's 448-px aligned crop: held in memory, or read back from the crop cache."""
        if self.crops is not None:
            return self.crops.crop(self.images[row].path)
        return self.pipeline.extract(self.images[row].path).crop

    def noise_seed(self, row: int, face_px: float) -> np.random.Generator:
        """The noise draw of one probe: a function of the photo and the face size alone, so
        adding photos or distances leaves every other probe's draw (and cached embedding) as is."""
        photo = int(self.faces[self.images[row].key].crop_key[:15], 16)
        return np.random.default_rng([self.config.seed, photo, int(round(face_px * 1000))])

    def enrol_crops(self, rows: np.ndarray) -> np.ndarray:
        """Enrolment: each photo at its own resolution, aligned to the model input."""
        return np.stack([simulate(self.source_crop(r), self._side(self.faces[self.images[r].key].native_face_px),
                                  self.model_px) for r in rows.tolist()])

    def distance_crops(self, rows: np.ndarray, distance: float) -> np.ndarray:
        """The photos' probes at `distance`, seeded per photo and face size."""
        px = self.face_px(distance)
        return np.stack([simulate(self.source_crop(r), self._side(px), self.model_px, self.config.degradation,
                                  self.noise_seed(r, px)) for r in rows.tolist()])

    def crop_key(self, row: int, distance: float | None) -> str:
        """Everything that determines one probe crop (the embedding cache's half of a key)."""
        face = self.faces[self.images[row].key]
        if distance is None:
            return f"{face.crop_key}|enrol|{self.model_px}"
        px = self.face_px(distance)
        return f"{face.crop_key}|{px:.6f}|{self.config.degradation}|{self.config.seed}|{self.model_px}"

    # whole-set views, for export-probes, diagnose and tests (they hold every crop at once)

    def gallery_crops(self) -> np.ndarray:
        return self.enrol_crops(np.arange(len(self.images)))

    def gallery_ids(self) -> list[str]:
        return [probe_id(img.key, None) for img in self.images]

    def probe_ids(self, distance: float) -> list[str]:
        return [probe_id(img.key, distance) for img in self.images]

    def probe_crops(self, d_index: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(crops, simulable mask, face px) of every photo at distances[d_index]."""
        d = self.distances[d_index]
        return self.distance_crops(np.arange(len(self.images)), d), self.simulable(d), self.face_px(d)

    def calibration_distances(self) -> tuple[float, ...]:
        return self.config.calibration_distances_m or (self.distances[0],)

    def calibration_tensors(self) -> np.ndarray:
        """Preprocessed calibration crops: each calibration photo at each calibration distance."""
        crops = [simulate(face.crop, self._side(self.face_px(d)), self.model_px, self.config.degradation,
                          _calibration_seed(self.config.seed, i, j))
                 for j, d in enumerate(self.calibration_distances())
                 for i, face in enumerate(self.calibration_faces.values())]
        return preprocess(np.stack(crops), self.spec)


class _CachedFaces(Sequence[AlignedFace]):
    """The photos' aligned faces, each read back from the crop cache when asked for."""

    def __init__(self, images: list[FaceImage], pipeline: FacePipeline) -> None:
        self._images, self._pipeline = images, pipeline

    def __len__(self) -> int:
        return len(self._images)

    @overload
    def __getitem__(self, i: int) -> AlignedFace: ...

    @overload
    def __getitem__(self, i: slice) -> list[AlignedFace]: ...

    def __getitem__(self, i: int | slice) -> AlignedFace | list[AlignedFace]:
        if isinstance(i, slice):  # a Sequence slices too
            return [self._pipeline.extract(img.path) for img in self._images[i]]
        return self._pipeline.extract(self._images[i].path)


def _listed_pairs(dataset: Dataset, genuine_mode: str, index: dict[str, int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    triples = list(comparisons(dataset, genuine_mode, usable=set(index)))
    return (np.array([index[p] for p, _, _ in triples], np.int64), np.array([index[g] for _, g, _ in triples], np.int64),
            np.array([g for _, _, g in triples], dtype=bool))


def sweep_buffers(config: SweepConfig) -> dict[str, int]:
    """The buffers a sweep sizes from the model input, named by the options that set them
    (as check_buffers takes them): inputs per batch, per chunk of photos, of calibration."""
    n_calib = len(config.calibration_distances_m or (0.0,))
    calib = f"--calib-size {config.calibration_size}" + (f" x {n_calib} --calib-distances" if n_calib > 1 else "")
    return {f"--batch-size {config.batch_size}": config.batch_size, f"--chunk-size {config.chunk_size}": config.chunk_size,
            calib: config.calibration_size * n_calib}


def check_model(config: SweepConfig) -> tuple[Path, ModelSpec, Path]:
    """The sweep's model found, its declared input usable and within budget (with the buffers
    this config derives from it), and loaded and run once by ONNX Runtime (its normalized copy,
    cached): (file, spec, normalized copy). Cheap next to a sweep; a list of models runs it on
    every one before the first is swept."""
    model_path = resolve_model(config.model)
    spec = inspect_model(model_path, config.model_overrides or None)
    check_buffers(model_path, spec.input_size, sweep_buffers(config))
    return model_path, spec, normalize_model(model_path)


def prepare_probes(config: SweepConfig, progress: Progress | None = None,
                   pipeline: FacePipeline | None = None, cancel: threading.Event | None = None) -> ProbeSet:
    """Model, faces, identities and calibration photos for a sweep: everything before inference."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model_path, spec, normalized = check_model(config)
    model_sha = model_sha256(model_path)  # the .onnx and its external data: every byte it reads
    camera = camera_from_spec(config.camera)
    distances = (distances_for_face_px(camera, config.face_px, config.iod_mm) if config.face_px
                 else tuple(sorted(config.distances_m)))
    timings["model_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dataset = load_dataset(config.data, Path(config.pairs) if config.pairs else None)
    pipeline = pipeline or pipeline_for_model(model_path, config.multi_face, config.crop_margin)
    budget = crops.default_budget_mb() if config.crop_memory_mb is None else config.crop_memory_mb
    store = crops.CropStore(pipeline, budget)
    faces, skipped = extract_faces(dataset, pipeline, progress, cancel, store)
    if len(faces) < 2:
        raise FacequantError(f"{dataset.root}: only {len(faces)} usable face(s); need at least 2")
    store.decide(len(faces))
    images: list[FaceImage] = [img for img in dataset.images if img.key in faces]
    names = sorted({img.identity for img in images})
    code = {name: i for i, name in enumerate(names)}
    identity = np.array([code[img.identity] for img in images], np.int64)
    index = {img.key: i for i, img in enumerate(images)}
    pairs = _listed_pairs(dataset, config.genuine_mode, index) if dataset.pairs is not None else None
    has_genuine = (bool(pairs[2].any()) if pairs is not None
                   else config.genuine_mode == "same-photo" or len(np.unique(identity)) < len(identity))
    if not has_genuine:
        raise FacequantError(f"{dataset.root}: no genuine comparisons (every identity has one usable photo)")

    # The preprocessing checked on close-range crops of a seeded subset, before any backend is
    # built (only those crops are read back from the cache).
    spec, check = preprocessing_check.check_for_sweep(config, model_path, normalized, spec, model_sha,
                                                _CachedFaces(images, pipeline), [img.identity for img in images])
    timings["check_s"] = check.preprocessing.seconds

    # Calibration: a seeded subset (what a deployment would calibrate on), of the evaluation
    # photos or of a separate folder. Only these crops are held in memory (a few dozen).
    if config.calibration_data:
        calib_faces = _calibration_faces(Path(config.calibration_data), pipeline, config.calibration_size, config.seed)
    else:
        chosen = np.random.default_rng(config.seed).permutation(len(images))[: config.calibration_size]
        calib_faces = {images[i].key: pipeline.extract(images[i].path) for i in sorted(chosen.tolist())}
    timings["faces_s"] = time.perf_counter() - t0
    return ProbeSet(
        config=config, model_path=Path(model_path), normalized=normalized, model_sha=model_sha, spec=spec,
        camera=camera, distances=distances, dataset=dataset, images=images, faces=faces, skipped=skipped,
        pipeline=pipeline, identity=identity, identity_names=names, calibration_faces=calib_faces, pairs=pairs,
        timings=timings, check=check, crops=store)

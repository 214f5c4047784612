"""The distance sweep: photos -> aligned crops -> simulated probes per distance -> embeddings
per backend -> the tidy tables every output reads."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facequant import __version__
from facequant.backends import cost
from facequant.backends.base import preprocess
from facequant.backends.registry import BackendFactory
from facequant.datasets.folders import (
    IMAGE_SUFFIXES,
    Dataset,
    FaceImage,
    comparisons,
    load_dataset,
    pairs_summary,
)
from facequant.errors import BadImageError, FacequantError
from facequant.evaluate import cliff, honesty, metrics
from facequant.faces.alignment import crop_side
from facequant.faces.pipeline import AlignedFace, FacePipeline, pipeline_for_model
from facequant.models import preprocessing
from facequant.models.spec import (
    ModelSpec,
    file_sha256,
    inspect_model,
    model_sha256,
    normalize_model,
    resolve_model,
)
from facequant.names import display
from facequant.ranges import (
    COSINE_RANGE,
    COUNT_RANGE,
    CROP_MARGIN_RANGE,
    DISTANCE_RANGE,
    FACE_PX_RANGE,
    FAR_RANGE,
    IOD_RANGE,
    SEED_RANGE,
    require,
)
from facequant.simulate.camera import (
    DEFAULT_DISTANCES_M,
    DEFAULT_IOD_MM,
    CameraProfile,
    Degradation,
    camera_from_spec,
    distances_for_face_px,
    is_simulable,
    simulate,
)

#: progress(stage, done, total): stages are "faces", "calibration", "distances".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines a sweep's numbers; saved in run.json."""

    model: str
    data: str
    backends: tuple[str, ...] = ("fp32", "int8-pt", "int8-pc")
    camera: str = "1080p-90"
    distances_m: tuple[float, ...] = DEFAULT_DISTANCES_M
    face_px: tuple[float, ...] | None = None  # a sweep given in face pixels overrides distances_m
    iod_mm: float = DEFAULT_IOD_MM
    degradation: Degradation = Degradation()
    genuine_mode: str = "different-photo"
    gallery: str = "same-backend"  # or "fp32": enrol every backend's gallery with the float model
    pairs: str | None = None  # pairs CSV; None compares every photo with every other
    target_far: float = 1e-3
    threshold: float | None = None  # given: used as is; None: set on fp32 close-range impostors
    calibration_size: int = 32
    calibration_data: str | None = None  # a folder of photos to calibrate on; None: the evaluation photos
    calibration_distances_m: tuple[float, ...] | None = None  # None: the closest sweep distance only
    device_profile: str | None = None  # YAML with a device's measured latencies (configs/devices/)
    measure_cost: bool = True  # time each backend at batch 1 on this CPU after the sweep
    calibration_method: str | None = None  # None: each recipe's own (minmax)
    multi_face: str = "primary"
    seed: int = 0
    batch_size: int = 64
    model_overrides: dict[str, object] = field(default_factory=dict)
    # Issue 12 (facequant.models.preprocessing): the preprocessing, checked on data ("auto":
    # chosen by the check unless model_overrides set it), and extra border around the aligned face.
    preprocessing: str = "auto"
    crop_margin: float = 0.0

    def __post_init__(self) -> None:
        # The CLI checks every option where it is parsed; this keeps API callers (the TUI,
        # studies, scripts) from computing garbage with values no command line would pass.
        if not self.distances_m:
            raise FacequantError("sweep config: distances_m is empty")
        for what, values, rng in (("distances_m", self.distances_m, DISTANCE_RANGE),
                                  ("face_px", self.face_px or (), FACE_PX_RANGE),
                                  ("calibration_distances_m", self.calibration_distances_m or (), DISTANCE_RANGE)):
            for v in values:
                require(f"sweep config: {what}", v, rng)
        require("sweep config: iod_mm", self.iod_mm, IOD_RANGE)
        require("sweep config: target_far", self.target_far, FAR_RANGE)
        if self.threshold is not None:
            require("sweep config: threshold", self.threshold, COSINE_RANGE)
        require("sweep config: calibration_size", self.calibration_size, COUNT_RANGE, integer=True)
        require("sweep config: batch_size", self.batch_size, COUNT_RANGE, integer=True)
        require("sweep config: seed", self.seed, SEED_RANGE, integer=True)
        require("sweep config: crop_margin", self.crop_margin, CROP_MARGIN_RANGE)
        preprocessing.check_mode(self.preprocessing, self.model_overrides)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class SweepResult:
    config: SweepConfig
    model_name: str
    spec: ModelSpec
    camera: CameraProfile
    distances_m: tuple[float, ...]
    threshold: float
    probes: pd.DataFrame
    comparisons: pd.DataFrame
    sweep: pd.DataFrame
    cliff: pd.DataFrame
    run: dict[str, object]
    cost: pd.DataFrame | None = None


def versions() -> dict[str, str]:
    import cv2
    import insightface
    import onnx
    import onnxruntime
    import sklearn

    return {"facequant": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "pandas": pd.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "insightface": insightface.__version__, "scikit-learn": sklearn.__version__, "opencv": cv2.__version__,
            "platform": platform.platform()}


def extract_faces(dataset: Dataset, pipeline: FacePipeline, progress: Progress | None = None) -> tuple[dict[str, AlignedFace], list[dict[str, object]]]:
    """Aligned faces by image key, and the photos that gave none, with the reason."""
    faces: dict[str, AlignedFace] = {}
    skipped: list[dict[str, object]] = []
    for i, img in enumerate(dataset.images):
        try:
            faces[img.key] = pipeline.extract(img.path)
        except BadImageError as exc:
            skipped.append({"image": img.key, "reason": exc.reason})
        if progress:
            progress("faces", i + 1, len(dataset.images))
    return faces, skipped


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


def _probe_seed(seed: int, image_index: int, distance_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, image_index, distance_index])


class _Embeddings:
    """L2-normalised embeddings, with the raw norm kept: the pre-norm is what we study."""

    def __init__(self, raw: np.ndarray, backend: str = "") -> None:
        bad = ~np.all(np.isfinite(raw), axis=1)
        if bad.any():
            raise FacequantError(f"backend {backend}: {int(bad.sum())} of {len(raw)} embeddings are NaN or infinite "
                                 "(a broken quantization or model); no results were written")
        self.prenorm = np.linalg.norm(raw, axis=1)
        # An all-zero embedding has no direction: a zero unit vector, cosine 0 with anything
        # (a non-match), never NaN; the degenerate check and run.json's warnings say so.
        self.unit = np.where(self.prenorm[:, None] < honesty.ZERO_NORM, 0.0,
                             raw / np.maximum(self.prenorm[:, None], honesty.ZERO_NORM))


def probe_id(image_key: str, distance_m: float | None) -> str:
    """Stable id of one probe crop: what export-probes writes and external backends key on."""
    return f"{image_key}@enrol" if distance_m is None else f"{image_key}@{distance_m:g}m"


@dataclass
class ProbeSet:
    """The exact crops a sweep feeds the backends: gallery enrolment, probes per distance,
    calibration. Built once; the sweep and export-probes both read it."""

    config: SweepConfig
    model_path: Path
    normalized: Path
    model_sha: str
    spec: ModelSpec
    camera: CameraProfile
    distances: tuple[float, ...]
    dataset: Dataset
    images: list[FaceImage]
    faces: dict[str, AlignedFace]
    skipped: list[dict[str, object]]
    probe_idx: np.ndarray  # per comparison: index into images of the probe photo
    gallery_idx: np.ndarray  # ... of the enrolled photo
    genuine: np.ndarray
    calibration_faces: dict[str, AlignedFace]
    timings: dict[str, float] = field(default_factory=dict)
    check: preprocessing.ModelCheck | None = None  # issue 12: preprocessing, graph, alignment

    @property
    def model_px(self) -> int:
        return self.spec.input_size[0]

    def face_px(self, distance: float) -> float:
        return self.camera.face_px(distance, self.config.iod_mm)

    def _side(self, face_px: float) -> float:
        """The whole crop's side for a face of face_px (--crop-margin adds border around it)."""
        return crop_side(face_px, self.config.crop_margin)

    def gallery_crops(self) -> np.ndarray:
        """Enrolment: each photo at its own resolution, aligned to the model input."""
        return np.stack([simulate(self.faces[img.key].crop, self._side(self.faces[img.key].native_face_px), self.model_px)
                         for img in self.images])

    def gallery_ids(self) -> list[str]:
        return [probe_id(img.key, None) for img in self.images]

    def probe_ids(self, distance: float) -> list[str]:
        return [probe_id(img.key, distance) for img in self.images]

    def probe_crops(self, d_index: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(crops, simulable mask, face px) at distances[d_index]; seeded per photo and distance."""
        px = self.face_px(self.distances[d_index])
        ok = np.array([is_simulable(self._side(self.faces[img.key].native_face_px), self._side(px), self.model_px)
                       for img in self.images])
        crops = np.stack([simulate(self.faces[img.key].crop, self._side(px), self.model_px, self.config.degradation,
                                   _probe_seed(self.config.seed, i, d_index))
                          for i, img in enumerate(self.images)])
        return crops, ok, px

    def calibration_distances(self) -> tuple[float, ...]:
        return self.config.calibration_distances_m or (self.distances[0],)

    def calibration_tensors(self) -> np.ndarray:
        """Preprocessed calibration crops: each calibration photo at each calibration distance."""
        crops = [simulate(face.crop, self._side(self.face_px(d)), self.model_px, self.config.degradation,
                          _probe_seed(self.config.seed, i, 1000 + j))
                 for j, d in enumerate(self.calibration_distances())
                 for i, face in enumerate(self.calibration_faces.values())]
        return preprocess(np.stack(crops), self.spec)


def prepare_probes(config: SweepConfig, progress: Progress | None = None,
                   pipeline: FacePipeline | None = None) -> ProbeSet:
    """Model, faces, comparisons and calibration photos for a sweep: everything before inference."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model_path = resolve_model(config.model)
    spec = inspect_model(model_path, config.model_overrides or None)
    normalized = normalize_model(model_path)
    model_sha = model_sha256(model_path)  # the .onnx and its external data: every byte it reads
    camera = camera_from_spec(config.camera)
    distances = (distances_for_face_px(camera, config.face_px, config.iod_mm) if config.face_px
                 else tuple(sorted(config.distances_m)))
    timings["model_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dataset = load_dataset(config.data, Path(config.pairs) if config.pairs else None)
    pipeline = pipeline or pipeline_for_model(model_path, config.multi_face, config.crop_margin)
    faces, skipped = extract_faces(dataset, pipeline, progress)
    if len(faces) < 2:
        raise FacequantError(f"{dataset.root}: only {len(faces)} usable face(s); need at least 2")
    images: list[FaceImage] = [img for img in dataset.images if img.key in faces]
    index = {img.key: i for i, img in enumerate(images)}
    triples = list(comparisons(dataset, config.genuine_mode, usable=set(index)))
    if not any(g for _, _, g in triples):
        raise FacequantError(f"{dataset.root}: no genuine comparisons (every identity has one usable photo)")
    # Issue 12: the preprocessing checked on close-range crops before any backend is built.
    spec, check = preprocessing.check_for_sweep(config, model_path, normalized, spec, model_sha,
                                                [faces[img.key] for img in images], [img.identity for img in images])
    timings["check_s"] = check.preprocessing.seconds

    # Calibration: a seeded subset (what a deployment would calibrate on), of the evaluation
    # photos or of a separate folder.
    if config.calibration_data:
        calib_faces = _calibration_faces(Path(config.calibration_data), pipeline, config.calibration_size, config.seed)
    else:
        chosen = np.random.default_rng(config.seed).permutation(len(images))[: config.calibration_size]
        calib_faces = {images[i].key: faces[images[i].key] for i in sorted(chosen.tolist())}
    timings["faces_s"] = time.perf_counter() - t0
    return ProbeSet(
        config=config, model_path=Path(model_path), normalized=normalized, model_sha=model_sha, spec=spec,
        camera=camera, distances=distances, dataset=dataset, images=images, faces=faces, skipped=skipped,
        probe_idx=np.array([index[p] for p, _, _ in triples]), gallery_idx=np.array([index[g] for _, g, _ in triples]),
        genuine=np.array([g for _, _, g in triples]), calibration_faces=calib_faces, timings=timings, check=check)


@dataclass
class _Findings:
    """What the honesty checks read from a finished sweep."""

    comparisons: pd.DataFrame
    probes: pd.DataFrame
    sweep: pd.DataFrame
    cliff: pd.DataFrame
    fp32_gallery: _Embeddings
    gallery_prenorms: dict[str, np.ndarray]
    threshold: float


def _add_findings(run: dict[str, object], ps: ProbeSet, f: _Findings) -> None:
    """What the data cannot support, and which photos are suspect: run.json's threshold
    resolution, duplicates and pairs, and a sentence for each in run.json's warnings."""
    config, close_d = ps.config, ps.distances[0]
    close = f.comparisons.loc[(f.comparisons.backend == "fp32") & (f.comparisons.distance_m == close_d)]
    n_imp = int((~close.genuine.astype(bool)).sum())
    set_by_far = config.threshold is None
    threshold = run["threshold"]
    assert isinstance(threshold, dict)
    threshold.update(honesty.far_resolution(n_imp, config.target_far))
    degenerate = {str(r.backend): str(r.degenerate) for r in f.cliff.itertuples() if r.degenerate}
    for backend, reason in degenerate.items():
        if backend == "fp32" and ps.check is not None:  # issue 12: name the preprocessing check's verdict
            reason = f"{reason} ({ps.check.preprocessing.phrase()})"
        honesty.add_warning(run, f"{backend} is degenerate: {reason}")
    honesty.add_warning(run, honesty.far_resolution_warning(f.threshold, config.target_far, n_imp, close_d,
                                                            given=not set_by_far))
    run["duplicates"] = _duplicates(ps, f, degenerate)
    effect, without = (honesty.duplicate_threshold_effect(close, run["duplicates"], f.threshold, config.target_far)
                       if set_by_far else ("", None))
    if without is not None:
        threshold["without_duplicates"] = without
    for message in honesty.duplicate_warnings(run["duplicates"], effect):
        honesty.add_warning(run, message)
    honesty.add_warning(run, honesty.thin_tar_warning(f.sweep))
    for backend in pd.unique(f.sweep.backend):
        honesty.add_warning(run, honesty.far_excess_warning(f.sweep, str(backend), config.target_far))
    pairs = pairs_summary(ps.dataset, {img.key for img in ps.images})
    if pairs is not None:
        run["pairs"] = pairs[0]
        for message in pairs[1]:
            honesty.add_warning(run, message)
    for message in honesty.zero_embedding_warnings(f.probes, f.gallery_prenorms, cliff.DEFAULT_DEGENERATE.zero_prenorm):
        honesty.add_warning(run, message)


def _duplicates(ps: ProbeSet, f: _Findings, degenerate: dict[str, str]) -> list[dict[str, object]]:
    """Photo pairs that are the same image (honesty.find_duplicates). The embedding test needs
    a healthy fp32: a collapsed one makes every pair look identical, so only bytes count then."""
    unit = None if "fp32" in degenerate else f.fp32_gallery.unit
    return honesty.find_duplicates([img.key for img in ps.images], [img.identity for img in ps.images],
                                   [file_sha256(img.path) for img in ps.images], unit)


def run_sweep(
    config: SweepConfig,
    progress: Progress | None = None,
    on_distance: Callable[[float, pd.DataFrame], None] | None = None,
    pipeline: FacePipeline | None = None,
) -> SweepResult:
    """Run the whole sweep. on_distance(distance, sweep_rows_so_far) fires as each distance finishes."""
    profile = cost.load_device_profile(config.device_profile) if config.device_profile else None  # fail early
    ps = prepare_probes(config, progress, pipeline)
    timings = ps.timings
    spec, camera, distances, images = ps.spec, ps.camera, ps.distances, ps.images
    model_path, normalized, model_sha = ps.model_path, ps.normalized, ps.model_sha
    probe_idx, gallery_idx, genuine = ps.probe_idx, ps.gallery_idx, ps.genuine
    triples = genuine  # counted in run.json
    calibration_cache: dict[str, np.ndarray] = {}

    def calibration() -> np.ndarray:
        if "x" not in calibration_cache:
            calibration_cache["x"] = ps.calibration_tensors()
        return calibration_cache["x"]

    t0 = time.perf_counter()
    factory = BackendFactory(normalized, model_sha, spec, calibration, config.calibration_method, config.batch_size)
    backends = {name: factory.make(name) for name in config.backends}
    if progress:
        progress("calibration", 1, 1)
    timings["backends_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gallery_crops = ps.gallery_crops()
    # With --gallery fp32 only fp32 enrols: a device run need not bring back enrolment embeddings.
    galleries = {name: _Embeddings(b.embed_probes(gallery_crops, ps.gallery_ids()), name) for name, b in backends.items()
                 if config.gallery != "fp32" or name == "fp32"}
    if config.gallery == "fp32":
        galleries = {name: galleries["fp32"] for name in backends}
    elif config.gallery != "same-backend":
        raise FacequantError(f"gallery '{config.gallery}': choose same-backend or fp32")

    model_name = Path(model_path).name
    dims = {name: int(g.unit.shape[1]) for name, g in galleries.items()}
    probe_frames: list[pd.DataFrame] = []
    comparison_frames: list[pd.DataFrame] = []
    threshold = config.threshold
    for d_index, distance in enumerate(distances):
        crops, ok, px = ps.probe_crops(d_index)
        fp32 = None
        keep = ok[probe_idx]  # a probe that cannot be simulated at this distance is not compared
        for name, backend in backends.items():
            emb = _Embeddings(backend.embed_probes(crops, ps.probe_ids(distance)), name)
            fp32 = emb if name == "fp32" else fp32
            assert fp32 is not None  # parse_backends puts fp32 first
            probe_frames.append(pd.DataFrame({
                "model": model_name, "backend": name, "distance_m": distance, "face_px": px,
                "image": [img.key for img in images], "identity": [img.identity for img in images],
                "prenorm": emb.prenorm, "cos_to_fp32": np.sum(emb.unit * fp32.unit, axis=1), "simulated": ok,
            }))
            cos = np.sum(emb.unit[probe_idx] * galleries[name].unit[gallery_idx], axis=1)
            comparison_frames.append(pd.DataFrame({
                "backend": name, "distance_m": distance, "face_px": px,
                "probe": [images[i].key for i in probe_idx[keep]], "gallery": [images[i].key for i in gallery_idx[keep]],
                "genuine": genuine[keep], "cosine": cos[keep], "probe_prenorm": emb.prenorm[probe_idx[keep]],
            }))
        if threshold is None:
            # One threshold for every backend, set on fp32 impostors at the closest distance.
            close = comparison_frames[-len(backends)]
            threshold = metrics.threshold_at_far(close.cosine[~close.genuine].to_numpy(),
                                                 close.cosine[close.genuine].to_numpy(), config.target_far)
        if on_distance:
            on_distance(distance, metrics.sweep_table(pd.concat(probe_frames, ignore_index=True),
                                                      pd.concat(comparison_frames, ignore_index=True), threshold, model_name))
        if progress:
            progress("distances", d_index + 1, len(distances))
    timings["sweep_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()  # after the sweep, so timing does not compete with it
    costs = cost.cost_table([cost.backend_cost(name, b.model_path, spec, profile, measure=config.measure_cost)
                             for name, b in backends.items() if b.model_path is not None])
    timings["cost_s"] = time.perf_counter() - t0
    assert threshold is not None

    probes = pd.concat(probe_frames, ignore_index=True)
    comps = pd.concat(comparison_frames, ignore_index=True)
    sweep = metrics.sweep_table(probes, comps, threshold, model_name)
    cliffs = cliff.cliff_table(sweep, comps, model_name, probes=probes, embedding_dims=dims)
    n_embeddings = len(images) * (len(distances) + 1) * len(backends)
    timings["embeddings_per_s"] = n_embeddings / max(timings["sweep_s"], 1e-9)
    multi = [{"image": img.key, "faces": ps.faces[img.key].n_faces, "used": "most confident face"}
             for img in images if ps.faces[img.key].n_faces > 1]
    run = {
        "config": config.to_dict(),
        "model": {"path": str(model_path), "sha256": model_sha, "normalized": str(normalized), "spec": spec.to_dict()},
        "camera": camera.to_dict(),
        "distances_m": list(distances),
        "threshold": {"value": threshold, "set_on": "given" if config.threshold is not None else
                      f"fp32 impostors at {distances[0]} m, target FAR {config.target_far}"},
        "dataset": {"root": str(ps.dataset.root), "images": len(ps.dataset.images), "usable": len(images),
                    "identities": len(ps.dataset.identities), "comparisons": len(triples),
                    "genuine": int(genuine.sum()), "impostor": int((~genuine).sum()), "notes": ps.dataset.notes},
        "skipped_images": ps.skipped,
        "excluded_files": ps.dataset.excluded,
        "multi_face_images": multi,
        "calibration": {"images": list(ps.calibration_faces), "source": config.calibration_data or "evaluation photos",
                        "distances_m": list(ps.calibration_distances()),
                        "method": config.calibration_method or "per recipe"},
        "backends": {name: b.describe() for name, b in backends.items()},
        "versions": versions(),
        "timings": timings,
        "degenerate": {r.backend: r.degenerate for r in cliffs.itertuples() if r.degenerate},
        "cost": {"device_profile": profile and {k: profile[k] for k in ("path", "device", "source")},
                 "cpu_latency": cost.CPU_LATENCY_SOURCE},
        "warnings": [],
        **(ps.check.run_entries() if ps.check is not None else {}),  # issue 12: preprocessing, graph, alignment
    }
    for message in ps.check.warnings() if ps.check is not None else []:
        honesty.add_warning(run, message)
    _add_findings(run, ps, _Findings(comps, probes, sweep, cliffs, galleries["fp32"],
                                      {n: g.prenorm for n, g in galleries.items()}, threshold))
    return SweepResult(config, model_name, spec, camera, distances, threshold, probes, comps, sweep, cliffs, run, costs)

"""Does the distance simulation match reality? Compare real lower-resolution captures of a
face with the same face size simulated from a high-resolution reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from facequant import options
from facequant.backends.base import preprocess
from facequant.backends.registry import BackendFactory, parse_backends
from facequant.datasets.folders import IMAGE_SUFFIXES
from facequant.errors import BadImageError, FacequantError
from facequant.faces.alignment import similarity_matrix
from facequant.faces.images import read_image
from facequant.faces.pipeline import FacePipeline, pipeline_for_model
from facequant.models.files import model_sha256
from facequant.models.normalize import normalize_model
from facequant.models.sources import resolve_model
from facequant.models.spec import inspect_model
from facequant.names import display
from facequant.params import RUN, WHAT, nested, param, validate
from facequant.ranges import SEED_RANGE
from facequant.results.jsonfile import write_run_json
from facequant.results.output import Inputs, staged_output
from facequant.simulate.camera import Degradation, simulate
from facequant.sweep.config import model_help

FIDELITY_CSV = "fidelity.csv"
RUN_JSON = "run.json"
FIDELITY_COLUMNS = ["capture", "face_px", "backend", "real_cos", "sim_cos", "delta_cos", "real_prenorm", "sim_prenorm"]


@dataclass(frozen=True)
class ValidateConfig:
    """validate-sim: a high-resolution reference photo, real captures of the same person, and
    what to simulate (the camera's degradation); saved in run.json."""

    reference: str = param(help="high-resolution photo of the person", group=WHAT, required=True)
    captures: str = param(help="folder of real lower-resolution or more distant captures", group=WHAT, required=True)
    model: str = param("faceplugin", help=model_help, group=WHAT)
    backends: str = param("fp32,int8-pt", help="backends to compare, comma-separated", group=WHAT,
                          convert=options.name_list)
    degradation: Degradation = nested(Degradation, default_factory=Degradation)
    seed: int = param(0, help="seed of the simulated noise", group=RUN, range=SEED_RANGE, integer=True)

    def __post_init__(self) -> None:
        validate(self, "validate-sim")

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "reference": self.reference, "captures": self.captures,
                "backends": self.backends, "degradation": self.degradation.to_dict(), "seed": self.seed}


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def validate_simulation(
    model: str,
    reference: Path,
    captures: Path,
    backends: str,  # ValidateConfig.backends: its default is declared there
    seed: int = 0,
    pipeline: FacePipeline | None = None,
    degradation: Degradation = Degradation(),
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """fidelity table: one row per capture x backend (columns FIDELITY_COLUMNS + skipped reason).
    progress("captures", done, total) as each capture is aligned."""
    model_path = resolve_model(model)
    spec = inspect_model(model_path)
    normalized = normalize_model(model_path)
    model_px = spec.input_size[0]
    pipeline = pipeline or pipeline_for_model(model_path)
    ref = pipeline.extract(reference)
    if not captures.is_dir():
        raise FacequantError(f"{captures}: captures folder not found")
    files = sorted(p for p in captures.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FacequantError(f"{captures}: no images")

    real_crops, sim_crops = [], []
    rows: list[dict[str, object]] = []
    for i, path in enumerate(files):
        if progress:
            progress("captures", i, len(files))
        try:
            face = pipeline.extract(path)
            image = read_image(path)
        except BadImageError as exc:
            rows.append({"capture": display(path.name), "skipped": exc.reason})
            continue
        # The real path: the capture warped straight to the model input, bilinear, exactly as
        # insightface's norm_crop does in a deployed pipeline.
        matrix = similarity_matrix(face.landmarks5, model_px)
        real_crops.append(cv2.warpAffine(image, matrix, (model_px, model_px), flags=cv2.INTER_LINEAR))
        sim_crops.append(simulate(ref.crop, face.native_face_px, model_px, degradation, np.random.default_rng(seed)))
        rows.append({"capture": display(path.name), "face_px": face.native_face_px})
    if progress:
        progress("captures", len(files), len(files))
    if not real_crops:
        raise FacequantError(f"{captures}: no capture holds a usable face")
    ref_crop = simulate(ref.crop, ref.native_face_px, model_px)
    real = np.stack(real_crops)
    sim = np.stack(sim_crops)
    # Calibrate quantized backends on the reference and the real captures: the only faces at hand.
    calib = preprocess(np.concatenate([ref_crop[None], real]), spec)
    factory = BackendFactory(normalized, model_sha256(model_path), spec, lambda: calib)

    used = [r for r in rows if "skipped" not in r]
    out = []
    for name in parse_backends(backends):
        backend = factory.make(name)
        ref_emb = backend.embed(ref_crop[None])
        real_emb, sim_emb = backend.embed(real), backend.embed(sim)
        real_cos, sim_cos = _cos(real_emb, ref_emb), _cos(sim_emb, ref_emb)
        for i, row in enumerate(used):
            out.append({**row, "backend": name, "real_cos": real_cos[i], "sim_cos": sim_cos[i],
                        "delta_cos": sim_cos[i] - real_cos[i], "real_prenorm": float(np.linalg.norm(real_emb[i])),
                        "sim_prenorm": float(np.linalg.norm(sim_emb[i]))})
    table = pd.DataFrame(out, columns=[*FIDELITY_COLUMNS, "skipped"])
    order = {name: i for i, name in enumerate(parse_backends(backends))}
    table = table.sort_values(["backend", "face_px"], key=lambda c: c.map(order) if c.name == "backend" else -c)
    skipped = pd.DataFrame([r for r in rows if "skipped" in r], columns=[*FIDELITY_COLUMNS, "skipped"])
    return pd.concat([table, skipped], ignore_index=True) if len(skipped) else table.reset_index(drop=True)


def write_fidelity(table: pd.DataFrame, out: Path, config: dict[str, object], force: bool = False,
                   inputs: Inputs = ()) -> Path:
    """fidelity.csv and run.json (config, model hash, versions) into the results directory `out`."""
    from facequant.versions import versions

    model = resolve_model(str(config["model"]))
    run: dict[str, object] = {"command": "validate-sim", "config": config,
           "model": {"path": str(model), "sha256": model_sha256(model)}, "versions": versions()}
    with staged_output(out, force, inputs) as staging:
        table.to_csv(staging / FIDELITY_CSV, index=False)
        write_run_json(run, staging / RUN_JSON)
    return Path(out) / FIDELITY_CSV

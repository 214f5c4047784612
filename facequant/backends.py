"""Backends: aligned crops in, raw (pre-norm) embeddings out, one interface for all."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from facequant import settings
from facequant.errors import FacequantError
from facequant.models import ModelSpec
from facequant.quantization import (
    RECIPES,
    SELECTOR_HELP,
    QuantRecipe,
    build_quantized,
    is_recipe_name,
    pow2_moves_path,
    pow2_summary,
    resolve_recipe,
)
from facequant.ranges import COUNT_RANGE, require


class Backend(Protocol):
    name: str

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB aligned crops -> (N, D) float32 raw embeddings."""
        ...

    def describe(self) -> dict[str, object]: ...


def preprocess(crops: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """RGB uint8 NHWC crops -> the model's NCHW float32 input."""
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise FacequantError(f"expected (N, H, W, 3) crops, got {crops.shape}")
    h, w = spec.input_size
    if crops.shape[1:3] != (h, w):
        crops = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in crops])
    x = crops.astype(np.float32)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    x = (x - spec.mean) / spec.std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def session_options(threads: int | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or settings.ort_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # ORT's QDQ/opset advisories are noise in a sweep
    return opts


@dataclass
class OrtBackend:
    """Any ONNX embedding model run by ONNX Runtime on the CPU, in batches."""

    name: str
    model_path: Path
    spec: ModelSpec
    batch_size: int = 64
    threads: int | None = None
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(f"backend {self.name}: batch_size", self.batch_size, COUNT_RANGE, integer=True)
        try:
            self._session = ort.InferenceSession(str(self.model_path), session_options(self.threads),
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise FacequantError(f"{self.model_path}: ONNX Runtime cannot load it ({exc})") from exc

    def run(self, tensors: np.ndarray) -> np.ndarray:
        """Preprocessed NCHW tensors -> embeddings, in batches."""
        outs = [self._session.run([self.spec.output_name], {self.spec.input_name: tensors[i : i + self.batch_size]})[0]
                for i in range(0, len(tensors), self.batch_size)]
        emb = np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, self.spec.embedding_dim), np.float32)
        return emb.reshape(len(tensors), -1)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.run(preprocess(crops, self.spec))

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": "onnxruntime", "model": str(self.model_path),
                "file_bytes": self.model_path.stat().st_size, **self.info}


class InsightFaceBackend:
    """insightface's own ArcFaceONNX on the same file: its preprocessing, its session."""

    def __init__(self, model_path: Path, batch_size: int = 64, threads: int | None = None) -> None:
        from insightface.model_zoo import ArcFaceONNX

        require("backend insightface: batch_size", batch_size, COUNT_RANGE, integer=True)
        self.name = "insightface"
        self.model_path = model_path
        self.batch_size = batch_size
        session = ort.InferenceSession(str(model_path), session_options(threads), providers=["CPUExecutionProvider"])
        self._model = ArcFaceONNX(model_file=str(model_path), session=session)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(crops), self.batch_size):
            # get_feat wants BGR images (it swaps to RGB itself), sized to the model input.
            bgr = [np.ascontiguousarray(c[..., ::-1]) for c in crops[i : i + self.batch_size]]
            outs.append(np.asarray(self._model.get_feat(bgr), dtype=np.float32))
        return np.concatenate(outs).reshape(len(crops), -1)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": "insightface.ArcFaceONNX", "model": str(self.model_path),
                "input_mean": self._model.input_mean, "input_std": self._model.input_std,
                "file_bytes": self.model_path.stat().st_size, "precision": "fp32",
                "layers_16bit": [], "layers_float": []}


FLOAT_BACKENDS = ("fp32", "insightface")
EXTERNAL_PREFIX = "external:"
NAME_HELP = (f"BASE+16bit:SEL or BASE+float:SEL (BASE a static recipe; SEL {SELECTOR_HELP}; chainable), "
             f"{EXTERNAL_PREFIX}NAME=PATH")


def available_backends() -> list[str]:
    """The preset names; mixed-precision and external names are built from them (NAME_HELP)."""
    return [*FLOAT_BACKENDS, *RECIPES]


def check_backend_name(name: str) -> None:
    """Raise a one-line FacequantError naming the bad part unless `name` is a backend name.
    Node names and external paths are not checked here (the model and the external backend do)."""
    if name in FLOAT_BACKENDS:
        return
    if name.startswith(EXTERNAL_PREFIX):
        label, eq, path = name[len(EXTERNAL_PREFIX):].partition("=")
        if not (label.strip() and eq and path.strip()):
            raise FacequantError(f"backend '{name}': expected {EXTERNAL_PREFIX}NAME=PATH")
        return
    if not is_recipe_name(name):
        raise FacequantError(f"backend '{name}': unknown; available: {', '.join(available_backends())}, "
                             f"or {NAME_HELP}")


def _backend_info(recipe: QuantRecipe, model: Path) -> dict[str, object]:
    """What run.json and a cost report need to know about a built recipe."""
    info: dict[str, object] = {"recipe": recipe.to_dict(), "precision": recipe.precision,
                               "layers_16bit": list(recipe.layers_16bit), "layers_float": list(recipe.layers_float)}
    if recipe.pow2_scales:
        moves_file = pow2_moves_path(model)
        moves = json.loads(moves_file.read_text())["moves"]
        info["pow2_scales"] = {**pow2_summary(moves), "moves_file": str(moves_file)}
    return info


@dataclass
class BackendFactory:
    """Builds backends by the names users type, from one normalized float model."""

    model_path: Path  # normalized: opset >= 13, dynamic batch
    model_sha: str
    spec: ModelSpec
    calibration: Callable[[], np.ndarray]  # lazily computed preprocessed calibration tensors
    calibration_method: str | None = None  # overrides every recipe's method when given
    batch_size: int = 64
    threads: int | None = None

    def recipe(self, name: str) -> QuantRecipe:
        """The recipe behind a backend name, selectors resolved to this model's node names."""
        recipe = resolve_recipe(name, self.model_path)
        return recipe.with_calibration(self.calibration_method) if self.calibration_method else recipe

    def make(self, name: str) -> Backend:
        if name == "fp32":
            return OrtBackend("fp32", self.model_path, self.spec, self.batch_size, self.threads,
                              info={"precision": "fp32", "layers_16bit": [], "layers_float": []})
        if name == "insightface":
            return InsightFaceBackend(self.model_path, self.batch_size, self.threads)
        if name.startswith(EXTERNAL_PREFIX):
            check_backend_name(name)
            try:  # its own module, loaded only when asked for
                from facequant.external import ExternalBackend
            except ModuleNotFoundError as exc:
                if exc.name != "facequant.external":
                    raise
                raise FacequantError(f"backend '{name}': external backends are not available in this version") from exc
            return ExternalBackend.from_spec(name, self.spec)
        check_backend_name(name)
        recipe = self.recipe(name)
        calibration = self.calibration() if recipe.needs_calibration else None
        path = build_quantized(self.model_path, self.model_sha, self.spec.input_name, recipe, calibration)
        return OrtBackend(name, path, self.spec, self.batch_size, self.threads, info=_backend_info(recipe, path))


def parse_backends(text: str) -> list[str]:
    """Comma-separated backend names -> the list to run, fp32 (the reference) first."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        check_backend_name(name)
    # fp32 is the reference every other backend is compared to: always there, always first.
    return list(dict.fromkeys(["fp32", *names]))

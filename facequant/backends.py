"""Backends: aligned crops in, raw (pre-norm) embeddings out, one interface for all."""

from __future__ import annotations

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
from facequant.quantization import RECIPES, QuantRecipe, build_quantized


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
                "file_bytes": self.model_path.stat().st_size}


FLOAT_BACKENDS = ("fp32", "insightface")


def available_backends() -> list[str]:
    return [*FLOAT_BACKENDS, *RECIPES]


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
        recipe = RECIPES[name]
        return recipe.with_calibration(self.calibration_method) if self.calibration_method else recipe

    def make(self, name: str) -> Backend:
        if name == "fp32":
            return OrtBackend("fp32", self.model_path, self.spec, self.batch_size, self.threads,
                              info={"precision": "float32"})
        if name == "insightface":
            return InsightFaceBackend(self.model_path, self.batch_size, self.threads)
        if name in RECIPES:
            recipe = self.recipe(name)
            path = build_quantized(self.model_path, self.model_sha, self.spec.input_name, recipe, self.calibration())
            return OrtBackend(name, path, self.spec, self.batch_size, self.threads, info={"recipe": recipe.to_dict()})
        raise FacequantError(f"backend '{name}': unknown; available: {', '.join(available_backends())}")


def parse_backends(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in available_backends()]
    if unknown:
        raise FacequantError(f"backend(s) {', '.join(unknown)}: unknown; available: {', '.join(available_backends())}")
    if "fp32" not in names:
        names.insert(0, "fp32")  # the reference every other backend is compared to
    return list(dict.fromkeys(names))

"""Backends that run an ONNX model on this machine: ONNX Runtime, and insightface's ArcFaceONNX."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from facequant.backends.base import Backend, ort_batch_runner, preprocess, session_options, spec_key
from facequant.errors import FacequantError
from facequant.models.files import file_sha256
from facequant.models.spec import ModelSpec
from facequant.ranges import COUNT_RANGE, require


@dataclass
class OrtBackend(Backend):
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

    def batch_runner(self, threads: int, batch: int = 1) -> Callable[[], object]:
        return ort_batch_runner(self.model_path, self.spec, threads, batch)

    def cache_key(self) -> str | None:
        return f"onnxruntime|{spec_key(self.model_path, self.spec)}"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": "onnxruntime", "runtime": "onnxruntime", "runtime_version": ort.__version__,
                "model": str(self.model_path), "file_bytes": self.model_path.stat().st_size, **self.info}


class InsightFaceBackend(Backend):
    """insightface's own ArcFaceONNX on the same file: its preprocessing, its session."""

    model_path: Path

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

    def batch_runner(self, threads: int, batch: int = 1) -> Callable[[], object]:
        from insightface.model_zoo import ArcFaceONNX

        session = ort.InferenceSession(str(self.model_path), session_options(threads),
                                       providers=["CPUExecutionProvider"])
        model = ArcFaceONNX(model_file=str(self.model_path), session=session)
        crops = [np.zeros((*model.input_size[::-1], 3), np.uint8)] * batch  # its preprocessing timed too
        return lambda: model.get_feat(crops)

    def cache_key(self) -> str | None:
        return f"insightface|{file_sha256(self.model_path)}"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": "insightface.ArcFaceONNX", "runtime": "onnxruntime",
                "runtime_version": ort.__version__, "model": str(self.model_path),
                "input_mean": self._model.input_mean, "input_std": self._model.input_std,
                "file_bytes": self.model_path.stat().st_size, "precision": "fp32",
                "layers_16bit": [], "layers_float": []}

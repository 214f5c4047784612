"""The backend interface: aligned crops in, raw (pre-norm) embeddings out, and the input
preprocessing and ONNX Runtime session settings every model backend shares."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from facequant import settings
from facequant.errors import FacequantError
from facequant.models.files import file_sha256
from facequant.models.spec import ModelSpec

#: Float backends every sweep can run; the quantized ones are recipes (facequant.backends.quantize).
FLOAT_BACKENDS = ("fp32", "insightface")
EXTERNAL_PREFIX = "external:"


class Backend(ABC):
    """What every backend does, whether it runs a model here or reads a device's results."""

    name: str
    #: The model file this backend runs on this machine, for its cost (size, layers, latency);
    #: None when the embeddings were computed elsewhere (an external device).
    model_path: Path | None

    @abstractmethod
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB aligned crops -> (N, D) float32 raw embeddings."""

    def embed_probes(self, crops: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """Raw embeddings of a sweep's probes: the crops and their stable probe ids
        (facequant.sweep.engine.probe_id). A model embeds the crops; a device backend
        looks its results up by id, so it saw exactly these crops."""
        return self.embed(crops)

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """What run.json records about this backend."""

    def cache_key(self) -> str | None:
        """Everything about this backend that determines an embedding of a given crop, for the
        embedding cache; None: never cached (a device's results are read, not computed)."""
        return None

    def batch_runner(self, threads: int, batch: int = 1) -> Callable[[], object] | None:
        """For timing (facequant.backends.cost): a call running one inference of `batch` fixed
        inputs on this backend's own runtime with `threads` threads, in a session of its own; None
        when nothing runs here (a device's embeddings are read from files)."""
        return None


def spec_key(model_file: Path, spec: ModelSpec) -> str:
    """A model file's bytes and how its input is fed: what makes two runs embed alike."""
    feed = {k: v for k, v in spec.to_dict().items() if k not in ("path", "opset", "batch_dim")}
    return f"{file_sha256(model_file)}|{json.dumps(feed, sort_keys=True, default=str)}"


def timing_input(spec: ModelSpec, batch: int) -> np.ndarray:
    """A fixed seeded input in the preprocessed range, for timing: QDQ kernels do not branch
    on data, and a fixed input keeps runs comparable."""
    h, w = spec.input_size
    return np.random.default_rng(0).uniform(-1.0, 1.0, size=(batch, 3, h, w)).astype(np.float32)


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
    # A per-channel mean / std is in the model's channel order: it applies after the swap.
    mean = np.asarray(spec.mean, np.float32) if isinstance(spec.mean, tuple) else spec.mean
    std = np.asarray(spec.std, np.float32) if isinstance(spec.std, tuple) else spec.std
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def ort_batch_runner(model_path: Path, spec: ModelSpec, threads: int, batch: int = 1) -> Callable[[], object]:
    """A call running one inference of `batch` inputs of model_path with ONNX Runtime on this
    CPU, on a fixed seeded input (timing_input), with `threads` intra-op threads."""
    path = Path(model_path)
    if not path.is_file():
        raise FacequantError(f"{path}: model not found")
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise FacequantError(f"{path}: ONNX Runtime cannot load it ({' '.join(str(exc).split())[:200]})") from exc
    feed = {spec.input_name: timing_input(spec, batch)}
    outputs = [spec.output_name]
    return lambda: session.run(outputs, feed)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or settings.ort_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # ORT's QDQ/opset advisories are noise in a sweep
    return opts

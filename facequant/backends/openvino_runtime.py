"""Backends compiled by OpenVINO's CPU plugin: the float model at an explicit precision (f32 or
bf16), or an NNCF INT8 QDQ model. Imported only when such a backend is asked for (the
`openvino` extra)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facequant import settings
from facequant.backends import cpu
from facequant.backends.base import Backend, preprocess, spec_key, timing_input
from facequant.backends.runtimes import OPENVINO, require_extra
from facequant.errors import FacequantError
from facequant.models.files import one_line
from facequant.models.spec import ModelSpec
from facequant.ranges import COUNT_RANGE, require

#: The precisions facequant sets (OpenVINO's INFERENCE_PRECISION_HINT values).
PRECISIONS = ("f32", "bf16")


def openvino_version() -> str:
    import openvino

    return str(openvino.__version__)


@dataclass
class OvBackend(Backend):
    """An ONNX model compiled by OpenVINO for the CPU at `precision` ("f32" or "bf16"), run in
    batches on one infer request (the input shape may change between calls)."""

    name: str
    model_path: Path
    spec: ModelSpec
    precision: str = "f32"
    batch_size: int = 64
    threads: int | None = None
    info: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(f"backend {self.name}: batch_size", self.batch_size, COUNT_RANGE, integer=True)
        if self.precision not in PRECISIONS:
            raise FacequantError(f"backend {self.name}: precision '{self.precision}': choose {', '.join(PRECISIONS)}")
        require_extra(self.name, "openvino")
        import openvino

        if self.precision == "bf16" and not cpu.has_bf16():
            # The plugin would quietly run f32 (or emulate): what ran would not be bf16.
            raise FacequantError(f"backend '{self.name}': this CPU has no native bf16 (no avx512_bf16 or amx_bf16 "
                                 "in /proc/cpuinfo), so OpenVINO would not run bf16; measure it on a CPU that has it")
        self._threads = self.threads or settings.ort_threads()
        config = {"INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": self._threads,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        try:
            self._compiled = openvino.Core().compile_model(str(self.model_path), "CPU", config)
        except Exception as exc:
            raise FacequantError(f"{self.model_path}: OpenVINO cannot compile it ({one_line(exc)})") from exc
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        actual = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        if actual != self.precision:
            raise FacequantError(f"backend '{self.name}': asked OpenVINO for {self.precision}, it compiled {actual}")
        self._actual_precision = actual
        self._request = self._compiled.create_infer_request()
        try:
            self._output = self._compiled.output(self.spec.output_name)
        except Exception:  # noqa: BLE001 - an IR renamed on conversion: the model's only output
            self._output = self._compiled.output(0)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        return np.array(self._request.infer({0: x})[self._output], dtype=np.float32)

    def run(self, tensors: np.ndarray) -> np.ndarray:
        """Preprocessed NCHW tensors -> embeddings, in batches."""
        outs = [self._infer(tensors[i : i + self.batch_size]) for i in range(0, len(tensors), self.batch_size)]
        emb = np.concatenate(outs) if outs else np.zeros((0, self.spec.embedding_dim), np.float32)
        return emb.reshape(len(tensors), -1)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return self.run(preprocess(crops, self.spec))

    def batch_runner(self, threads: int, batch: int = 1) -> Callable[[], object]:
        timed = self if threads == self._threads else dataclasses.replace(self, threads=threads)
        x = timing_input(self.spec, batch)
        return lambda: timed._request.infer({0: x})

    def cache_key(self) -> str | None:
        # bf16 and INT8 kernels differ by CPU (AMX, AVX512-BF16, VNNI): a shared cache keeps them apart
        features = ",".join(sorted(cpu.result_flags()))
        return f"openvino|{openvino_version()}|{self.precision}|{features}|{spec_key(self.model_path, self.spec)}"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": "openvino", "runtime": OPENVINO, "runtime_version": openvino_version(),
                "device": "CPU", "inference_precision": self._actual_precision, "threads": self._threads,
                "model": str(self.model_path), "file_bytes": self.model_path.stat().st_size, **self.info}

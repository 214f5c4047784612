"""Quantization recipes as data, built with onnxruntime.quantization and cached."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from facequant import settings
from facequant.errors import FacequantError

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
_QUANT_TYPES = {
    "uint8": QuantType.QUInt8,
    "int8": QuantType.QInt8,
    "uint16": QuantType.QUInt16,
    "int16": QuantType.QInt16,
}
#: Bump when the build changes so stale cached models are not reused.
_BUILD_VERSION = "1"


@dataclass(frozen=True)
class QuantRecipe:
    """How to turn the float model into a static QDQ model; recorded in run.json as is."""

    name: str
    weight_type: str = "int8"
    activation_type: str = "uint8"
    per_channel: bool = False
    calibration_method: str = "minmax"
    symmetric_activations: bool = False
    description: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def with_calibration(self, method: str) -> QuantRecipe:
        if method not in CALIBRATION_METHODS:
            raise FacequantError(f"calibration method '{method}': choose one of {', '.join(CALIBRATION_METHODS)}")
        return QuantRecipe(**{**asdict(self), "calibration_method": method})


RECIPES: dict[str, QuantRecipe] = {
    "int8-pt": QuantRecipe(
        "int8-pt", per_channel=False,
        description="static INT8 QDQ, per-tensor weights, MinMax: what a simple NPU flow does"),
    "int8-pc": QuantRecipe(
        "int8-pc", per_channel=True,
        description="static INT8 QDQ, per-channel weights"),
    "a16w8": QuantRecipe(
        "a16w8", activation_type="uint16", per_channel=True,
        description="16-bit activations, per-channel INT8 weights"),
}


class _ArrayReader(CalibrationDataReader):
    """Feeds preprocessed calibration tensors one sample at a time (ORT's data-reader protocol)."""

    def __init__(self, input_name: str, tensors: np.ndarray) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter(
            {input_name: tensors[i : i + 1]} for i in range(len(tensors)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def calibration_hash(tensors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tensors, dtype=np.float32).tobytes()).hexdigest()[:16]


def quantized_model_path(model: Path, model_sha: str, recipe: QuantRecipe, calib_hash: str, cache: Path | None = None) -> Path:
    key = json.dumps({"model": model_sha, "recipe": recipe.to_dict(), "calib": calib_hash, "v": _BUILD_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root = (cache or settings.cache_dir()) / "quantized"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{recipe.name}-{digest}.onnx"


def build_quantized(
    model: Path,
    model_sha: str,
    input_name: str,
    recipe: QuantRecipe,
    calibration: np.ndarray,
    cache: Path | None = None,
) -> Path:
    """Quantize `model` (already normalized: opset >= 13, dynamic batch) with `recipe`,
    calibrated on `calibration` (N, C, H, W preprocessed). Cached by (model, recipe, data)."""
    if len(calibration) == 0:
        raise FacequantError(f"{recipe.name}: no calibration images")
    out = quantized_model_path(model, model_sha, recipe, calibration_hash(calibration), cache)
    if out.exists():
        return out
    extra: dict[str, object] = {"ActivationSymmetric": recipe.symmetric_activations}
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        try:
            quant_pre_process(str(model), str(prepped), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing is an optimisation; quantize the model as is
            logging.getLogger(__name__).warning("quant_pre_process failed (%s); quantizing without it", exc)
            prepped = model
        partial = Path(tmp) / out.name
        # ORT logs advisory warnings on every call (pre-processing, opset upgrade for 16 bit).
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            quantize_static(
                str(prepped), str(partial),
                _ArrayReader(input_name, calibration),
                quant_format=QuantFormat.QDQ,
                activation_type=_QUANT_TYPES[recipe.activation_type],
                weight_type=_QUANT_TYPES[recipe.weight_type],
                per_channel=recipe.per_channel,
                calibrate_method=CALIBRATION_METHODS[recipe.calibration_method],
                extra_options=extra,
            )
        except Exception as exc:
            raise FacequantError(f"{model}: quantization with recipe {recipe.name} failed: {exc}") from exc
        finally:
            logging.getLogger().setLevel(level)
        os.replace(partial, out)
    return out

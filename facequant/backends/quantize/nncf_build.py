"""NNCF post-training quantization of the normalized float model on facequant's own calibration
crops (the ones ORT's recipes use), into a QDQ ONNX model that ONNX Runtime and OpenVINO both
run; cached and sealed like every quantized model, the key holding NNCF's version and every
parameter. NNCF is imported only here (the `openvino` extra)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from facequant import cache as cache_entry
from facequant import settings
from facequant.backends.quantize.build import calibration_hash
from facequant.backends.runtimes import NncfRecipe, require_extra
from facequant.errors import FacequantError
from facequant.models.files import one_line

#: Bump when the build changes so stale cached models are not reused.
NNCF_BUILD_VERSION = "1"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def nncf_version() -> str:
    return _version("nncf")


def import_nncf(name: str) -> Any:
    """nncf, or a one-line error naming the extra. NNCF sends usage telemetry unless told it
    runs in CI; facequant runs offline and sends nothing on a user's behalf."""
    os.environ.setdefault("NNCF_CI", "1")
    require_extra(name, "nncf")
    import nncf

    nncf.set_log_level(logging.ERROR)
    return nncf


def nncf_key(model_sha: str, recipe: NncfRecipe, calib_hash: str) -> dict[str, object]:
    """What an NNCF model is built from: its cache key, recorded beside the cached file. NNCF's
    ONNX backend collects its statistics with ONNX Runtime: its version is part of it too."""
    return {"model": model_sha, "nncf_recipe": recipe.build_params(), "calib": calib_hash, "v": NNCF_BUILD_VERSION,
            "nncf": nncf_version(), "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx")}


def nncf_model_path(model_sha: str, recipe: NncfRecipe, calib_hash: str, cache: Path | None = None) -> Path:
    key = json.dumps(nncf_key(model_sha, recipe, calib_hash), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root = (cache or settings.cache_dir()) / "quantized"
    root.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", "nncf" + recipe.name.partition("int8")[2])[:60]
    return root / f"{stem}-{digest}.onnx"


def quantize_arguments(nncf: Any, recipe: NncfRecipe, n_calibration: int) -> dict[str, Any]:
    """Every nncf.quantize argument but the model and the data: the one place a recipe becomes
    NNCF's options. NNCF runs SmoothQuant only for model_type=transformer, which also keeps
    the residual Adds of a CNN in float (NNCF's transformer patterns); run.json says so."""
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    advanced = AdvancedQuantizationParameters(disable_bias_correction=recipe.bias_correction == "none")
    kwargs: dict[str, Any] = {
        "preset": nncf.QuantizationPreset.MIXED if recipe.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        "subset_size": min(recipe.subset_size, n_calibration),
        "fast_bias_correction": recipe.bias_correction != "full",
        "target_device": nncf.TargetDevice.ANY,
    }
    if recipe.smooth_quant is not None:
        alpha = recipe.smooth_quant
        advanced.smooth_quant_alphas = AdvancedSmoothQuantParameters(convolution=alpha, matmul=alpha)
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if recipe.layers_float:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(recipe.layers_float))
    kwargs["advanced_parameters"] = advanced
    return kwargs


def nncf_dataset(nncf: Any, input_name: str, tensors: np.ndarray) -> Any:
    """Calibration tensors one sample at a time, as NNCF's ONNX backend reads them."""
    return nncf.Dataset([{input_name: tensors[i : i + 1]} for i in range(len(tensors))])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """NNCF draws progress bars on stdout and stderr: not in facequant's output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def build_nncf(model: Path, model_sha: str, input_name: str, recipe: NncfRecipe, calibration: np.ndarray,
               cache: Path | None = None) -> Path:
    """Quantize `model` (normalized: opset >= 13, dynamic batch) with NNCF on `calibration`
    (N, C, H, W preprocessed), cached by (model, parameters, data, NNCF version); a cached
    entry is checked against its recorded hash when used."""
    if calibration is None or len(calibration) == 0:
        raise FacequantError(f"{recipe.name}: no calibration images")
    calib = calibration_hash(calibration)
    out = nncf_model_path(model_sha, recipe, calib, cache)
    key = nncf_key(model_sha, recipe, calib)
    if cache_entry.verified(out, key, f"{recipe.name} model"):
        return out
    nncf = import_nncf(recipe.name)
    with cache_entry.build_dir(out.parent) as tmp_dir:
        partial = Path(tmp_dir) / out.name
        try:
            with quiet():
                quantized = nncf.quantize(onnx.load(str(model)), nncf_dataset(nncf, input_name, calibration),
                                          **quantize_arguments(nncf, recipe, len(calibration)))
            onnx.save(quantized, str(partial))
        except FacequantError:
            raise
        except Exception as exc:
            raise FacequantError(f"{model}: NNCF quantization {recipe.name} failed: {one_line(exc)}") from exc
        cache_entry.commit(partial, out, key)
    return out


def float_nodes(quantized: Path, weighted: tuple[str, ...]) -> list[str]:
    """Which of the `weighted` layers run in float in a QDQ model: neither their weight nor
    their input arrives through DequantizeLinear."""
    graph = onnx.load(str(quantized), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    by_name = {n.name: n for n in graph.node}
    out = []
    for name in weighted:
        node = by_name.get(name)
        if node is None:
            continue
        fed = [producer.get(t) for t in node.input[:2]]
        if not any(p is not None and p.op_type == "DequantizeLinear" for p in fed):
            out.append(name)
    return out

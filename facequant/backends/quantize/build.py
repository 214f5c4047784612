"""Building a recipe's model with onnxruntime.quantization (static QDQ with overrides, dynamic,
float16), calibrated, checked and sealed in the cache."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from facequant import cache as cache_entry
from facequant import settings
from facequant.backends.quantize.layers import GraphLayers, graph_layers
from facequant.backends.quantize.npu import rewrite_pow2_scales
from facequant.backends.quantize.recipes import (
    BUILD_VERSION,
    CALIBRATION_METHODS,
    QUANT_TYPES,
    QuantRecipe,
)
from facequant.errors import FacequantError

# --- building --------------------------------------------------------------------------------

class _ArrayReader(CalibrationDataReader):
    """Feeds preprocessed calibration tensors one sample at a time (ORT's data-reader protocol)."""

    def __init__(self, input_name: str, tensors: np.ndarray) -> None:
        self._items: Iterator[dict[str, np.ndarray]] = iter(
            {input_name: tensors[i : i + 1]} for i in range(len(tensors)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def calibration_hash(tensors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tensors, dtype=np.float32).tobytes()).hexdigest()[:16]


def quantized_key(model_sha: str, recipe: QuantRecipe, calib_hash: str) -> dict[str, object]:
    """What a quantized model is built from: its cache key, recorded beside the cached file."""
    import onnxruntime  # ORT builds it: another release may quantize differently

    return {"model": model_sha, "recipe": recipe.to_dict(), "calib": calib_hash, "v": BUILD_VERSION,
            "onnxruntime": onnxruntime.__version__}


def quantized_model_path(model: Path, model_sha: str, recipe: QuantRecipe, calib_hash: str, cache: Path | None = None) -> Path:
    key = json.dumps(quantized_key(model_sha, recipe, calib_hash), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root = (cache or settings.cache_dir()) / "quantized"
    root.mkdir(parents=True, exist_ok=True)
    cache_entry.clean_stale_builds(root)  # a killed build's scratch folder, even when nothing is built now
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", recipe.name)[:60]  # mixed names hold ':', ';', paths
    return root / f"{stem}-{digest}.onnx"


def pow2_moves_path(quantized: Path) -> Path:
    """Where the power-of-two rewrite of a cached model lists every scale it moved."""
    return quantized.with_name(quantized.stem + ".pow2.json")


@contextmanager
def _quiet() -> Iterator[None]:
    # ORT logs advisory warnings on every call (pre-processing, opset upgrade for 16 bit), and
    # its histogram calibrators (entropy, percentile) print() their steps ("Collecting tensor
    # data and making histogram ..."): facequant's progress bar says what runs, --quiet nothing.
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.getLogger().setLevel(level)


def tensor_overrides(recipe: QuantRecipe, layers: GraphLayers) -> dict[str, list[dict[str, object]]]:
    """ORT TensorQuantOverrides putting recipe.layers_16bit's input, weight and output tensors
    at 16 bit (the bias stays int32, quantized by ORT with the 16-bit scales)."""
    overrides: dict[str, list[dict[str, object]]] = {}
    if not recipe.layers_16bit:
        return overrides
    act, wt = QUANT_TYPES[recipe.activation_type_16bit], QUANT_TYPES[recipe.weight_type_16bit]
    for node in recipe.layers_16bit:
        for t in layers.activations.get(node, ()):
            overrides[t] = [{"quant_type": act}]
        if node in layers.weights:
            w, axis = layers.weights[node]
            overrides[w] = [{"quant_type": wt, "axis": axis}] if recipe.per_channel else [{"quant_type": wt}]
    return overrides


#: Histogram bins for entropy calibration. quantize_static builds its Entropy calibrator with
#: num_bins == num_quantized_bins == 128, which leaves the KL search a single candidate (the
#: full range): in ORT 1.31 "entropy" then gives exactly MinMax's scales. TensorRT's recipe
#: searches 2048 bins down to 128.
ENTROPY_BINS = 2048
ENTROPY_QUANTIZED_BINS = 128


def entropy_ranges(model: Path, input_name: str, calibration: np.ndarray, symmetric: bool,
                   tmp: Path) -> dict[str, tuple[np.float32, np.float32]]:
    """Per-tensor activation ranges from ORT's entropy (KL) calibrator with enough bins to
    search; fed to quantize_static as TensorQuantOverrides rmin/rmax."""
    from onnxruntime.quantization import create_calibrator

    calibrator = create_calibrator(
        str(model), augmented_model_path=str(tmp / "entropy_augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS,
                       "symmetric": symmetric})
    calibrator.collect_data(_ArrayReader(input_name, calibration))
    ranges = {}
    for tensor, data in calibrator.compute_data().items():
        lo, hi = data.range_value
        ranges[tensor] = (np.float32(lo), np.float32(hi))
    return ranges


def prepare_for_quantization(model: Path, recipe: QuantRecipe, tmp: Path) -> Path:
    """onnxruntime's quant_pre_process (shape inference, graph optimisation), unless it fails
    or renames a layer the recipe chose by name: then the model as it is."""
    prepped = tmp / "prepped.onnx"
    try:
        quant_pre_process(str(model), str(prepped), skip_symbolic_shape=True)
    except Exception as exc:  # pre-processing is an optimisation; quantize the model as is
        logging.getLogger(__name__).warning("quant_pre_process failed (%s); quantizing without it", exc)
        return model
    chosen = set(recipe.layers_16bit) | set(recipe.layers_float)
    if chosen:
        try:
            renamed = not chosen <= set(graph_layers(prepped).nodes)
        except FacequantError:  # pre-processing left a weighted node without a name
            renamed = True
        if renamed:  # pre-processing renamed or fused a chosen node: quantize the model as named
            return model
    return prepped


def static_quant_options(prepped: Path, input_name: str, recipe: QuantRecipe, calibration: np.ndarray,
                         tmp: Path) -> dict[str, Any]:
    """Every quantize_static argument but the model paths and the data reader: the one place
    a static recipe becomes ORT options, so the exported JSON is exactly what was built."""
    extra: dict[str, object] = {"ActivationSymmetric": recipe.symmetric_activations}
    overrides = tensor_overrides(recipe, graph_layers(prepped)) if recipe.layers_16bit else {}
    if recipe.calibration_method == "entropy":
        ranges = entropy_ranges(prepped, input_name, calibration, recipe.symmetric_activations, tmp)
        for tensor, (lo, hi) in ranges.items():
            overrides.setdefault(tensor, [{"rmin": lo, "rmax": hi}])  # 16-bit layers keep their own
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    return {
        "quant_format": QuantFormat.QDQ,
        "activation_type": QUANT_TYPES[recipe.activation_type],
        "weight_type": QUANT_TYPES[recipe.weight_type],
        "per_channel": recipe.per_channel,
        "calibrate_method": CALIBRATION_METHODS[recipe.calibration_method],
        "nodes_to_exclude": list(recipe.layers_float) or None,
        "extra_options": extra,
    }


def _build_static(model: Path, out: Path, input_name: str, recipe: QuantRecipe, calibration: np.ndarray, tmp: Path) -> None:
    prepped = prepare_for_quantization(model, recipe, tmp)
    options = static_quant_options(prepped, input_name, recipe, calibration, tmp)
    quantize_static(str(prepped), str(out), _ArrayReader(input_name, calibration), **options)


def build_quantized(
    model: Path,
    model_sha: str,
    input_name: str,
    recipe: QuantRecipe,
    calibration: np.ndarray | None,
    cache: Path | None = None,
) -> Path:
    """Build `recipe` from `model` (already normalized: opset >= 13, dynamic batch); static
    recipes are calibrated on `calibration` (N, C, H, W preprocessed), the others ignore it.
    Cached by (model, recipe, data), each entry checked against its recorded hash when used.
    A pow2 recipe also leaves `pow2_moves_path(model)`."""
    if recipe.needs_calibration:
        if calibration is None or len(calibration) == 0:
            raise FacequantError(f"{recipe.name}: no calibration images")
        calib = calibration_hash(calibration)
    else:
        calib = "none"
    out = quantized_model_path(model, model_sha, recipe, calib, cache)
    key = quantized_key(model_sha, recipe, calib)
    if cache_entry.verified(out, key, f"{recipe.name} model") and (
            not recipe.pow2_scales or cache_entry.verified(pow2_moves_path(out), key, f"{recipe.name} moves list")):
        return out
    with cache_entry.build_dir(out.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        partial = tmp / out.name
        with _quiet():
            try:
                if recipe.method == "fp16":
                    from onnxruntime.transformers.float16 import convert_float_to_float16

                    onnx.save(convert_float_to_float16(onnx.load(str(model)), keep_io_types=True), str(partial))
                elif recipe.method == "dynamic":
                    quantize_dynamic(str(model), str(partial), weight_type=QUANT_TYPES[recipe.weight_type],
                                     per_channel=recipe.per_channel)
                else:
                    assert calibration is not None
                    _build_static(model, partial, input_name, recipe, calibration, tmp)
            except FacequantError:
                raise
            except Exception as exc:
                raise FacequantError(f"{model}: quantization with recipe {recipe.name} failed: {exc}") from exc
        if recipe.pow2_scales:
            qmodel = onnx.load(str(partial))
            moves = rewrite_pow2_scales(qmodel)
            onnx.save(qmodel, str(partial))
            _check_loads(partial, recipe)
            side = pow2_moves_path(out)
            side_partial = tmp / side.name
            side_partial.write_text(json.dumps({"recipe": recipe.name, "moves": moves}, indent=1))
            cache_entry.commit(side_partial, side, key)  # the moves first: a cached model always has its list
        cache_entry.commit(partial, out, key)
    return out


def _check_loads(path: Path, recipe: QuantRecipe) -> None:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise FacequantError(f"{recipe.name}: the rewritten model does not load in ONNX Runtime ({exc})") from exc



"""Quantization recipes as data, built with onnxruntime.quantization and cached.

A recipe is a preset (``int8-pt``, ``fp16``, ``int8-npu`` ...) or a static preset with
mixed-precision layer selectors, written the way users type backends::

    BASE(+16bit:SELECTOR | +float:SELECTOR)*
    SELECTOR = lastN | firstN | dw | nodes=A;B;C | file=PATH

``+16bit:`` keeps the chosen layers' input, weight and output tensors at 16 bit inside the
INT8 model (ORT TensorQuantOverrides); ``+float:`` leaves them unquantized (nodes_to_exclude).
Selectors resolve to node names against the model, and the names are part of the recipe,
so run.json and the cache key record exactly which layers were chosen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import logging
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from facequant import cache as cache_entry
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
_BUILD_VERSION = "4"
#: Op types whose second input, when an initializer, makes them a "weighted layer" for selectors.
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
SELECTOR_HELP = "lastN, firstN, dw, nodes=A;B;C or file=PATH"
LAYER_KINDS = ("16bit", "float")


@dataclass(frozen=True)
class QuantRecipe:
    """How to turn the float model into the backend's model; recorded in run.json as is.

    method: "static" (quantize_static, QDQ), "dynamic" (quantize_dynamic) or "fp16"
    (convert_float_to_float16, float32 I/O). For mixed recipes, `base` names the preset,
    `selectors` are the selectors as typed and `layers_16bit` / `layers_float` the node names
    they resolved to on this model (float wins when a node is chosen by both).
    """

    name: str
    weight_type: str = "int8"
    activation_type: str = "uint8"
    per_channel: bool = False
    calibration_method: str = "minmax"
    symmetric_activations: bool = False
    description: str = ""
    method: str = "static"
    precision: str = ""  # short label for reports
    pow2_scales: bool = False  # every Q/DQ scale rewritten to the nearest power of two
    base: str = ""  # the preset a mixed recipe was derived from
    selectors: tuple[str, ...] = ()
    layers_16bit: tuple[str, ...] = ()
    layers_float: tuple[str, ...] = ()
    activation_type_16bit: str = ""  # what layers_16bit's activations / weights become
    weight_type_16bit: str = ""

    def to_dict(self) -> dict[str, object]:
        """Everything that defines the build, JSON-ready (tuples as lists); the cache key."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def needs_calibration(self) -> bool:
        return self.method == "static"

    def with_calibration(self, method: str) -> QuantRecipe:
        if method not in CALIBRATION_METHODS:
            raise FacequantError(f"calibration method '{method}': choose one of {', '.join(CALIBRATION_METHODS)}")
        if not self.needs_calibration:
            return self  # dynamic and fp16 recipes are not calibrated
        return dataclasses.replace(self, calibration_method=method)


RECIPES: dict[str, QuantRecipe] = {
    "int8-pt": QuantRecipe(
        "int8-pt", per_channel=False, precision="w8a8",
        description="static INT8 QDQ, per-tensor weights, MinMax: what a simple NPU flow does"),
    "int8-pc": QuantRecipe(
        "int8-pc", per_channel=True, precision="w8a8-pc",
        description="static INT8 QDQ, per-channel weights"),
    "a16w8": QuantRecipe(
        "a16w8", activation_type="uint16", per_channel=True, precision="w8a16",
        description="16-bit activations, per-channel INT8 weights"),
    "a16w16": QuantRecipe(
        "a16w16", weight_type="int16", activation_type="uint16", per_channel=True, precision="w16a16",
        description="static QDQ, uint16 activations, per-channel int16 weights (opset 21 Q/DQ)"),
    "int8-sym": QuantRecipe(
        "int8-sym", activation_type="int8", per_channel=False, symmetric_activations=True, precision="w8a8-sym",
        description="NPU constraints: symmetric int8 activations (zero point 0), per-tensor symmetric int8 weights"),
    "int8-npu": QuantRecipe(
        "int8-npu", activation_type="int8", per_channel=False, symmetric_activations=True, pow2_scales=True,
        precision="w8a8-sym-pow2",
        description="NPU constraints: int8-sym with every scale rounded to the nearest power of two"),
    "int8-dyn": QuantRecipe(
        "int8-dyn", method="dynamic", calibration_method="none", precision="w8a8-dyn",
        description="quantize_dynamic: INT8 weights, activations quantized per batch at run time"),
    "fp16": QuantRecipe(
        "fp16", weight_type="float16", activation_type="float16", method="fp16", calibration_method="none",
        precision="fp16", description="float16 weights and activations, float32 input and output"),
}


# --- names -------------------------------------------------------------------------------

_PART_SPLIT = re.compile(r"\+(?=[A-Za-z0-9_]+:)")
_COUNT_SELECTOR = re.compile(r"(last|first)(\d+)")


def split_recipe_name(name: str) -> tuple[str, list[tuple[str, str]]]:
    """'int8-pc+16bit:last3+float:first1' -> ('int8-pc', [('16bit', 'last3'), ('float', 'first1')]).

    Checks the syntax only (the model resolves node names); errors name the bad part."""
    base, *parts = _PART_SPLIT.split(name)
    if base not in RECIPES:
        head, plus, tail = base.partition("+")
        if plus and head in RECIPES:
            raise FacequantError(f"backend '{name}': '+{tail}' not understood; use +16bit:SELECTOR or +float:SELECTOR")
        raise FacequantError(f"backend '{name}': unknown base '{base}'; available: {', '.join(RECIPES)}")
    if not parts:
        return base, []
    if RECIPES[base].method != "static":
        raise FacequantError(f"backend '{name}': layer selectors need a static base recipe, not '{base}' "
                             f"({', '.join(n for n, r in RECIPES.items() if r.method == 'static')})")
    out: list[tuple[str, str]] = []
    for part in parts:
        kind, _, selector = part.partition(":")
        if kind not in LAYER_KINDS:
            raise FacequantError(f"backend '{name}': '+{part}': precision '{kind}' unknown; use +16bit: or +float:")
        _check_selector(name, selector)
        out.append((kind, selector))
    return base, out


def _check_selector(name: str, selector: str) -> None:
    if m := _COUNT_SELECTOR.fullmatch(selector):
        if int(m.group(2)) < 1:
            raise FacequantError(f"backend '{name}': selector '{selector}' chooses no layer; N must be >= 1")
        return
    if selector == "dw":
        return
    if selector.startswith("nodes="):
        if not [n for n in selector[len("nodes="):].split(";") if n.strip()]:
            raise FacequantError(f"backend '{name}': selector '{selector}' names no node (nodes=A;B;C)")
        return
    if selector.startswith("file="):
        path = Path(selector[len("file="):]).expanduser()
        if not path.is_file():
            raise FacequantError(f"backend '{name}': layer file {path} not found")
        return
    raise FacequantError(f"backend '{name}': selector '{selector}' not understood; use {SELECTOR_HELP}")


def is_recipe_name(name: str) -> bool:
    """True for a preset or a well-formed mixed name; raises FacequantError naming the bad part
    when the name looks like a mixed recipe but is not one."""
    if name in RECIPES:
        return True
    base = _PART_SPLIT.split(name)[0]
    if base == name and "+" not in name:
        return False
    split_recipe_name(name)
    return True


# --- the model's layers --------------------------------------------------------------------

@dataclass(frozen=True)
class GraphLayers:
    """Node names of a model, for selectors: all nodes and the weighted layers (Conv, Gemm,
    MatMul with an initializer weight) that feed the outputs, in topological order."""

    nodes: tuple[str, ...]
    weighted: tuple[str, ...]
    depthwise: tuple[str, ...]
    activations: dict[str, tuple[str, ...]]  # node -> its non-initializer input and output tensors
    weights: dict[str, tuple[str, int]]  # weighted node -> (weight initializer, per-channel axis)


def _topological(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Kahn's algorithm, ties broken by file order (ONNX files are usually sorted already)."""
    produced_by = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    deps = [{produced_by[t] for t in n.input if t in produced_by} for n in graph.node]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    return [graph.node[i] for i in order]


@lru_cache(maxsize=8)
def _graph_layers_cached(path: str, mtime_ns: int) -> GraphLayers:
    model = onnx.load(path, load_external_data=False)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = _topological(graph)
    # Ancestors of the graph outputs: the layers "before the embedding output".
    producer = {o: n for n in nodes for o in n.output if o}
    needed: set[int] = set()
    stack = [o.name for o in graph.output]
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or id(n) in needed:
            continue
        needed.add(id(n))
        stack.extend(n.input)
    weighted, depthwise = [], []
    weights: dict[str, tuple[str, int]] = {}
    for pos, n in enumerate(nodes):
        if n.op_type not in WEIGHTED_OPS or len(n.input) < 2 or n.input[1] not in inits or id(n) not in needed:
            continue
        if not n.name:
            raise FacequantError(f"{path}: weighted node #{pos} ({n.op_type}) has no name; layer selectors need names")
        weighted.append(n.name)
        w = inits[n.input[1]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Conv":
            axis = 0
            group = int(attrs.get("group", 1))
            if group > 1 and len(w.dims) > 1 and w.dims[1] == 1:  # group == input channels
                depthwise.append(n.name)
        elif n.op_type == "Gemm":
            axis = 0 if attrs.get("transB", 0) else 1
        else:
            axis = 1  # ORT's default channel axis for MatMul weights
        weights[n.name] = (n.input[1], axis)
    activations = {n.name: tuple(t for t in [*n.input, *n.output] if t and t not in inits) for n in nodes if n.name}
    return GraphLayers(tuple(n.name for n in nodes if n.name), tuple(weighted), tuple(depthwise), activations, weights)


def graph_layers(model: Path) -> GraphLayers:
    model = Path(model)
    return _graph_layers_cached(str(model.resolve()), model.stat().st_mtime_ns)


def _read_layer_file(name: str, path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FacequantError(f"backend '{name}': layer file {path} cannot be read ({exc.strerror})") from exc
    out = [line.split("#", 1)[0].strip() for line in lines]
    out = [n for n in out if n]
    if not out:
        raise FacequantError(f"backend '{name}': layer file {path} names no node (one node name per line)")
    return out


def select_layers(layers: GraphLayers, selector: str, name: str = "") -> list[str]:
    """The node names a selector chooses on a model, in topological order."""
    name = name or selector
    if m := _COUNT_SELECTOR.fullmatch(selector):
        n = int(m.group(2))
        if n > len(layers.weighted):
            raise FacequantError(f"backend '{name}': selector '{selector}' asks for {n} layers; "
                                 f"the model has {len(layers.weighted)} weighted layers")
        return list(layers.weighted[-n:] if m.group(1) == "last" else layers.weighted[:n])
    if selector == "dw":
        if not layers.depthwise:
            raise FacequantError(f"backend '{name}': selector 'dw': the model has no depthwise convolution")
        return list(layers.depthwise)
    if selector.startswith("nodes="):
        chosen = [n.strip() for n in selector[len("nodes="):].split(";") if n.strip()]
    elif selector.startswith("file="):
        chosen = _read_layer_file(name, Path(selector[len("file="):]).expanduser())
    else:
        raise FacequantError(f"backend '{name}': selector '{selector}' not understood; use {SELECTOR_HELP}")
    known = set(layers.nodes)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        sample = [*layers.weighted[:3], "...", *layers.weighted[-3:]] if len(layers.weighted) > 6 else list(layers.weighted)
        raise FacequantError(f"backend '{name}': node(s) {', '.join(unknown)} not in the model; "
                             f"valid names include {', '.join(sample)}")
    order = {n: i for i, n in enumerate(layers.nodes)}
    return sorted(dict.fromkeys(chosen), key=order.__getitem__)


def resolve_recipe(name: str, model: Path) -> QuantRecipe:
    """The recipe a backend name stands for, with selectors resolved to node names on `model`."""
    if name in RECIPES:
        return RECIPES[name]
    base_name, parts = split_recipe_name(name)
    base = RECIPES[base_name]
    if not parts:
        return base
    layers = graph_layers(model)
    chosen: dict[str, list[str]] = {kind: [] for kind in LAYER_KINDS}
    for kind, selector in parts:
        chosen[kind].extend(select_layers(layers, selector, name))
    order = {n: i for i, n in enumerate(layers.nodes)}
    floats = sorted(set(chosen["float"]), key=order.__getitem__)
    sixteen = sorted(set(chosen["16bit"]) - set(floats), key=order.__getitem__)
    act16 = "int16" if base.activation_type.startswith("int") else "uint16"
    label = base.precision + (f"+16bit:{len(sixteen)}" if sixteen else "") + (f"+float:{len(floats)}" if floats else "")
    desc = base.description
    if sixteen:
        desc += f"; 16-bit ({act16} activations, int16 weights): {', '.join(sixteen)}"
    if floats:
        desc += f"; left in float: {', '.join(floats)}"
    return dataclasses.replace(
        base, name=name, base=base_name, selectors=tuple(f"{k}:{s}" for k, s in parts),
        layers_16bit=tuple(sixteen), layers_float=tuple(floats), precision=label, description=desc,
        activation_type_16bit=act16 if sixteen else "", weight_type_16bit="int16" if sixteen else "")


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

    return {"model": model_sha, "recipe": recipe.to_dict(), "calib": calib_hash, "v": _BUILD_VERSION,
            "onnxruntime": onnxruntime.__version__}


def quantized_model_path(model: Path, model_sha: str, recipe: QuantRecipe, calib_hash: str, cache: Path | None = None) -> Path:
    key = json.dumps(quantized_key(model_sha, recipe, calib_hash), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root = (cache or settings.cache_dir()) / "quantized"
    root.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", recipe.name)[:60]  # mixed names hold ':', ';', paths
    return root / f"{stem}-{digest}.onnx"


def pow2_moves_path(quantized: Path) -> Path:
    """Where the power-of-two rewrite of a cached model lists every scale it moved."""
    return quantized.with_name(quantized.stem + ".pow2.json")


@contextmanager
def _quiet() -> Iterator[None]:
    # ORT logs advisory warnings on every call (pre-processing, opset upgrade for 16 bit).
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.getLogger().setLevel(level)


def tensor_overrides(recipe: QuantRecipe, layers: GraphLayers) -> dict[str, list[dict[str, object]]]:
    """ORT TensorQuantOverrides putting recipe.layers_16bit's input, weight and output tensors
    at 16 bit (the bias stays int32, quantized by ORT with the 16-bit scales)."""
    overrides: dict[str, list[dict[str, object]]] = {}
    if not recipe.layers_16bit:
        return overrides
    act, wt = _QUANT_TYPES[recipe.activation_type_16bit], _QUANT_TYPES[recipe.weight_type_16bit]
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
        "activation_type": _QUANT_TYPES[recipe.activation_type],
        "weight_type": _QUANT_TYPES[recipe.weight_type],
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
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp_dir:
        tmp = Path(tmp_dir)
        partial = tmp / out.name
        with _quiet():
            try:
                if recipe.method == "fp16":
                    from onnxruntime.transformers.float16 import convert_float_to_float16

                    onnx.save(convert_float_to_float16(onnx.load(str(model)), keep_io_types=True), str(partial))
                elif recipe.method == "dynamic":
                    quantize_dynamic(str(model), str(partial), weight_type=_QUANT_TYPES[recipe.weight_type],
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


# --- power-of-two scales ---------------------------------------------------------------------

def _nearest_pow2(scale: np.ndarray) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise FacequantError(f"power-of-two rewrite: scale {s.ravel()[:4]} is not positive and finite")
    return np.exp2(np.round(np.log2(s)))


def _axis_shape(dq: onnx.NodeProto, q: np.ndarray, scale: np.ndarray) -> list[int]:
    """The shape that broadcasts a DequantizeLinear's scale over its constant (per-axis or not)."""
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[next((a.i for a in dq.attribute if a.name == "axis"), 1)] = -1
    return shape


def _per_axis(zp: np.ndarray, dq: onnx.NodeProto, q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return zp.reshape(_axis_shape(dq, q, scale)) if zp.size > 1 else zp


def _best_pow2_for_constant(q: np.ndarray, zp: np.ndarray, s_old: np.ndarray, axis_shape: list[int]
                            ) -> np.ndarray:
    """For a quantized constant, per scale element: the power of two just below or just above
    the old scale, whichever re-quantizes the values with the smaller squared error. Nearest in
    log2 alone can round down by up to 1/sqrt(2) and clip a tensor's largest weights (a 16-bit
    layer's especially: its scale has no slack); weights are known, so the choice can be
    measured, as fixed-point toolchains do when they pick a tensor's fractional bits."""
    real = (q.astype(np.float64) - zp) * s_old.reshape(axis_shape)
    lo, hi = _qrange(q.dtype)
    reduce_axes = tuple(i for i, n in enumerate(axis_shape) if n == 1) if s_old.size > 1 else None
    best, best_err = None, None
    for cand in (np.exp2(np.floor(np.log2(s_old))), np.exp2(np.ceil(np.log2(s_old)))):
        c = cand.reshape(axis_shape)
        deq = (np.clip(np.round(real / c) + zp, lo, hi) - zp) * c
        err = np.sum((deq - real) ** 2, axis=reduce_axes)
        err = np.asarray(err).reshape(s_old.shape)
        if best is None:
            best, best_err = cand.copy(), err
        else:
            take = err < best_err
            best = np.where(take, cand, best)
            best_err = np.where(take, err, best_err)
    return best  # type: ignore[return-value]


def _qrange(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _scalar_or_list(a: np.ndarray) -> float | list[float]:
    return float(a.ravel()[0]) if a.size == 1 else [float(v) for v in a.ravel()]


def rewrite_pow2_scales(model: onnx.ModelProto) -> list[dict[str, object]]:
    """Round every QuantizeLinear / DequantizeLinear scale of a QDQ model to a power of two, in
    place, keeping the quantized model consistent:

    - activation scales go to the nearest power of two in log2 (the calibrated range is itself
      an estimate; nearest keeps its expected resolution);
    - weight scales go to the power of two just below or above, whichever re-quantizes the
      weights with the smaller squared error (_best_pow2_for_constant);

    - activation Q/DQ pairs share their scale initializer, so replacing its value moves both;
    - constant weights behind a DequantizeLinear are re-quantized with the new scale,
      q' = clip(round((q - zp) * s_old / s_new) + zp);
    - int32 biases (scale s_in * s_w) get the scale s_in' * s_w' of their (rewritten) input
      and weight, itself a power of two, and are re-quantized to it.

    Returns one record per scale tensor: tensor, kind (activation / weight / bias), old and new
    scale, log2(new / old), and for constants how many values clipped."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    arrays: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(inits[name])
        return arrays[name]

    def store(name: str, array: np.ndarray) -> None:
        array = array.astype(value(name).dtype)  # scales stay float32, weights their integer type
        arrays[name] = array
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in qdq:
        if len(n.input) < 2 or n.input[1] not in inits:
            raise FacequantError(f"power-of-two rewrite: {n.name} has no constant scale")
    # Classify each scale initializer by what it quantizes.
    kind: dict[str, str] = {}
    constant_of: dict[str, onnx.NodeProto] = {}  # scale name -> the DequantizeLinear of a constant
    for n in qdq:
        s = n.input[1]
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            kind[s] = "bias" if inits[n.input[0]].data_type == onnx.TensorProto.INT32 else "weight"
            constant_of[s] = n
        else:
            kind.setdefault(s, "activation")
    old = {s: value(s).astype(np.float64) for s in kind}
    moves: list[dict[str, object]] = []
    new: dict[str, np.ndarray] = {}
    for s, k in kind.items():
        if k == "activation":
            new[s] = _nearest_pow2(old[s])
        elif k == "weight":
            _nearest_pow2(old[s])  # the same check for a bad scale
            dq = constant_of[s]
            q = value(dq.input[0])
            zp = value(dq.input[2]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else np.zeros(1)
            new[s] = _best_pow2_for_constant(q, _per_axis(zp, dq, q, old[s]), old[s], _axis_shape(dq, q, old[s]))
    # Bias scales follow from the rewritten input and weight scales of the node they feed.
    dq_out_scale = {n.output[0]: n.input[1] for n in qdq if n.op_type == "DequantizeLinear"}
    bias_of = {n.output[0]: n.input[1] for n in qdq if kind.get(n.input[1]) == "bias"}
    for node in graph.node:
        if len(node.input) > 2 and node.input[2] in bias_of:
            s_in, s_w = dq_out_scale.get(node.input[0]), dq_out_scale.get(node.input[1])
            if s_in in new and s_w in new:
                new[bias_of[node.input[2]]] = new[s_in] * new[s_w]
    for s in kind:
        if s not in new:  # a bias whose input or weight scale is not known: round it like the rest
            new[s] = _nearest_pow2(old[s])
    for s, k in kind.items():
        record: dict[str, object] = {"tensor": s, "kind": k, "old": _scalar_or_list(old[s]),
                                     "new": _scalar_or_list(new[s]),
                                     "log2_ratio": _scalar_or_list(np.log2(new[s] / old[s]))}
        if s in constant_of:
            dq = constant_of[s]
            q = value(dq.input[0])
            zp = value(dq.input[2]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else np.zeros(1)
            shape = _axis_shape(dq, q, old[s])
            s_old, s_new = old[s].reshape(shape), new[s].reshape(shape)
            zp = _per_axis(zp, dq, q, old[s])
            real = (q.astype(np.float64) - zp) * s_old
            lo, hi = _qrange(q.dtype)
            unclipped = np.round(real / s_new) + zp
            record["clipped"] = int(np.sum((unclipped < lo) | (unclipped > hi)))
            store(dq.input[0], np.clip(unclipped, lo, hi).astype(q.dtype))
        store(s, new[s].reshape(old[s].shape))
        moves.append(record)
    return moves


def pow2_summary(moves: Sequence[dict[str, object]]) -> dict[str, object]:
    """count, max and median |log2(new/old)| over the rounded scales (activations, weights);
    bias scales are products of those and are counted apart."""
    rounded = [m for m in moves if m["kind"] != "bias"]
    ratios = np.abs(np.concatenate([np.ravel(np.asarray(m["log2_ratio"], dtype=np.float64)) for m in rounded])) \
        if rounded else np.zeros(0)
    return {"scales": len(rounded), "bias_scales": len(moves) - len(rounded),
            "max_abs_log2_ratio": float(ratios.max()) if ratios.size else 0.0,
            "median_abs_log2_ratio": float(np.median(ratios)) if ratios.size else 0.0,
            "clipped_values": int(sum(int(m.get("clipped", 0)) for m in moves))}  # type: ignore[call-overload]

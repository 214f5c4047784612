"""Quantization recipes as data: the presets users type (int8-pt, fp16, int8-npu ...) and
the mixed-precision grammar BASE(+16bit:SELECTOR | +float:SELECTOR)*."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from onnxruntime.quantization import (
    CalibrationMethod,
    QuantType,
)

from facequant.errors import FacequantError
from facequant.ranges import CALIBRATION_METHODS as METHOD_NAMES

#: ONNX Runtime's method for each name users type (the names: facequant.ranges.CALIBRATION_METHODS).
CALIBRATION_METHODS = dict(zip(METHOD_NAMES, (CalibrationMethod.MinMax, CalibrationMethod.Entropy,
                                              CalibrationMethod.Percentile), strict=True))
QUANT_TYPES = {
    "uint8": QuantType.QUInt8,
    "int8": QuantType.QInt8,
    "uint16": QuantType.QUInt16,
    "int16": QuantType.QInt16,
}
#: Bump when the build changes so stale cached models are not reused.
BUILD_VERSION = "4"
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
COUNT_SELECTOR = re.compile(r"(last|first)(\d+)")


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
        check_selector(name, selector)
        out.append((kind, selector))
    return base, out


def check_selector(name: str, selector: str) -> None:
    if m := COUNT_SELECTOR.fullmatch(selector):
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



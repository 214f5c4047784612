"""A mixed-precision recipe, exported for the toolchains that deploy it: ORT's quantize_static
options (TensorQuantOverrides) as JSON, a per-layer precision JSON, and Hailo model-script lines."""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

from facequant import yamlfiles
from facequant.backends.quantize.build import prepare_for_quantization, static_quant_options
from facequant.backends.quantize.layers import graph_layers, resolve_recipe
from facequant.backends.quantize.recipes import QuantRecipe
from facequant.errors import FacequantError
from facequant.params import WHAT, nested, param
from facequant.results.jsonfile import write_json, write_run_json
from facequant.results.output import Inputs, staged_output
from facequant.sweep.config import SweepConfig

ORT_JSON = "ort_quantization.json"
PRECISION_JSON = "layer_precision.json"
HAILO_ALLS = "hailo_precision.alls"
RUN_JSON = "run.json"
_ENUMS = {"quant_format": QuantFormat, "activation_type": QuantType, "weight_type": QuantType,
          "calibrate_method": CalibrationMethod}


def _plain(value: Any) -> Any:
    """ORT enums and numpy scalars to JSON: enums by name, so the file reads as ORT's API does."""
    if isinstance(value, QuantType | QuantFormat | CalibrationMethod):
        return value.name
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def ort_options_to_json(options: dict[str, Any]) -> dict[str, Any]:
    return _plain(options)


def ort_options_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The inverse: keyword arguments for onnxruntime.quantization.quantize_static."""
    try:
        options = {k: (_ENUMS[k][v] if k in _ENUMS else v) for k, v in data.items()}
        extra = dict(options.get("extra_options") or {})
        overrides = extra.get("TensorQuantOverrides")
        if overrides:
            extra["TensorQuantOverrides"] = {
                tensor: [{k: (QuantType[v] if k == "quant_type" else
                              np.float32(v) if k in ("rmin", "rmax", "scale") else v) for k, v in item.items()}
                         for item in items]
                for tensor, items in overrides.items()}
        options["extra_options"] = extra
    except KeyError as exc:
        raise FacequantError(f"ORT quantization JSON: unknown value {exc}") from exc
    return options


def layer_precisions(recipe: QuantRecipe, model: Path) -> dict[str, str]:
    """Every weighted layer's precision, e.g. {'Conv_0': 'a8_w8', 'Conv_94': 'a16_w16'}."""
    layers = graph_layers(model)
    base = {"uint8": "a8", "int8": "a8", "uint16": "a16", "int16": "a16"}.get(recipe.activation_type, recipe.activation_type)
    weight = {"int8": "w8", "uint8": "w8", "int16": "w16", "uint16": "w16"}.get(recipe.weight_type, recipe.weight_type)
    out = {}
    for node in layers.weighted:
        if node in recipe.layers_float:
            out[node] = "float"
        elif node in recipe.layers_16bit:
            out[node] = "a16_w16"
        else:
            out[node] = f"{base}_{weight}"
    return out


def load_name_map(path: Path) -> dict[str, str]:
    """ONNX node name -> compiler layer name, from YAML/JSON (a mapping) or CSV (onnx,hailo)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's CSV starts with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise FacequantError(f"{path}: cannot read the layer name map ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        data = _name_map_csv(path, text) if path.suffix.lower() == ".csv" else yamlfiles.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as exc:
        line = yamlfiles.error_line(exc)
        raise FacequantError(f"{path}{f':{line}' if line else ''}: not a name map (YAML/JSON mapping or CSV onnx,hailo): "
                             f"{yamlfiles.error_reason(exc)}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise FacequantError(f"{path}: the name map must map ONNX node names to compiler layer names (strings)")
    return data


def _name_map_csv(path: Path, text: str) -> dict[str, str]:
    """Rows onnx,hailo (header optional, '#' comments): each row two non-empty names."""
    data: dict[str, str] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = [(reader.line_num, row) for row in reader]  # line_num: where the row ends
    except csv.Error as exc:
        raise FacequantError(f"{path}: not a CSV name map ({exc})") from exc
    for line, row in rows:
        if not row or not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if line == 1 and [c.strip().lower() for c in row[:2]] == ["onnx", "hailo"]:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise FacequantError(f"{path}:{line}: expected two names onnx,hailo, got {len(row)} field(s): {row!r}")
        if row[0].strip() in data:
            raise FacequantError(f"{path}:{line}: {row[0].strip()} is mapped twice")
        data[row[0].strip()] = row[1].strip()
    return data


def hailo_script(precisions: dict[str, str], name_map: dict[str, str] | None) -> tuple[list[str], list[str]]:
    """Model-script lines for the 16-bit layers, and a warning per layer the map does not name
    (Hailo's parser renames layers: ONNX names would be silently ignored by the compiler)."""
    mapping = name_map or {}
    lines = ["# facequant: layers kept at 16 bit (Hailo model script, .alls)"]
    unmapped = []
    for node, precision in precisions.items():
        if precision == "float":
            lines.append(f"# {node}: float in this recipe; Hailo has no float layers, nearest is a16_w16")
            precision = "a16_w16"
        if precision != "a16_w16":
            continue
        if node in mapping:
            lines.append(f"quantization_param({mapping[node]}, precision_mode=a16_w16)")
        else:
            unmapped.append(node)
            lines.append(f"quantization_param({node}, precision_mode=a16_w16)  # WARNING: unmapped ONNX name")
    if name_map is None:  # no map given: one word on what that means, not one per layer about a map
        return lines, ([f"no --name-map given: {HAILO_ALLS} names its {len(unmapped)} layer(s) by their ONNX "
                        "names, which Hailo's parser renames; give --name-map (CSV onnx,hailo) to translate them"]
                       if unmapped else [])
    return lines, [f"{node}: no compiler layer name in the name map; written with its ONNX name, which the "
                   "Hailo compiler will not recognise" for node in unmapped]


@dataclass(frozen=True)
class PrecisionExportConfig:
    """export-precision: a static recipe, the sweep config its calibration crops come from
    (model, photos, camera, calibration subset and distances, seed), and an optional map of
    ONNX node names to the compiler's layer names."""

    recipe: str = param(help="a static recipe, e.g. int8-pt+16bit:last3 or int8-pc+16bit:nodes=Conv_91;Conv_94",
                        positional=True)
    sweep: SweepConfig = nested(SweepConfig)
    name_map: str | None = param(None, help="ONNX node -> compiler layer names (YAML/JSON mapping or CSV onnx,hailo)",
                                 group=WHAT)

    def to_dict(self) -> dict[str, object]:
        return {"recipe": self.recipe, "sweep": self.sweep.to_dict(), "name_map": self.name_map}


def export_precision(recipe_name: str, normalized_model: Path, input_name: str, calibration: np.ndarray, out: Path,
                     name_map: dict[str, str] | None = None, force: bool = False, inputs: Inputs = (),
                     run: dict[str, Any] | None = None, calibration_method: str | None = None) -> dict[str, Any]:
    """Write the three exports for a recipe into the results directory `out` (staged, with
    its marker, like every results directory), and run.json (`run`, with the recipe and the
    warnings); returns paths and warnings. `calibration_method` replaces the recipe's own,
    as a sweep's --calib-method does."""
    recipe = resolve_recipe(recipe_name, normalized_model)
    if not recipe.needs_calibration:
        raise FacequantError(f"recipe '{recipe_name}': only static QDQ recipes have per-layer precision to export")
    if calibration_method:
        recipe = recipe.with_calibration(calibration_method)
    with tempfile.TemporaryDirectory() as tmp:
        prepped = prepare_for_quantization(normalized_model, recipe, Path(tmp))
        options = static_quant_options(prepped, input_name, recipe, calibration, Path(tmp))
    precisions = layer_precisions(recipe, normalized_model)
    ort_doc = {"recipe": recipe.to_dict(), "apply_to": "the model after onnxruntime.quantization.shape_inference."
               "quant_pre_process (facequant runs it first)", "quantize_static": ort_options_to_json(options)}
    lines, warnings = hailo_script(precisions, name_map)
    with staged_output(out, force, inputs) as staging:
        write_json(ort_doc, staging / ORT_JSON, indent=1)
        write_json({"recipe": recipe.name, "layers": precisions}, staging / PRECISION_JSON, indent=1)
        (staging / HAILO_ALLS).write_text("\n".join(lines) + "\n")
        write_run_json({**(run or {}), "recipe": recipe.to_dict(), "warnings": warnings}, staging / RUN_JSON)
    return {"ort": out / ORT_JSON, "run": out / RUN_JSON, "precision": out / PRECISION_JSON, "hailo": out / HAILO_ALLS,
            "warnings": warnings, "recipe": recipe}

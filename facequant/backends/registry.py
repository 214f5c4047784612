"""Backends by the names users type (fp32, int8-pc, int8-pc+16bit:last3, external:NAME=PATH):
checking names, and building each from one normalized float model."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facequant.backends.base import EXTERNAL_PREFIX, FLOAT_BACKENDS, Backend
from facequant.backends.quantize.build import build_quantized, pow2_moves_path
from facequant.backends.quantize.layers import graph_layers, resolve_recipe, select_layers
from facequant.backends.quantize.npu import pow2_summary
from facequant.backends.quantize.recipes import (
    RECIPES,
    SELECTOR_HELP,
    QuantRecipe,
    is_recipe_name,
    split_recipe_name,
)
from facequant.backends.runtime import InsightFaceBackend, OrtBackend
from facequant.backends.runtimes import (
    NNCF_HELP,
    OPENVINO,
    OV_FLOAT,
    RUNTIME_BACKENDS,
    NncfRecipe,
    is_runtime_name,
    parse_runtime_name,
    require_extra,
    with_layers_float,
)
from facequant.errors import FacequantError
from facequant.models.spec import ModelSpec

NAME_HELP = (f"BASE+16bit:SEL or BASE+float:SEL (BASE a static recipe; SEL {SELECTOR_HELP}; chainable), "
             f"{NNCF_HELP} (OpenVINO / NNCF: pip install 'facequant[openvino]'), {EXTERNAL_PREFIX}NAME=PATH")


def available_backends() -> list[str]:
    """The preset names; mixed-precision, NNCF variants and external names are built from them
    (NAME_HELP)."""
    return [*FLOAT_BACKENDS, *RECIPES, *RUNTIME_BACKENDS]


def _extras_for(name: str) -> tuple[str, ...]:
    base, recipe = parse_runtime_name(name)
    if recipe is None:
        return ("openvino",)
    return ("nncf", "openvino") if recipe.runtime == OPENVINO else ("nncf",)


def _check_extras_installed(name: str) -> None:
    """Fail at the name, before any work, when the extra a backend needs is not installed."""
    for module in _extras_for(name):
        require_extra(name, module)


def check_backend_name(name: str) -> None:
    """Raise a one-line FacequantError naming the bad part unless `name` is a backend name.
    Node names and external paths are not checked here (the model and the external backend do)."""
    if name in FLOAT_BACKENDS:
        return
    if name.startswith(EXTERNAL_PREFIX):
        label, eq, path = name[len(EXTERNAL_PREFIX):].partition("=")
        if not (label.strip() and eq and path.strip()):
            raise FacequantError(f"backend '{name}': expected {EXTERNAL_PREFIX}NAME=PATH")
        return
    if is_runtime_name(name):  # a trt-* name raises its message here
        parse_runtime_name(name)
        _check_extras_installed(name)
        return
    if not is_recipe_name(name):
        raise FacequantError(f"backend '{name}': unknown; available: {', '.join(available_backends())}, "
                             f"or {NAME_HELP}")


def require_calibrated(name: str, option: str, why: str) -> None:
    """Refuse, before any work, a backend that is not a calibrated (static) recipe: fp32, fp16,
    dynamic INT8 and external backends have no calibration and no per-layer precision."""
    check_backend_name(name)
    if is_runtime_name(name):
        raise FacequantError(f"{option} {name}: an OpenVINO / NNCF backend, {why} here; give an ONNX Runtime static "
                             "recipe (int8-pt, int8-pc, a16w8, ..., BASE+16bit:SEL)")
    if (name in FLOAT_BACKENDS or name.startswith(EXTERNAL_PREFIX)
            or not RECIPES[split_recipe_name(name)[0]].needs_calibration):
        raise FacequantError(f"{option} {name}: not calibrated, {why}; give a static recipe "
                             "(int8-pt, int8-pc, a16w8, ..., BASE+16bit:SEL)")


def _backend_info(recipe: QuantRecipe, model: Path) -> dict[str, object]:
    """What run.json and a cost report need to know about a built recipe."""
    info: dict[str, object] = {"recipe": recipe.to_dict(), "precision": recipe.precision,
                               "layers_16bit": list(recipe.layers_16bit), "layers_float": list(recipe.layers_float)}
    if recipe.pow2_scales:
        moves_file = pow2_moves_path(model)
        moves = json.loads(moves_file.read_text())["moves"]
        info["pow2_scales"] = {**pow2_summary(moves), "moves_file": str(moves_file)}
    return info


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
        """The recipe behind a backend name, selectors resolved to this model's node names."""
        recipe = resolve_recipe(name, self.model_path)
        return recipe.with_calibration(self.calibration_method) if self.calibration_method else recipe

    def make(self, name: str) -> Backend:
        if name == "fp32":
            return OrtBackend("fp32", self.model_path, self.spec, self.batch_size, self.threads,
                              info={"precision": "fp32", "layers_16bit": [], "layers_float": []})
        if name == "insightface":
            return InsightFaceBackend(self.model_path, self.batch_size, self.threads)
        if name.startswith(EXTERNAL_PREFIX):
            check_backend_name(name)
            try:  # its own module, loaded only when asked for
                from facequant.backends.external import ExternalBackend
            except ModuleNotFoundError as exc:
                if exc.name != "facequant.backends.external":
                    raise
                raise FacequantError(f"backend '{name}': external backends are not available in this version") from exc
            return ExternalBackend.from_spec(name, self.spec)
        check_backend_name(name)
        if is_runtime_name(name):
            return self._make_runtime(name)
        recipe = self.recipe(name)
        calibration = self.calibration() if recipe.needs_calibration else None
        path = build_quantized(self.model_path, self.model_sha, self.spec.input_name, recipe, calibration)
        return OrtBackend(name, path, self.spec, self.batch_size, self.threads, info=_backend_info(recipe, path))


    def nncf_recipe(self, name: str) -> NncfRecipe:
        """The NNCF recipe behind a backend name, +float: selectors resolved to node names."""
        _, recipe = parse_runtime_name(name)
        if recipe is None:
            raise FacequantError(f"backend '{name}': not an NNCF backend (ov-int8, nncf-int8 and their variants)")
        if not recipe.selectors:
            return recipe
        layers = graph_layers(self.model_path)
        chosen = {n for sel in recipe.selectors for n in select_layers(layers, sel.partition(":")[2], name)}
        return with_layers_float(recipe, tuple(n for n in layers.nodes if n in chosen))

    def _make_runtime(self, name: str) -> Backend:
        from facequant.backends.openvino_runtime import OvBackend

        base, parsed = parse_runtime_name(name)
        if parsed is None:  # ov-fp32, ov-bf16: the float model
            return OvBackend(name, self.model_path, self.spec, OV_FLOAT[base], self.batch_size, self.threads,
                             info={"precision": base[len("ov-"):], "layers_16bit": [], "layers_float": []})
        from facequant.backends.quantize.nncf_build import build_nncf, import_nncf, nncf_version

        recipe = self.nncf_recipe(name)
        import_nncf(name)  # before calibration: a missing extra fails first
        path = build_nncf(self.model_path, self.model_sha, self.spec.input_name, recipe, self.calibration())
        info: dict[str, object] = {"nncf_recipe": recipe.to_dict(), "quantizer": f"nncf {nncf_version()}",
                                   "precision": recipe.precision, "layers_16bit": [],
                                   "layers_float": list(recipe.layers_float)}
        if recipe.smooth_quant is not None:
            info["note"] = "SmoothQuant runs in NNCF with model_type=transformer, which also leaves residual Adds in float"
        if recipe.runtime == OPENVINO:  # what NNCF left in float runs at f32, set explicitly
            return OvBackend(name, path, self.spec, "f32", self.batch_size, self.threads, info=info)
        return OrtBackend(name, path, self.spec, self.batch_size, self.threads, info=info)


def parse_backends(text: str) -> list[str]:
    """Comma-separated backend names -> the list to run, fp32 (the reference) first."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        check_backend_name(name)
    # fp32 is the reference every other backend is compared to: always there, always first.
    return list(dict.fromkeys(["fp32", *names]))

"""The runtime axis: backends run by OpenVINO, and INT8 models built by NNCF, named in the same
grammar as ONNX Runtime's recipes (BASE+KIND:VALUE...). Names only: nothing here imports
OpenVINO or NNCF, so --help and name checks work without the extra installed.

    ov-fp32, ov-bf16                          the float model compiled by OpenVINO's CPU plugin
    ov-int8, nncf-int8                        NNCF post-training INT8 (QDQ), on OpenVINO / ONNX Runtime
    (ov-int8|nncf-int8)(+preset:P)(+bc:B)(+sq:ALPHA)(+subset:N)(+float:SEL)*

OpenVINO's precision is always set (INFERENCE_PRECISION_HINT), never left to the plugin: on a
CPU with bf16 the plugin's default runs a "float" model in bf16.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace

from facequant.errors import FacequantError

#: What to install for these backends, said in every "not installed" message.
EXTRA_HINT = "pip install 'facequant[openvino]'"
OPENVINO = "openvino"
ONNXRUNTIME = "onnxruntime"

#: Float backends OpenVINO runs: name -> INFERENCE_PRECISION_HINT.
OV_FLOAT = {"ov-fp32": "f32", "ov-bf16": "bf16"}
#: NNCF-built INT8 bases: name -> the runtime that runs the model.
NNCF_BASES = {"ov-int8": OPENVINO, "nncf-int8": ONNXRUNTIME}
RUNTIME_BACKENDS = (*OV_FLOAT, *NNCF_BASES)
RUNTIME_DESCRIPTIONS = {
    "ov-fp32": "the float model on OpenVINO's CPU plugin, f32 inference precision set explicitly",
    "ov-bf16": "the float model on OpenVINO's CPU plugin at bf16 (refused on a CPU without bf16)",
    "ov-int8": "NNCF post-training INT8 (preset performance, fast bias correction), compiled by OpenVINO",
    "nncf-int8": "the same NNCF INT8 QDQ model run by ONNX Runtime",
}
PRESETS = ("performance", "mixed")
BIAS_CORRECTIONS = ("fast", "full", "none")
NNCF_PARTS = ("preset", "bc", "sq", "subset", "float")
NNCF_HELP = ("ov-int8|nncf-int8 +preset:performance|mixed +bc:fast|full|none +sq:ALPHA (SmoothQuant, 0<ALPHA<=1) "
             "+subset:N +float:SEL")
#: NNCF's own default subset size; facequant's calibration set is usually smaller (all of it is used).
DEFAULT_SUBSET = 300
_MAX_SUBSET = 100_000
TRT_PREFIX = "trt-"
_PART_SPLIT = re.compile(r"\+(?=[A-Za-z0-9_]+:)")


@dataclass(frozen=True)
class NncfRecipe:
    """NNCF post-training quantization as data: its parameters are the cache key and go into
    run.json as they are. `layers_float` are node names (NNCF's ignored scope) once resolved."""

    name: str
    runtime: str  # who runs the built model: openvino or onnxruntime
    preset: str = "performance"
    bias_correction: str = "fast"
    smooth_quant: float | None = None  # alpha for Conv and MatMul; NNCF needs model_type=transformer
    subset_size: int = DEFAULT_SUBSET
    selectors: tuple[str, ...] = ()
    layers_float: tuple[str, ...] = ()

    @property
    def base(self) -> str:
        return self.name.split("+")[0]

    @property
    def precision(self) -> str:
        label = "w8a8-nncf" + ("-mixed" if self.preset == "mixed" else "")
        return label + (f"+float:{len(self.layers_float)}" if self.layers_float else "")

    def build_params(self) -> dict[str, object]:
        """What determines the built model (not who runs it): ov-int8 and nncf-int8 with the
        same parameters share one cached model."""
        out = asdict(self)
        for k in ("name", "runtime", "selectors"):
            out.pop(k)
        out["layers_float"] = list(self.layers_float)
        return out

    def to_dict(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def is_runtime_name(name: str) -> bool:
    """True for an OpenVINO or NNCF backend name (well-formed or not: parse_runtime_name says
    what is wrong); a trt-* name raises its one-line message."""
    if name.startswith(TRT_PREFIX):
        raise FacequantError(tensorrt_message(name))
    return name.split("+")[0] in RUNTIME_BACKENDS


def tensorrt_message(name: str) -> str:
    """TensorRT backends are a place on the runtime axis, not built: nothing here can test them."""
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except Exception:  # noqa: BLE001 - the message only names what is there
        providers = []
    if "TensorrtExecutionProvider" in providers:
        return (f"backend '{name}': TensorRT backends are not built in this version (they need a GPU to be tested); "
                "run the model through TensorRT yourself and bring its embeddings as external:NAME=PATH")
    return (f"backend '{name}': TensorRT needs an NVIDIA GPU and ONNX Runtime's TensorRT provider (onnxruntime-gpu), "
            f"not present here (providers: {', '.join(providers) or 'none'}); use external:NAME=PATH with embeddings "
            "computed on the device")


def parse_runtime_name(name: str) -> tuple[str, NncfRecipe | None]:
    """'ov-int8+bc:full+sq:0.5' -> ('ov-int8', NncfRecipe(...)); 'ov-fp32' -> ('ov-fp32', None).
    Checks the syntax and every value; +float: selectors are resolved against the model later."""
    base, *parts = _PART_SPLIT.split(name)
    head, plus, _ = name.partition("+")
    if head in OV_FLOAT:
        if plus:
            raise FacequantError(f"backend '{name}': {head} takes no options (variants are for ov-int8 and nncf-int8)")
        return head, None
    if head not in NNCF_BASES:
        raise FacequantError(f"backend '{name}': unknown base '{head}'; runtime backends: {', '.join(RUNTIME_BACKENDS)}")
    if base != head:
        raise FacequantError(f"backend '{name}': '+{base.partition('+')[2]}' not understood; use {NNCF_HELP}")
    values: dict[str, object] = {}
    selectors: list[str] = []
    for part in parts:
        kind, _, value = part.partition(":")
        if kind == "16bit":
            raise FacequantError(f"backend '{name}': NNCF quantizes to 8 bit; keep layers in float with +float:SEL")
        if kind not in NNCF_PARTS:
            raise FacequantError(f"backend '{name}': '+{part}' not understood; use {NNCF_HELP}")
        if kind == "float":
            from facequant.backends.quantize.recipes import check_selector

            check_selector(name, value)
            selectors.append(f"float:{value}")
            continue
        if kind in values:
            raise FacequantError(f"backend '{name}': '+{kind}:' given twice")
        values[kind] = _part_value(name, kind, value)
    sq, subset = values.get("sq"), values.get("subset")  # _part_value's float and int
    recipe = NncfRecipe(name, NNCF_BASES[base], preset=str(values.get("preset", "performance")),
                        bias_correction=str(values.get("bc", "fast")),
                        smooth_quant=sq if isinstance(sq, float) else None,
                        subset_size=subset if isinstance(subset, int) else DEFAULT_SUBSET,
                        selectors=tuple(selectors))
    return base, recipe


def _part_value(name: str, kind: str, value: str) -> object:
    if kind == "preset":
        if value not in PRESETS:
            raise FacequantError(f"backend '{name}': preset '{value}': choose {' or '.join(PRESETS)}")
        return value
    if kind == "bc":
        if value not in BIAS_CORRECTIONS:
            raise FacequantError(f"backend '{name}': bias correction '{value}': choose {', '.join(BIAS_CORRECTIONS)}")
        return value
    if kind == "sq":
        try:
            alpha = float(value)
        except ValueError:
            alpha = math.nan
        if not (math.isfinite(alpha) and 0.0 < alpha <= 1.0):
            raise FacequantError(f"backend '{name}': SmoothQuant alpha '{value}': give a number in (0, 1]")
        return alpha
    if not value.isdigit() or not 1 <= int(value) <= _MAX_SUBSET:
        raise FacequantError(f"backend '{name}': subset '{value}': give a whole number from 1 to {_MAX_SUBSET}")
    return int(value)


def with_layers_float(recipe: NncfRecipe, layers: tuple[str, ...]) -> NncfRecipe:
    return replace(recipe, layers_float=layers)


def runtime_of(name: str) -> str:
    """Which runtime runs backend `name` (ORT for every recipe and fp32)."""
    try:
        if not is_runtime_name(name):
            return ONNXRUNTIME
    except FacequantError:
        return "tensorrt"
    base = _PART_SPLIT.split(name)[0]
    return OPENVINO if base in OV_FLOAT else NNCF_BASES.get(base, ONNXRUNTIME)


def extra_installed(module: str) -> bool:
    """The module can be imported (found without importing it: OpenVINO takes a while)."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules
        return False


def require_extra(name: str, module: str) -> None:
    """Say, in one line, which extra to install when `module` (openvino or nncf) is missing."""
    if not extra_installed(module):
        raise FacequantError(f"backend '{name}': needs {module}, not installed here; {EXTRA_HINT}")

"""What a backend costs: file size, how many layers run at 8 / 16 bit / float, and latency.

Accuracy alone does not choose a backend: a16w8 holds the float model's accuracy but its
16-bit activations cost memory bandwidth and, on most NPUs, speed. This module puts the cost
side next to the sweep's accuracy side, one row per backend (cost_table).

Latency comes from one of two places and the table says which (latency_source):

* Each backend's own runtime on this machine's CPU (ONNX Runtime, or OpenVINO for ov-*),
  through the backend's batch_runner: every backend timed at batch 1 in interleaved rounds with
  a fixed thread count (cpu_latencies, facequant.backends.timing; the median and its spread),
  and once more at the sweep's batch. A *relative proxy* only: INT8 kernels are not faster than
  fp32 on every CPU (without VNNI / dot-product instructions a QDQ graph can even be slower),
  and an NPU behaves differently again.
* A device profile (configs/devices/*.yaml, load_device_profile): figures measured on the
  target by the user, preferred when present.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import yaml

from facequant import yamlfiles
from facequant.backends.base import Backend
from facequant.backends.timing import Clock, Latency, TimingSettings, interleaved
from facequant.errors import FacequantError
from facequant.models.spec import ModelSpec
from facequant.values import as_float

#: What cpu latency is and is not; used as latency_source when no device figure applies.
CPU_LATENCY_SOURCE = (
    "CPU, each backend on its own runtime (cost.csv's runtime column), batch 1, 1 thread, interleaved rounds, "
    "and the sweep's batch, this machine — a relative proxy: INT8 is not faster than fp32 on every CPU"
)
#: latency_source when the CPU was not timed and no device figure applies.
NOT_MEASURED = "not measured"

#: Columns of cost_table, in order (backend_cost's keys, then latency_vs_fp32 and extras).
COST_COLUMNS: tuple[str, ...] = (
    "backend",
    "file_bytes",
    "layers_8bit",
    "layers_16bit",
    "layers_float",
    "cpu_latency_p50_ms",
    "cpu_latency_p95_ms",
    "latency_source",
    "device_latency_ms",
    "latency_vs_fp32",
)
#: Extra columns after COST_COLUMNS: which latency the ratio used ("device", "cpu", "cpu <runtime>"
#: or ""), the device's power draw when the profile gives one, the CPU timing's spread across
#: interleaved rounds (p10-p90 of the per-round medians), the CPU ratio to fp32 (median of the
#: per-round ratios) with its spread whatever the basis, latency_vs_fp32's spread (a device
#: figure is one number: none), how many rounds, the runtime that ran it, and its latency at the
#: sweep's batch (per call and per face).
COST_EXTRA_COLUMNS: tuple[str, ...] = (
    "latency_vs_fp32_basis", "device_power_w", "cpu_latency_low_ms", "cpu_latency_high_ms", "cpu_vs_fp32",
    "cpu_vs_fp32_low", "cpu_vs_fp32_high", "latency_vs_fp32_low", "latency_vs_fp32_high", "latency_rounds",
    "runtime", "cpu_batch_size", "cpu_batch_latency_p50_ms", "cpu_ms_per_item",
)

#: The reference backend latency_vs_fp32 divides by.
REFERENCE_BACKEND = "fp32"

# Weighted layers: the ones a quantizer gives weights to and whose arithmetic dominates cost.
_FLOAT_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Dynamic (ConvInteger, MatMulInteger) and QOperator-format (QLinear*) layers are integer by
# op definition: ONNX only allows 8-bit inputs for them.
_INTEGER_OPS = frozenset({"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"})
# Ops that only move or reshape a tensor: walking back through them from a layer's input
# reaches the DequantizeLinear / initializer that decides its precision.
_PASS_THROUGH_OPS = frozenset(
    {"Identity", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
)
_DEQUANTIZE_OPS = frozenset({"DequantizeLinear"})  # any domain: com.microsoft's for 16 bit too
_QUANTIZE_OPS = frozenset({"QuantizeLinear"})

_T = onnx.TensorProto
_INT_BITS: dict[int, int] = {_T.INT8: 8, _T.UINT8: 8, _T.INT4: 4, _T.UINT4: 4, _T.INT16: 16, _T.UINT16: 16}
_FLOAT_BITS: dict[int, int] = {_T.FLOAT: 32, _T.DOUBLE: 64, _T.FLOAT16: 16, _T.BFLOAT16: 16}


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line (errors here are printed as one line by the CLI)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- latency


#: The sweep-batch figure: a call there takes `batch` times longer, so fewer rounds and calls.
BATCH_SETTINGS = TimingSettings(rounds=3, per_round=1, warmup=1)


def cpu_latencies(backends: Mapping[str, Backend], batch: int = 1,
                  settings: TimingSettings = TimingSettings(),  # noqa: B008 - frozen
                  clock: Clock = time.perf_counter) -> dict[str, Latency]:
    """Every backend that can run here (Backend.batch_runner: its own runtime and session) timed
    at batch 1 in interleaved rounds with a fixed thread count (facequant.backends.timing), and
    at `batch` (the sweep's) in a few interleaved rounds more; an external device's backend is not
    timed. A relative proxy only; see CPU_LATENCY_SOURCE."""
    def runners(size: int) -> dict[str, Callable[[], object]]:
        found = {}
        for name, backend in backends.items():
            runner = backend.batch_runner(settings.threads, size)
            if runner is not None:
                found[name] = runner
        return found

    ones = interleaved(runners(1), settings, clock, REFERENCE_BACKEND)
    if batch <= 1:
        return {n: dataclasses.replace(t, batch=1, batch_p50_ms=t.p50_ms) for n, t in ones.items()}
    at_batch = interleaved(runners(batch), dataclasses.replace(BATCH_SETTINGS, threads=settings.threads), clock,
                           REFERENCE_BACKEND)
    return {n: dataclasses.replace(t, batch=batch, batch_p50_ms=at_batch[n].p50_ms if n in at_batch else math.nan)
            for n, t in ones.items()}


def timing_record(settings: TimingSettings = TimingSettings()) -> dict[str, object]:  # noqa: B008 - frozen
    """run.json's cost.timing: how the CPU figures were taken."""
    return {**settings.describe(), "sweep_batch": {"rounds": BATCH_SETTINGS.rounds, "per_round": BATCH_SETTINGS.per_round,
                                                   "warmup": BATCH_SETTINGS.warmup}}


# ---------------------------------------------------------------- layer precision


class _Graph:
    """Producer / initializer / dtype lookups over one ONNX graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.elem_types: dict[str, int] = {}
        try:
            # Shape inference gives activation dtypes (float16 vs float32) in a float model;
            # where it cannot (custom ops), the walk below falls back to Q/DQ and weights.
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:
            inferred = graph
        for vi in [*inferred.input, *inferred.value_info, *inferred.output]:
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
                self.elem_types[vi.name] = vi.type.tensor_type.elem_type
        for name, t in self.initializers.items():
            self.elem_types[name] = t.data_type

    def source(self, name: str) -> tuple[str, onnx.NodeProto | None]:
        """Walk back through reshaping ops to the tensor that decides the precision."""
        seen: set[str] = set()
        while name not in seen:
            seen.add(name)
            node = self.producers.get(name)
            if node is None or node.op_type not in _PASS_THROUGH_OPS or not node.input:
                return name, node
            name = node.input[0]
        return name, self.producers.get(name)

    def is_constant(self, name: str) -> bool:
        """A weight: an initializer or a Constant, possibly behind DequantizeLinear/reshapes."""
        src, node = self.source(name)
        if src in self.initializers:
            return True
        if node is None:
            return False
        if node.op_type == "Constant":
            return True
        if node.op_type in _DEQUANTIZE_OPS | _QUANTIZE_OPS | {"Cast"} and node.input:
            return self.is_constant(node.input[0])
        return False

    def quantized_type(self, name: str) -> int | None:
        """The integer dtype a DequantizeLinear input (or QuantizeLinear output) holds."""
        src, node = self.source(name)
        if src in self.initializers:
            return self.initializers[src].data_type
        if node is not None and node.op_type in _QUANTIZE_OPS:
            # QuantizeLinear's output type: its zero point's, or output_dtype (opset 21),
            # else the spec's default uint8.
            if len(node.input) > 2 and node.input[2] in self.elem_types:
                return self.elem_types[node.input[2]]
            for attr in node.attribute:
                if attr.name == "output_dtype" and attr.i:
                    return int(attr.i)
            return _T.UINT8
        return self.elem_types.get(src)

    def precision(self, name: str) -> tuple[str, int] | None:
        """("int", bits) when the tensor arrives through DequantizeLinear, ("float", bits) for
        a float tensor, None when unknown."""
        src, node = self.source(name)
        if node is not None and node.op_type in _DEQUANTIZE_OPS and node.input:
            qtype = self.quantized_type(node.input[0])
            if qtype in _INT_BITS:
                return ("int", _INT_BITS[qtype])
            if qtype in _FLOAT_BITS:  # a float "quantization" (e.g. fp16 -> fp32 weights)
                return ("float", _FLOAT_BITS[qtype])
            return None
        if node is not None and node.op_type == "Cast":
            to = next((int(a.i) for a in node.attribute if a.name == "to"), 0)
            # Cast up from a float16 initializer: stored (and on fp16 hardware run) at 16 bit.
            if to == _T.FLOAT and node.input and self.elem_types.get(node.input[0]) == _T.FLOAT16:
                return ("float", 16)
        etype = self.elem_types.get(src)
        if etype in _FLOAT_BITS:
            return ("float", _FLOAT_BITS[etype])
        if etype in _INT_BITS:
            return ("int", _INT_BITS[etype])
        return None


def _layer_bits(g: _Graph, node: onnx.NodeProto) -> str | None:
    """'8bit', '16bit', 'float' for one weighted layer, None when it has no constant weight."""
    if node.op_type in _INTEGER_OPS:
        return "8bit"
    if node.op_type in ("MatMul",):
        # MatMul's weight may be either operand; a MatMul of two activations (attention) has
        # no weights to quantize and is not a weighted layer.
        consts = [i for i in node.input[:2] if g.is_constant(i)]
        if not consts:
            return None
        weight = consts[-1]
        activation = next((i for i in node.input[:2] if i != weight), node.input[0])
    else:
        if len(node.input) < 2 or not g.is_constant(node.input[1]):
            return None
        weight, activation = node.input[1], node.input[0]
    w = g.precision(weight)
    a = g.precision(activation)
    if w is None:
        return None
    if a is None:
        a = w  # activation dtype unknown (no shape inference): assume it runs like the weight
    # A layer runs at the wider of its weight and input-activation precisions: W8A16 is a
    # 16-bit layer (16-bit activations cost bandwidth and NPU throughput like 16-bit
    # weights); int8 weights with float activations (weight-only quantization) compute in
    # float; fp16 is a 16-bit float layer.
    if (w[0] == "float" and w[1] > 16) or (a[0] == "float" and a[1] > 16):
        return "float"
    return "16bit" if max(w[1], a[1]) > 8 else "8bit"


def count_layers(model_path: str | Path) -> dict[str, int]:
    """How many weighted layers (Conv, ConvTranspose, Gemm, MatMul with a constant weight,
    and the integer ConvInteger / MatMulInteger / QLinearConv / QLinearMatMul) run at 8 bit,
    16 bit and float.

    Precision of a layer = the wider of its weight's and its input activation's:

    * weight / activation arriving through DequantizeLinear: the dtype of the
      DequantizeLinear's input (an initializer's, or the zero point's of the QuantizeLinear
      feeding it): int8/uint8 = 8 bit (int4 counts here too: "8 bit or narrower"),
      int16/uint16 = 16 bit;
    * ConvInteger / MatMulInteger / QLinear*: 8 bit (ONNX allows only 8-bit inputs);
    * a float16 / bfloat16 initializer or activation: 16 bit (a 16-bit float layer);
    * float32 (or wider): float.

    So "16-bit layer" means a layer whose activations OR weights are 16 bit and neither is
    float32: a16w8 (16-bit activations, 8-bit weights) counts every quantized layer as 16
    bit. Keys: layers_8bit, layers_16bit, layers_float, layers_total.
    """
    path = Path(model_path)
    if not path.is_file():
        raise FacequantError(f"{path}: model not found")
    try:
        # Weights are not needed to read dtypes; leaving external data unloaded keeps big
        # models cheap.
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise FacequantError(f"{path}: not a readable ONNX model ({_one_line(exc)})") from exc
    if not model.HasField("graph") or len(model.graph.node) == 0:
        # Arbitrary bytes can decode as an empty ModelProto; counting zero layers would hide it.
        raise FacequantError(f"{path}: not a readable ONNX model (no graph)")
    g = _Graph(model)
    counts = {"8bit": 0, "16bit": 0, "float": 0}
    for node in model.graph.node:
        if node.op_type not in _FLOAT_WEIGHTED_OPS | _INTEGER_OPS:
            continue
        bits = _layer_bits(g, node)
        if bits is not None:
            counts[bits] += 1
    return {
        "layers_8bit": counts["8bit"],
        "layers_16bit": counts["16bit"],
        "layers_float": counts["float"],
        "layers_total": sum(counts.values()),
    }


def model_bytes(model_path: str | Path) -> int:
    """Bytes on disk: the .onnx file plus any external-data files it references."""
    path = Path(model_path)
    total = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    locations: set[str] = set()
    for t in model.graph.initializer:
        if t.data_location == _T.EXTERNAL:
            locations.update(e.value for e in t.external_data if e.key == "location")
    for loc in locations:
        ext = path.parent / loc
        if ext.is_file():
            total += ext.stat().st_size
    return int(total)


# ---------------------------------------------------------------- device profiles


def load_device_profile(path: str | Path) -> dict[str, object]:
    """A device profile (configs/devices/*.yaml): measured latency per backend on a target.

    Keys: device (str), source (str: where the numbers came from), latency_ms (mapping of
    backend name -> positive ms), optional power_w (a positive number, or a mapping of backend
    name -> positive W). Returns them with numbers as floats and path added. Every problem is a
    one-line FacequantError naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FacequantError(f"{p}: device profile not found")
    try:
        raw = yamlfiles.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or _one_line(exc)
        raise FacequantError(f"{p}: device profile is not valid YAML{where} ({problem})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FacequantError(f"{p}: cannot read device profile ({_one_line(exc)})") from exc
    if not isinstance(raw, dict):
        raise FacequantError(
            f"{p}: device profile must be a mapping with keys device, source, latency_ms"
        )
    missing = [
        k for k in ("device", "source", "latency_ms") if k not in raw or raw[k] in (None, "")
    ]
    if missing:
        raise FacequantError(f"{p}: device profile is missing key(s): {', '.join(missing)}")
    latency = _positive_mapping(p, "latency_ms", raw["latency_ms"])
    if not latency:
        raise FacequantError(f"{p}: latency_ms lists no backend")
    power: float | dict[str, float] | None = None
    if raw.get("power_w") is not None:
        if isinstance(raw["power_w"], dict):
            power = _positive_mapping(p, "power_w", raw["power_w"])
        else:
            power = _positive(p, "power_w", raw["power_w"])
    return {
        "device": str(raw["device"]),
        "source": str(raw["source"]).strip(),
        "latency_ms": latency,
        "power_w": power,
        "path": str(p),
    }


def _positive(p: Path, key: str, value: object) -> float:
    # bool is an int subclass; "true" as a latency is a typo, not 1 ms.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FacequantError(f"{p}: {key} must be a positive number, got {value!r}")
    f = float(value)
    if not (math.isfinite(f) and f > 0.0):
        raise FacequantError(f"{p}: {key} must be a positive number, got {value!r}")
    return f


def _positive_mapping(p: Path, key: str, value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        raise FacequantError(
            f"{p}: {key} must map backend names to numbers, got {type(value).__name__}"
        )
    return {str(name): _positive(p, f"{key}.{name}", v) for name, v in value.items()}


# ---------------------------------------------------------------- per backend and table


def backend_cost(
    name: str,
    model_path: str | Path,
    spec: ModelSpec,
    device_profile: Mapping[str, object] | None = None,
    latency: Latency | None = None,
    runtime: str = "onnxruntime",
) -> dict[str, object]:
    """One cost row for backend ``name`` run from ``model_path``.

    Keys: backend, file_bytes, layers_8bit, layers_16bit, layers_float, cpu_latency_p50_ms,
    cpu_latency_p95_ms, latency_source, device_latency_ms, latency_vs_fp32 (NaN here; filled
    by cost_table, which needs the fp32 row), device_power_w, and the CPU spread and ratio, the
    runtime and the sweep-batch figures (COST_EXTRA_COLUMNS). ``device_profile`` is
    load_device_profile's dict; when it lists ``name``, device_latency_ms is its figure and
    latency_source the device name. ``latency``: this backend's figures from cpu_latencies (on
    ``runtime``); None: not timed (NaN).
    """
    layers = count_layers(model_path)
    cpu = latency
    device_ms, power, source = math.nan, math.nan, CPU_LATENCY_SOURCE if cpu else NOT_MEASURED
    if device_profile is not None:
        listed = device_profile.get("latency_ms") or {}
        if isinstance(listed, Mapping) and name in listed:
            device_ms = float(listed[name])
            source = str(device_profile.get("device", "device profile"))
        pw = device_profile.get("power_w")
        if isinstance(pw, Mapping):
            power = float(pw[name]) if name in pw else math.nan
        elif pw is not None:
            power = as_float(pw)
    return {
        "backend": name,
        "file_bytes": model_bytes(model_path),
        "layers_8bit": layers["layers_8bit"],
        "layers_16bit": layers["layers_16bit"],
        "layers_float": layers["layers_float"],
        "cpu_latency_p50_ms": cpu.p50_ms if cpu else math.nan,
        "cpu_latency_p95_ms": cpu.p95_ms if cpu else math.nan,
        "latency_source": source,
        "device_latency_ms": device_ms,
        "latency_vs_fp32": math.nan,
        "device_power_w": power,
        "cpu_latency_low_ms": cpu.low_ms if cpu else math.nan,
        "cpu_latency_high_ms": cpu.high_ms if cpu else math.nan,
        "cpu_vs_fp32": cpu.ratio if cpu else math.nan,
        "cpu_vs_fp32_low": cpu.ratio_low if cpu else math.nan,
        "cpu_vs_fp32_high": cpu.ratio_high if cpu else math.nan,
        "latency_rounds": cpu.rounds if cpu else 0,
        "runtime": runtime,
        "cpu_batch_size": cpu.batch if cpu else math.nan,
        "cpu_batch_latency_p50_ms": cpu.batch_p50_ms if cpu else math.nan,
        "cpu_ms_per_item": cpu.batch_p50_ms / cpu.batch if cpu else math.nan,
    }


def _ratio(value: float, reference: float) -> float:
    if math.isfinite(value) and math.isfinite(reference) and reference > 0.0:
        return value / reference
    return math.nan


def cost_table(rows: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """backend_cost rows as one table, with latency_vs_fp32 and its spread filled in.

    latency_vs_fp32 = this backend's latency / fp32's (< 1: faster), each timed on its own runtime
    (fp32 on ONNX Runtime; basis "cpu openvino" for an OpenVINO backend). Like is compared with
    like: device figures when both this backend and fp32 have one (a device profile is
    measured on the target, so it wins; one number each, so its spread is the ratio itself),
    else the CPU ratio (cpu_vs_fp32: the median of the per-round ratios of interleaved timing,
    with its p10-p90 spread; a row without it, from an older cost.csv, divides the p50s and has
    no spread), else NaN (a device ms over a CPU ms means nothing). latency_vs_fp32_basis says
    which: "device", "cpu" or "". NaN for every row when there is no fp32 row.
    """
    table = pd.DataFrame([dict(r) for r in rows])
    for col in (*COST_COLUMNS, *COST_EXTRA_COLUMNS):
        if col not in table:
            table[col] = math.nan
    table = table[[*COST_COLUMNS, *COST_EXTRA_COLUMNS]].copy()
    ref = table.loc[table["backend"] == REFERENCE_BACKEND]
    ref_device = float(ref["device_latency_ms"].iloc[0]) if len(ref) else math.nan
    ref_cpu = float(ref["cpu_latency_p50_ms"].iloc[0]) if len(ref) else math.nan
    out: dict[str, list[object]] = {"latency_vs_fp32": [], "latency_vs_fp32_low": [], "latency_vs_fp32_high": [],
                                    "latency_vs_fp32_basis": [], "cpu_vs_fp32": [], "cpu_vs_fp32_low": [],
                                    "cpu_vs_fp32_high": []}
    for row in table.to_dict("records"):
        by_device = _ratio(float(row["device_latency_ms"]), ref_device)
        cpu = (float(row["cpu_vs_fp32"]), float(row["cpu_vs_fp32_low"]), float(row["cpu_vs_fp32_high"]))
        if not math.isfinite(cpu[0]):  # an older cost.csv: p50 over p50, no spread
            cpu = (_ratio(float(row["cpu_latency_p50_ms"]), ref_cpu), math.nan, math.nan)
        if not len(ref):
            cpu = (math.nan, math.nan, math.nan)
        if math.isfinite(by_device):
            chosen, basis = (by_device, by_device, by_device), "device"
        elif math.isfinite(cpu[0]):
            # fp32 runs on ONNX Runtime: say when this backend's figure is another runtime's
            runtime = row.get("runtime")
            chosen = cpu
            basis = "cpu" if not isinstance(runtime, str) or runtime in ("", "onnxruntime") else f"cpu {runtime}"
        else:
            chosen, basis = (math.nan, math.nan, math.nan), ""
        for key, value in zip(("latency_vs_fp32", "latency_vs_fp32_low", "latency_vs_fp32_high"), chosen,
                              strict=True):
            out[key].append(value)
        for key, value in zip(("cpu_vs_fp32", "cpu_vs_fp32_low", "cpu_vs_fp32_high"), cpu, strict=True):
            out[key].append(value)
        out["latency_vs_fp32_basis"].append(basis)
    for key, values in out.items():
        table[key] = values if key == "latency_vs_fp32_basis" else np.asarray(values, dtype=np.float64)
    for col in ("file_bytes", "layers_8bit", "layers_16bit", "layers_float", "latency_rounds"):
        if not table[col].isna().any():
            table[col] = table[col].astype(np.int64)
    return table

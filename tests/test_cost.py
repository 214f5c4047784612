"""facequant.backends.cost: layer precision counts, CPU latency, device profiles, the cost table.

No timing thresholds here: speed depends on the machine, and speed goals never go in unit
tests. Latency is only checked for being a sane measurement."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from facequant import settings
from facequant.backends.base import ort_batch_runner, preprocess
from facequant.backends.cost import (
    COST_COLUMNS,
    CPU_LATENCY_SOURCE,
    backend_cost,
    cost_table,
    count_layers,
    cpu_latencies,
    load_device_profile,
)
from facequant.backends.quantize.build import build_quantized
from facequant.backends.quantize.recipes import RECIPES
from facequant.backends.runtime import OrtBackend
from facequant.backends.timing import TimingSettings
from facequant.errors import FacequantError
from facequant.models.files import file_sha256
from facequant.models.normalize import normalize_model
from facequant.models.spec import ModelSpec, inspect_model

EXAMPLE_PROFILE = settings.configs_dir() / "devices" / "hailo8-example.yaml"


@pytest.fixture(scope="module")
def spec(model_path: Path) -> ModelSpec:
    return inspect_model(model_path)


@pytest.fixture(scope="module")
def fp32_model(model_path: Path) -> Path:
    return normalize_model(model_path)


@pytest.fixture(scope="module")
def quantized(model_path: Path, fp32_model: Path, spec: ModelSpec) -> dict[str, Path]:
    # Smooth random "faces": layer precisions do not depend on what the calibration shows.
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(8, 14, 14, 3)).astype(np.uint8)
    calib = preprocess(np.stack([np.kron(s, np.ones((8, 8, 1), np.uint8)) for s in small]), spec)
    sha = file_sha256(model_path)
    return {
        name: build_quantized(fp32_model, sha, spec.input_name, RECIPES[name], calib)
        for name in ("int8-pt", "a16w8")
    }


# ---------------------------------------------------------------- count_layers, real model


def test_fp32_all_float(fp32_model: Path):
    n_conv = sum(n.op_type == "Conv" for n in onnx.load(str(fp32_model)).graph.node)
    assert n_conv == 50  # the shared MobileFaceNet: 50 Conv (its embedding layer is a Conv too)
    assert count_layers(fp32_model) == {
        "layers_8bit": 0,
        "layers_16bit": 0,
        "layers_float": n_conv,
        "layers_total": n_conv,
    }


def test_int8_qdq_all_8bit(quantized: dict[str, Path]):
    assert count_layers(quantized["int8-pt"]) == {
        "layers_8bit": 50,
        "layers_16bit": 0,
        "layers_float": 0,
        "layers_total": 50,
    }


def test_a16w8_counts_as_16bit(quantized: dict[str, Path]):
    # 8-bit weights but 16-bit activations: a "16-bit layer" is one whose activations OR
    # weights are 16 bit, because the arithmetic and the activation traffic run at 16 bit.
    assert count_layers(quantized["a16w8"]) == {
        "layers_8bit": 0,
        "layers_16bit": 50,
        "layers_float": 0,
        "layers_total": 50,
    }


# ---------------------------------------------------------------- count_layers, tiny graphs


def _save(
    tmp_path: Path,
    nodes: list[onnx.NodeProto],
    inits: list[TensorProto],
    x_type: int = TensorProto.FLOAT,
    name: str = "m.onnx",
    opset: int = 13,
) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", x_type, [1, 4])],
        [helper.make_tensor_value_info("y", x_type, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _weight(name: str, dtype: type = np.float32) -> TensorProto:
    return numpy_helper.from_array(
        np.arange(16, dtype=np.float32).reshape(4, 4).astype(dtype), name
    )


def test_fp16_layers_are_16bit(tmp_path: Path):
    path = _save(
        tmp_path,
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [_weight("w", np.float16)],
        x_type=TensorProto.FLOAT16,
    )
    assert count_layers(path)["layers_16bit"] == 1


def test_dynamic_quantization_is_8bit(tmp_path: Path):
    # Two float layers, then what ORT's dynamic quantizer makes of them (MatMulInteger).
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["y"]),
    ]
    src = _save(tmp_path, nodes, [_weight("w1"), _weight("w2")])
    assert count_layers(src) == {
        "layers_8bit": 0,
        "layers_16bit": 0,
        "layers_float": 2,
        "layers_total": 2,
    }
    dyn = tmp_path / "dyn.onnx"
    quantize_dynamic(str(src), str(dyn), weight_type=QuantType.QInt8)
    assert {n.op_type for n in onnx.load(str(dyn)).graph.node} >= {"MatMulInteger"}
    assert count_layers(dyn)["layers_8bit"] == 2


def test_weight_only_int8_with_float_activations_is_float(tmp_path: Path):
    # int8 weights dequantized into a float MatMul: the arithmetic runs in float.
    wq = numpy_helper.from_array(np.ones((4, 4), np.int8), "wq")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"]),
        helper.make_node("Gemm", ["x", "w"], ["y"]),
    ]
    assert count_layers(_save(tmp_path, nodes, [wq, scale, zp]))["layers_float"] == 1


def test_matmul_of_two_activations_is_not_a_weighted_layer(tmp_path: Path):
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"]),
        helper.make_node("MatMul", ["xt", "x"], ["y"]),
    ]
    assert count_layers(_save(tmp_path, nodes, []))["layers_total"] == 0


def test_count_layers_missing_or_bad_file(tmp_path: Path):
    with pytest.raises(FacequantError, match="model not found"):
        count_layers(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    with pytest.raises(FacequantError, match="bad.onnx"):
        count_layers(bad)


# ---------------------------------------------------------------- latency


QUICK = TimingSettings(rounds=3, per_round=2, warmup=1)


@pytest.fixture(scope="module")
def timed(fp32_model: Path, quantized: dict[str, Path], spec: ModelSpec) -> dict[str, object]:
    backends = {"fp32": OrtBackend("fp32", fp32_model, spec), "int8-pt": OrtBackend("int8-pt", quantized["int8-pt"], spec)}
    return cpu_latencies(backends, 1, QUICK)


def test_interleaved_cpu_latency_is_a_sane_measurement(timed: dict[str, object]):
    for lat in timed.values():
        assert math.isfinite(lat.p50_ms) and lat.p50_ms > 0  # type: ignore[attr-defined]
        assert lat.low_ms <= lat.p50_ms <= lat.high_ms and lat.rounds == 3  # type: ignore[attr-defined]
    assert timed["fp32"].ratio == timed["fp32"].ratio_low == 1.0  # type: ignore[attr-defined]
    assert timed["int8-pt"].ratio_low <= timed["int8-pt"].ratio <= timed["int8-pt"].ratio_high  # type: ignore[attr-defined]


def test_timing_rejects_bad_arguments(spec: ModelSpec, tmp_path: Path):
    with pytest.raises(FacequantError, match="rounds, per_round and threads >= 1"):
        TimingSettings(rounds=0)
    with pytest.raises(FacequantError, match="model not found"):
        ort_batch_runner(tmp_path / "nope.onnx", spec, 1)


# ---------------------------------------------------------------- backend_cost, cost_table


def test_backend_cost_row(quantized: dict[str, Path], spec: ModelSpec):
    row = backend_cost("int8-pt", quantized["int8-pt"], spec)
    assert list(row)[: len(COST_COLUMNS)] == list(COST_COLUMNS)
    assert row["file_bytes"] == quantized["int8-pt"].stat().st_size
    assert (row["layers_8bit"], row["layers_16bit"], row["layers_float"]) == (50, 0, 0)
    assert math.isnan(row["cpu_latency_p50_ms"]) and math.isnan(row["device_latency_ms"])
    assert row["latency_source"] == "not measured"


def test_cost_table_cpu_ratio(fp32_model: Path, quantized: dict[str, Path], spec: ModelSpec, timed: dict):
    rows = [
        backend_cost("fp32", fp32_model, spec, latency=timed["fp32"]),
        backend_cost("int8-pt", quantized["int8-pt"], spec, latency=timed["int8-pt"]),
    ]
    table = cost_table(rows).set_index("backend")
    assert (table["latency_source"] == CPU_LATENCY_SOURCE).all()
    assert table.loc["fp32", "latency_vs_fp32"] == 1.0
    # the median of the per-round ratios, with their spread, in both the basis' and the CPU's columns
    ratio = table.loc["int8-pt", "latency_vs_fp32"]
    assert ratio == timed["int8-pt"].ratio == table.loc["int8-pt", "cpu_vs_fp32"] and ratio > 0
    assert table.loc["int8-pt", "latency_vs_fp32_low"] <= ratio <= table.loc["int8-pt", "latency_vs_fp32_high"]
    assert (table["latency_vs_fp32_basis"] == "cpu").all() and (table["latency_rounds"] == 3).all()
    assert (table["cpu_latency_low_ms"] <= table["cpu_latency_p50_ms"]).all()
    # an older cost.csv without the per-round ratio: p50 over p50
    old = cost_table(table.reset_index().drop(columns=["cpu_vs_fp32"]).to_dict("records")).set_index("backend")
    expected = table.loc["int8-pt", "cpu_latency_p50_ms"] / table.loc["fp32", "cpu_latency_p50_ms"]
    assert old.loc["int8-pt", "latency_vs_fp32"] == pytest.approx(expected)


def test_device_profile_overrides_latency_vs_fp32(
    fp32_model: Path, quantized: dict[str, Path], spec: ModelSpec
):
    profile = {"device": "npu-x", "source": "test", "latency_ms": {"fp32": 10.0, "int8-pt": 2.0}}
    backends = {name: OrtBackend(name, path, spec) for name, path in
                (("fp32", fp32_model), ("int8-pt", quantized["int8-pt"]), ("a16w8", quantized["a16w8"]))}
    timed = cpu_latencies(backends, 1, QUICK)
    rows = [backend_cost(name, b.model_path, spec, profile, timed[name]) for name, b in backends.items()]  # a16w8: not in the profile
    table = cost_table(rows).set_index("backend")
    assert table.loc["int8-pt", "latency_vs_fp32"] == pytest.approx(0.2)
    assert table.loc["int8-pt", "latency_vs_fp32_basis"] == "device"
    assert table.loc["int8-pt", "latency_source"] == "npu-x"
    assert table.loc["int8-pt", "device_latency_ms"] == 2.0
    # Without a device figure a16w8 falls back to CPU vs CPU, never device ms vs CPU ms.
    assert table.loc["a16w8", "latency_source"] == CPU_LATENCY_SOURCE
    assert table.loc["a16w8", "latency_vs_fp32_basis"] == "cpu"
    assert math.isnan(table.loc["a16w8", "device_latency_ms"])
    assert table.loc["a16w8", "latency_vs_fp32"] == timed["a16w8"].ratio
    # the device basis is one figure each: no spread; the CPU ratio stays beside it
    assert table.loc["int8-pt", "latency_vs_fp32_low"] == table.loc["int8-pt", "latency_vs_fp32_high"] == 0.2
    assert table.loc["int8-pt", "cpu_vs_fp32"] == timed["int8-pt"].ratio


def test_cost_table_without_fp32_has_no_ratio():
    rows = [{"backend": "int8-pt", "cpu_latency_p50_ms": 3.0, "device_latency_ms": 1.0}]
    table = cost_table(rows)
    assert math.isnan(table.loc[0, "latency_vs_fp32"])
    assert table.loc[0, "latency_vs_fp32_basis"] == ""


# ---------------------------------------------------------------- device profiles


def test_example_profile_loads_and_says_placeholder():
    profile = load_device_profile(EXAMPLE_PROFILE)
    assert profile["device"] and "PLACEHOLDER" in str(profile["source"])
    latency = profile["latency_ms"]
    assert isinstance(latency, dict) and {"fp32", "int8-pt", "int8-pc", "a16w8"} <= set(latency)
    assert all(isinstance(v, float) and v > 0 for v in latency.values())
    assert profile["power_w"] == 2.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "device profile not found"),
        ("device: [unclosed\n", "not valid YAML at line"),
        ("- a list\n", "must be a mapping"),
        ("device: npu\n", "missing key(s): source, latency_ms"),
        ("device: npu\nsource: me\nlatency_ms: 3\n", "latency_ms must map backend names"),
        (
            "device: npu\nsource: me\nlatency_ms: {int8-pt: -1}\n",
            "latency_ms.int8-pt must be a positive",
        ),
        ("device: npu\nsource: me\nlatency_ms: {int8-pt: fast}\n", "must be a positive number"),
        ("device: npu\nsource: me\nlatency_ms: {int8-pt: 1}\npower_w: lots\n", "power_w must be"),
    ],
)
def test_profile_errors_are_one_line_naming_the_file(
    tmp_path: Path, text: str | None, message: str
):
    path = tmp_path / "npu.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(FacequantError) as info:
        load_device_profile(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))
    assert message in msg

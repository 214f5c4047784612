"""Precision backends on the real model and real photos: fp16, int8-dyn, a16w16, mixed
precision by layer selectors, and the NPU constraint presets (symmetric, power-of-two)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from facequant.backends.quantize.build import pow2_moves_path
from facequant.backends.quantize.layers import graph_layers, resolve_recipe
from facequant.backends.quantize.npu import _best_pow2_for_constant
from facequant.backends.quantize.recipes import split_recipe_name
from facequant.backends.registry import BackendFactory, parse_backends
from facequant.errors import FacequantError
from facequant.sweep.config import SweepConfig
from facequant.sweep.probes import ProbeSet, prepare_probes

LAST3 = ["Conv_91", "Conv_93", "Conv_94"]  # the shared MobileFaceNet's last weighted layers


@pytest.fixture(scope="module")
def probes(model_path: Path, celebs13: Path) -> ProbeSet:
    return prepare_probes(SweepConfig(model=str(model_path), data=str(celebs13), distances_m=(1.0, 6.0)))


@pytest.fixture(scope="module")
def factory(probes: ProbeSet) -> BackendFactory:
    calib = probes.calibration_tensors()
    return BackendFactory(probes.normalized, probes.model_sha, probes.spec, lambda: calib)


@pytest.fixture(scope="module")
def crops(probes: ProbeSet) -> dict[str, np.ndarray]:
    return {"close": probes.probe_crops(0)[0], "far": probes.probe_crops(1)[0]}


@pytest.fixture(scope="module")
def cos_to_fp32(factory: BackendFactory, crops: dict[str, np.ndarray]):
    """cos(name, range) -> mean cosine to fp32 over celebs13 at 1 m ("close") or 6 m ("far")."""
    fp32 = factory.make("fp32")
    ref = {k: fp32.embed(v) for k, v in crops.items()}
    seen: dict[tuple[str, str], float] = {}

    def cos(name: str, rng: str = "far") -> float:
        if (name, rng) not in seen:
            e, r = factory.make(name).embed(crops[rng]), ref[rng]
            seen[(name, rng)] = float(np.mean(np.sum(e * r, 1) / np.linalg.norm(e, axis=1) / np.linalg.norm(r, axis=1)))
        return seen[(name, rng)]

    return cos


def _graph(backend) -> tuple[onnx.GraphProto, dict[str, np.ndarray], dict[str, onnx.NodeProto]]:
    model = onnx.load(str(backend.model_path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    return model.graph, inits, producer


@pytest.mark.slow
def test_more_bits_closer_to_fp32_at_far_range(cos_to_fp32):
    # The acceptance test, at 6 m (a 32 px face) on celebs13.
    assert cos_to_fp32("a16w16") > cos_to_fp32("int8-pc") > cos_to_fp32("int8-pt")
    assert cos_to_fp32("a16w16") > 0.999


@pytest.mark.slow
def test_fp16_and_dynamic(factory: BackendFactory, cos_to_fp32):
    assert cos_to_fp32("fp16") > 0.999
    assert cos_to_fp32("int8-dyn") < 0.9999  # really quantized
    assert cos_to_fp32("int8-dyn") > 0.8
    fp16 = factory.make("fp16")
    graph, inits, _ = _graph(fp16)
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(a.dtype == np.float16 and a.ndim == 4 for a in inits.values())  # fp16 conv weights
    for name in ("fp16", "int8-dyn", "a16w16"):
        d = factory.make(name).describe()
        assert d["file_bytes"] > 0 and d["precision"] and d["layers_16bit"] == [] and d["layers_float"] == []
    assert factory.make("fp16").describe()["file_bytes"] < factory.make("fp32").describe()["file_bytes"] * 0.6


@pytest.mark.slow
def test_a16w16_uses_16bit_qdq(factory: BackendFactory):
    backend = factory.make("a16w16")
    graph, inits, _ = _graph(backend)
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    weight_types = {inits[n.input[0]].dtype for n in dq if n.input[0] in inits} - {np.dtype(np.int32)}
    activation_types = {inits[n.input[2]].dtype for n in dq if n.input[0] not in inits}
    assert weight_types == {np.dtype(np.int16)} and activation_types == {np.dtype(np.uint16)}
    assert onnx.load(str(backend.model_path)).opset_import[0].version >= 21  # ORT's 16-bit Q/DQ


@pytest.mark.slow
def test_last3_selects_16bit_layers(factory: BackendFactory, cos_to_fp32):
    name = "int8-pt+16bit:last3"
    backend = factory.make(name)
    d = backend.describe()
    assert d["layers_16bit"] == LAST3 and d["layers_float"] == []
    assert d["recipe"]["layers_16bit"] == LAST3 and d["recipe"]["base"] == "int8-pt"
    assert d["recipe"]["selectors"] == ["16bit:last3"]
    assert json.loads(json.dumps(d))["layers_16bit"] == LAST3  # what run.json keeps
    graph, inits, producer = _graph(backend)
    for node in graph.node:
        if node.name in LAST3:
            w = producer[node.input[1]]
            assert w.op_type == "DequantizeLinear" and inits[w.input[0]].dtype == np.int16
            assert inits[producer[node.input[0]].input[2]].dtype == np.uint16
        elif node.name == "Conv_89":
            assert inits[producer[node.input[1]].input[0]].dtype == np.int8
    assert cos_to_fp32(name) >= cos_to_fp32("int8-pt")


@pytest.mark.slow
def test_float_layers_keep_float_weights(factory: BackendFactory, cos_to_fp32):
    backend = factory.make("int8-pt+float:last3")
    assert backend.describe()["layers_float"] == LAST3
    graph, inits, producer = _graph(backend)
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    for name in LAST3:
        weight = convs[name].input[1]
        assert weight not in producer and inits[weight].dtype == np.float32  # no DequantizeLinear
    assert producer[convs["Conv_89"].input[1]].op_type == "DequantizeLinear"
    assert cos_to_fp32("int8-pt+float:last3") >= cos_to_fp32("int8-pt")


def test_selectors_resolve_on_the_model(factory: BackendFactory, tmp_path: Path):
    model = factory.model_path
    layers = graph_layers(model)
    assert len(layers.weighted) == 50
    assert resolve_recipe("int8-pc+16bit:first1", model).layers_16bit == ("Conv_0",)
    dw = resolve_recipe("int8-pc+16bit:dw", model).layers_16bit
    assert len(dw) == 17 and "Conv_93" in dw and "Conv_94" not in dw and "Conv_0" not in dw
    nodes = resolve_recipe("int8-pc+float:nodes=Conv_94;Conv_4", model)
    assert nodes.layers_float == ("Conv_4", "Conv_94")  # topological order

    layer_file = tmp_path / "layers.txt"
    layer_file.write_text("# keep the head precise\nConv_94\n\n  Conv_93  # depthwise 7x7\n")
    from_file = resolve_recipe(f"int8-pt+16bit:file={layer_file}", model)
    assert from_file.layers_16bit == ("Conv_93", "Conv_94")
    assert from_file.selectors == (f"16bit:file={layer_file}",)
    assert parse_backends(f"int8-pt+16bit:file={layer_file}") == ["fp32", f"int8-pt+16bit:file={layer_file}"]

    with pytest.raises(FacequantError, match="Conv_999") as err:
        resolve_recipe("int8-pt+16bit:nodes=Conv_94;Conv_999", model)
    assert "Conv_0" in str(err.value) and "\n" not in str(err.value)  # lists valid names, one line
    with pytest.raises(FacequantError, match="50 weighted layers"):
        resolve_recipe("int8-pt+float:last51", model)
    layer_file.write_text("Conv_94\nConv_does_not_exist\n")
    with pytest.raises(FacequantError, match="Conv_does_not_exist"):
        resolve_recipe(f"int8-pt+16bit:file={layer_file}", model)


@pytest.mark.slow
def test_chained_selectors(factory: BackendFactory, cos_to_fp32):
    name = "int8-pc+16bit:last3+float:first1"
    d = factory.make(name).describe()
    assert d["layers_16bit"] == LAST3 and d["layers_float"] == ["Conv_0"]
    assert d["precision"] == "w8a8-pc+16bit:3+float:1"
    # float wins where both choose a node, so the recorded lists never overlap
    both = resolve_recipe("int8-pc+16bit:last3+float:last1", factory.model_path)
    assert both.layers_16bit == ("Conv_91", "Conv_93") and both.layers_float == ("Conv_94",)
    assert cos_to_fp32(name) > cos_to_fp32("int8-pt")


@pytest.mark.slow
def test_int8_npu_scales_are_powers_of_two(factory: BackendFactory, cos_to_fp32):
    backend = factory.make("int8-npu")
    graph, inits, _ = _graph(backend)
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    scales = np.concatenate([inits[n.input[1]].ravel() for n in qdq]).astype(np.float64)
    assert len(qdq) > 100 and np.all(np.log2(scales) == np.round(np.log2(scales)))

    summary = backend.describe()["pow2_scales"]
    moves = json.loads(pow2_moves_path(backend.model_path).read_text())["moves"]
    assert summary["moves_file"] == str(pow2_moves_path(backend.model_path))
    rounded = [m for m in moves if m["kind"] != "bias"]
    assert summary["scales"] == len(rounded) == 146  # 96 activation + 50 weight scales
    assert {m["kind"] for m in moves} == {"activation", "weight", "bias"}
    ratios = np.array([abs(m["log2_ratio"]) for m in rounded])
    assert summary["max_abs_log2_ratio"] == pytest.approx(ratios.max())
    # activations: nearest power of two; weights: the one just below or above (smaller error)
    assert max(abs(m["log2_ratio"]) for m in rounded if m["kind"] == "activation") <= 0.5 + 1e-9
    assert max(abs(m["log2_ratio"]) for m in rounded if m["kind"] == "weight") < 1.0
    assert summary["median_abs_log2_ratio"] == pytest.approx(np.median(ratios))
    for m in moves:
        assert m["new"] == pytest.approx(m["old"] * 2 ** m["log2_ratio"])

    # Weights were re-quantized to the new scale: dequantized they still match the float weights.
    float_inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(factory.model_path)).graph.initializer}
    old_scale = {m["tensor"]: m["old"] for m in moves}
    checked = 0
    for n in qdq:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8:
            w = float_inits[n.input[0].removesuffix("_quantized")]
            s_new, s_old = float(inits[n.input[1]]), old_scale[n.input[1]]
            deq = inits[n.input[0]].astype(np.float64) * s_new
            inside = np.abs(w) <= 127 * s_new  # the rest clips, as on the NPU
            # two roundings: the original quantization (s_old / 2), the re-quantization (s_new / 2)
            assert np.abs(deq - w)[inside].max() <= (s_old + s_new) / 2 + 1e-7
            checked += 1
    assert checked == 50
    far = cos_to_fp32("int8-npu")
    assert 0.5 < far < cos_to_fp32("int8-sym") + 0.02  # it runs; pow2 costs precision, it does not add any


def test_pow2_weight_scale_is_the_one_with_the_smaller_error():
    # One weight of 11.3 among small ones, scale 11.3 / 32767 (log2 -11.5): the nearest power of
    # two rounds down and clips 11.3 to 8.0; the one above keeps it, and wins on squared error.
    real = np.array([11.3, 0.01, -0.02, 0.005])
    s_old = np.array([11.3 / 32767])
    q = np.round(real / s_old).astype(np.int16)
    best = _best_pow2_for_constant(q, np.zeros(1), s_old, [1])
    assert best[0] == 2.0 ** np.ceil(np.log2(s_old[0])) != 2.0 ** np.round(np.log2(s_old[0]))
    # Per channel, each channel chooses: a channel of evenly spread int8 weights just above a
    # power of two keeps resolution by going below (a few values clip by less than they gain).
    spread = np.linspace(-1.0, 1.0, 201)
    qc = np.stack([np.round(real[:1] / (11.3 / 127)).repeat(201), np.round(spread / (1.02 / 127))]).astype(np.int8)
    s_c = np.array([11.3 / 127, 1.02 / 127])
    chosen = _best_pow2_for_constant(qc, np.zeros(1), s_c, [-1, 1])
    assert chosen[0] == 2.0 ** np.ceil(np.log2(s_c[0]))
    assert chosen[1] == 2.0 ** np.floor(np.log2(s_c[1]))


@pytest.mark.slow
def test_int8_npu_promoting_a_layer_to_16_bit_helps(cos_to_fp32):
    # The first depthwise layer loses the most SNR; at 16 bit under power-of-two scales it must
    # help, not hurt (nearest-in-log2 weight scales once clipped its largest weights: -0.14).
    assert cos_to_fp32("int8-npu+16bit:nodes=Conv_2") > cos_to_fp32("int8-npu") + 0.02


@pytest.mark.slow
def test_int8_sym_zero_points_are_symmetric(factory: BackendFactory):
    graph, inits, _ = _graph(factory.make("int8-sym"))
    zps = [inits[n.input[2]] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert zps and all(z.dtype in (np.int8, np.int32) and np.all(z == 0) for z in zps)
    weights = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and inits[n.input[0]].dtype == np.int8]
    assert all(inits[n.input[1]].size == 1 for n in weights)  # per-tensor weight scales


def test_backend_names_and_parse_errors(tmp_path: Path):
    assert parse_backends("int8-pc,int8-pc+16bit:last3") == ["fp32", "int8-pc", "int8-pc+16bit:last3"]
    assert parse_backends("int8-pt,fp32,fp16") == ["fp32", "int8-pt", "fp16"]  # fp32 always first
    assert parse_backends("a16w16,int8-dyn,int8-sym,int8-npu")[0] == "fp32"
    assert parse_backends("int8-npu+16bit:nodes=A;B+float:dw")[1] == "int8-npu+16bit:nodes=A;B+float:dw"
    assert parse_backends("external:hailo=/no/such/dir")[1] == "external:hailo=/no/such/dir"  # path not checked here
    assert split_recipe_name("int8-pc+16bit:last3+float:first1") == ("int8-pc", [("16bit", "last3"), ("float", "first1")])
    bad = {
        "int8-pc+16bit:lst3": "'lst3'",
        "int8-pc+8bit:last3": "'8bit'",
        "int9+16bit:last3": "'int9'",
        "fp16+float:last1": "static base",
        "int8-dyn+16bit:last1": "static base",
        "int8-pc+16bit:last0": "'last0'",
        "int8-pc+16bit": "'\\+16bit'",
        "int8-pc+float:nodes=": "names no node",
        f"int8-pc+16bit:file={tmp_path / 'missing.txt'}": "missing.txt",
        "external:hailo": "external:NAME=PATH",
        "vibes": "unknown",
    }
    for name, part in bad.items():
        with pytest.raises(FacequantError, match=part) as err:
            parse_backends(f"int8-pt,{name}")
        assert "\n" not in str(err.value) and name in str(err.value)

"""facequant.models.graph: in-graph input normalization and output L2 normalization, found
from the ops (never node names), on models built with onnx.helper and on the shared models;
and normalize_model cutting an L2 tail so the raw embedding is the output."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from corpus import shared_asset
from onnx import TensorProto, helper, numpy_helper

from facequant import settings
from facequant.errors import BadModelError
from facequant.models.files import load_graph
from facequant.models.graph import cut_l2, input_normalization, l2_tail
from facequant.models.normalize import l2_cut, normalize_model
from facequant.models.spec import (
    PREPROCESS_DEFAULT,
    PREPROCESS_GRAPH,
    inferred_preprocessing_source,
    inspect_model,
)

SIZE = 8
DIM = 16
RNG = np.random.default_rng(7)
W_CONV = RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)
W_FC = RNG.normal(size=(4 * (SIZE - 2) ** 2, DIM)).astype(np.float32)


def _model(pre: list[onnx.NodeProto] = (), head: list[onnx.NodeProto] = (), inits: list[onnx.TensorProto] = (),
           first: str = "x", out: str = "y") -> onnx.ModelProto:
    """x [N,3,8,8] -> pre (ending in `first`) -> Conv -> Flatten -> Gemm = 'emb' -> head (ending in `out`)."""
    body = [helper.make_node("Conv", [first, "w_conv"], ["c"]),
            helper.make_node("Flatten", ["c"], ["f"], axis=1),
            helper.make_node("Gemm", ["f", "w_fc"], ["emb"])]
    graph = helper.make_graph(
        [*pre, *body, *head], "toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", DIM])],
        [numpy_helper.from_array(W_CONV, "w_conv"), numpy_helper.from_array(W_FC, "w_fc"), *inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _const(name: str, value: object) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------- input normalization

PER_CHANNEL = [[[103.939]], [[116.779]], [[123.68]]]  # shape [3, 1, 1]

INPUT_CASES = {
    # name: (nodes, initializers, expected mean, expected std)
    "lowercase-sub-mul": ([helper.make_node("Sub", ["x", "m"], ["s"], name="sub"),
                           helper.make_node("Mul", ["s", "k"], ["n"], name="mul")],
                          [_const("m", [127.5]), _const("k", [0.0078125])], (127.5,), (128.0,)),
    "unnamed-sub-div": ([helper.make_node("Sub", ["x", "m"], ["s"]), helper.make_node("Div", ["s", "k"], ["n"])],
                        [_const("m", 127.5), _const("k", 127.5)], (127.5,), (127.5,)),
    "per-channel-sub": ([helper.make_node("Sub", ["x", "m"], ["n"], name="Preprocess/caffe")],
                        [_const("m", PER_CHANNEL)], (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
    "mul-then-add": ([helper.make_node("Mul", ["x", "k"], ["s"], name="scale"),
                      helper.make_node("Add", ["s", "b"], ["n"], name="shift")],
                     [_const("k", 1 / 128), _const("b", -127.5 / 128)], (127.5,), (128.0,)),
    "cast-then-constant-on-left": ([helper.make_node("Cast", ["x"], ["xc"], to=TensorProto.FLOAT),
                                    helper.make_node("Mul", ["k", "xc"], ["n"], name="anything")],
                                   [_const("k", 1 / 255)], (0.0,), (255.0,)),
}


@pytest.mark.parametrize("case", list(INPUT_CASES), ids=list(INPUT_CASES))
def test_input_normalization_found_from_ops(case: str) -> None:
    nodes, inits, mean, std = INPUT_CASES[case]
    model = _model(nodes, inits=inits, first="n", out="emb")
    found = input_normalization(model)
    assert found is not None
    assert found.mean == pytest.approx(mean, rel=1e-5) and found.std == pytest.approx(std, rel=1e-5)
    # the equivalence it claims holds on the graph itself: feeding (x - mean) / std to the
    # bare Conv gives what the model computes on raw pixels
    x = RNG.uniform(0, 255, (2, 3, SIZE, SIZE)).astype(np.float32)
    bare = _model(out="emb")
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    np.testing.assert_allclose(_run(model, x), _run(bare, (x - m) / s), rtol=1e-4, atol=1e-3)


NOT_NORMALIZATION = {
    "conv-first": ([], []),
    "mul-by-a-tensor": ([helper.make_node("Mul", ["x", "x"], ["n"], name="Mul_0")], []),
    "spatial-map": ([helper.make_node("Sub", ["x", "m"], ["n"], name="Sub_0")],
                    [_const("m", np.ones((1, 1, SIZE, SIZE)))]),
    "constant-divided-by-x": ([helper.make_node("Div", ["k", "x"], ["n"], name="_minus")], [_const("k", 1.0)]),
}


@pytest.mark.parametrize("case", list(NOT_NORMALIZATION), ids=list(NOT_NORMALIZATION))
def test_input_normalization_not_claimed(case: str) -> None:
    nodes, inits = NOT_NORMALIZATION[case]
    model = _model(nodes, inits=inits, first="n" if nodes else "x", out="emb")
    assert input_normalization(model) is None


def test_inspect_infers_raw_pixels_from_ops_not_names(tmp_path: Path) -> None:
    # Lowercase names (tf2onnx's "sub", "mul") defeat insightface's name rule; the ops do not.
    nodes, inits, _, _ = INPUT_CASES["lowercase-sub-mul"]
    path = _save(_model(nodes, inits=inits, first="n", out="emb"), tmp_path / "self_normalizing.onnx")
    spec = inspect_model(path)
    assert (spec.mean, spec.std, spec.channel_order) == (0.0, 1.0, "RGB")
    assert inferred_preprocessing_source(path) == PREPROCESS_GRAPH
    # and the normalized copy keeps it (its metadata carries the source's verdict)
    norm = inspect_model(normalize_model(path, cache=tmp_path / "cache"))
    assert (norm.mean, norm.std) == (0.0, 1.0)
    assert inferred_preprocessing_source(normalize_model(path, cache=tmp_path / "cache")) == PREPROCESS_GRAPH


@pytest.fixture(scope="module")
def shared_models(shared: Path) -> dict[str, Path]:
    models = {"faceplugin": settings.default_model_path(),
              "mobileface": shared / "models" / "human-mobileface" / "mobileface.onnx",
              "faceres": shared / "models" / "hse-faceres" / "faceres.onnx"}
    for path in models.values():
        shared_asset(path)
    return models


def test_real_models_input_normalization(shared_models: dict[str, Path]) -> None:
    found = input_normalization(load_graph(shared_models["mobileface"]))
    assert found is not None and found.ops == ("Sub", "Mul") and found.nodes == ("sub", "mul")
    assert found.mean == pytest.approx((127.5,)) and found.std == pytest.approx((128.0,))
    assert (inspect_model(shared_models["mobileface"]).mean, inspect_model(shared_models["mobileface"]).std) == (0.0, 1.0)
    for name in ("faceplugin", "faceres"):
        assert input_normalization(load_graph(shared_models[name])) is None, name
    assert inferred_preprocessing_source(shared_models["faceres"]) == PREPROCESS_DEFAULT


# --------------------------------------------------------------------------- L2 tail


def _l2_case(name: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """Nodes turning 'emb' into the output 'y' by an L2 normalization, as exporters write it."""
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    if name == "LpNormalization":
        return [helper.make_node("LpNormalization", ["emb"], ["y"], axis=1, p=2)], [], "LpNormalization(p=2)"
    if name == "torch-F.normalize":  # ReduceL2 -> Clip(eps) -> Expand -> Div
        shape = numpy_helper.from_array(np.array([1, DIM], np.int64), "shape")
        return ([helper.make_node("ReduceL2", ["emb"], ["n"], axes=[1], keepdims=1),
                 helper.make_node("Clip", ["n", "eps"], ["nc"]),
                 helper.make_node("Expand", ["nc", "shape"], ["ne"]),
                 helper.make_node("Div", ["emb", "ne"], ["y"])],
                [_const("eps", 1e-12), shape], "Div(x, ReduceL2(x))")
    if name == "sqrt-reducesum-square":  # x / sqrt(max(sum(x*x), eps)), then an Identity
        return ([helper.make_node("Mul", ["emb", "emb"], ["sq"]),
                 helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], keepdims=1),
                 helper.make_node("Max", ["ss", "eps"], ["sm"]),
                 helper.make_node("Sqrt", ["sm"], ["n"]),
                 helper.make_node("Div", ["emb", "n"], ["yn"]),
                 helper.make_node("Identity", ["yn"], ["y"])],
                [axes, _const("eps", 1e-12)], "Div(x, Sqrt(ReduceSum(x^2))(x))")
    if name == "tf-l2_normalize":  # x * reciprocal(sqrt(max(reduce_sum_square(x), eps)))
        return ([helper.make_node("ReduceSumSquare", ["emb"], ["ss"], axes=[-1], keepdims=1),
                 helper.make_node("Max", ["eps", "ss"], ["sm"]),
                 helper.make_node("Sqrt", ["sm"], ["n"]),
                 helper.make_node("Reciprocal", ["n"], ["r"]),
                 helper.make_node("Mul", ["r", "emb"], ["y"])],
                [_const("eps", 1e-12)], "Mul(x, 1 / Sqrt(ReduceSumSquare)(x))")
    raise KeyError(name)


L2_CASES = ["LpNormalization", "torch-F.normalize", "sqrt-reducesum-square", "tf-l2_normalize"]


@pytest.mark.parametrize("case", L2_CASES, ids=L2_CASES)
def test_l2_tail_found_and_cut(case: str, tmp_path: Path) -> None:
    nodes, inits, pattern = _l2_case(case)
    model = _model(head=nodes, inits=inits)
    tail = l2_tail(model)
    assert tail is not None and tail.raw == "emb" and tail.output == "y" and tail.pattern == pattern

    x = RNG.uniform(-1, 1, (3, 3, SIZE, SIZE)).astype(np.float32)
    raw = _run(_model(out="emb"), x)  # the head without any normalization
    np.testing.assert_allclose(np.linalg.norm(_run(model, x), axis=1), 1.0, rtol=1e-5)  # precondition

    cut = cut_l2(model, tail)
    onnx.checker.check_model(cut)
    assert [o.name for o in cut.graph.output] == ["y"]
    assert not {"LpNormalization", "ReduceL2", "Sqrt", "Div", "Reciprocal", "Clip"} & {n.op_type for n in cut.graph.node}
    np.testing.assert_allclose(_run(cut, x), raw, rtol=1e-5, atol=1e-5)

    # normalize_model does it, proves it (normalized raw == the original output), says so
    src = _save(model, tmp_path / f"{case}.onnx")
    normalized = normalize_model(src, cache=tmp_path / "cache")
    np.testing.assert_allclose(_run(normalized, x), raw, rtol=1e-5, atol=1e-5)
    assert inspect_model(normalized).output_name == "y"  # backends keep the same output name
    found = l2_cut(normalized)
    assert found is not None and found.raw == "emb" and found.pattern == pattern
    assert l2_cut(src) == tail  # a source file: read from its graph


def _wrong_axis() -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    return ([helper.make_node("ReduceL2", ["emb"], ["n"], axes=[0], keepdims=1),
             helper.make_node("Div", ["emb", "n"], ["y"])], [])


NOT_L2 = {
    "norm-over-the-batch": _wrong_axis(),
    "divided-by-a-constant": ([helper.make_node("Div", ["emb", "k"], ["y"])], [_const("k", 3.0)]),
    "l1-norm": ([helper.make_node("ReduceL1", ["emb"], ["n"], axes=[1], keepdims=1),
                 helper.make_node("Div", ["emb", "n"], ["y"])], []),
    "norm-of-another-tensor": ([helper.make_node("Relu", ["emb"], ["r"]),
                                helper.make_node("ReduceL2", ["r"], ["n"], axes=[1], keepdims=1),
                                helper.make_node("Div", ["emb", "n"], ["y"])], []),
}


@pytest.mark.parametrize("case", list(NOT_L2), ids=list(NOT_L2))
def test_l2_tail_not_claimed(case: str, tmp_path: Path) -> None:
    nodes, inits = NOT_L2[case]
    model = _model(head=nodes, inits=inits)
    assert l2_tail(model) is None
    if case == "norm-over-the-batch":
        return  # its output depends on the batch: normalize_model refuses it (the batch test)
    normalized = normalize_model(_save(model, tmp_path / "m.onnx"), cache=tmp_path / "cache")
    assert l2_cut(normalized) is None
    x = RNG.uniform(-1, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(_run(normalized, x), _run(model, x), rtol=1e-5, atol=1e-6)  # untouched


def test_cut_that_changes_the_direction_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # If detection ever named the wrong tensor, the verification must refuse the rewrite rather
    # than sweep another model: emb -> Relu -> LpNormalization, cut as if the raw were 'emb'.
    from facequant.models import normalize

    head = [helper.make_node("Relu", ["emb"], ["r"], name="relu"),
            helper.make_node("LpNormalization", ["r"], ["y"], axis=1, p=2, name="l2")]
    model = _model(head=head)
    tail = l2_tail(model)
    assert tail is not None and tail.raw == "r"
    wrong = dataclasses.replace(tail, raw="emb", nodes=("relu", "l2"))
    monkeypatch.setattr(normalize, "l2_tail", lambda _model: wrong)
    with pytest.raises(BadModelError, match="after cutting its output L2 normalization"):
        normalize_model(_save(model, tmp_path / "m.onnx"), cache=tmp_path / "cache")


def test_real_models_have_no_l2_tail(shared_models: dict[str, Path]) -> None:
    # All three shared models output the raw embedding already (their SOURCE.md files).
    for name, path in shared_models.items():
        assert l2_tail(load_graph(path)) is None, name

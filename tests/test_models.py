"""facequant.models.spec on the real shared model and on tiny models built with onnx.helper."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from facequant.errors import BadModelError, FacequantError
from facequant.models import sources as models
from facequant.models.files import FACEPLUGIN_SHA256, file_sha256
from facequant.models.normalize import normalize_model
from facequant.models.sources import pull_faceplugin, resolve_model
from facequant.models.spec import ModelSpec, describe, inspect_model

# --------------------------------------------------------------------------- helpers


def _run(path: Path | str, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    return y


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _opset9(graph: onnx.GraphProto) -> onnx.ModelProto:
    # IR 7 pairs with opset 9 the way the real (pytorch-exported) shared model does.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=7)


def _conv_reshape_model(path: Path, shape_via_identity: bool = False) -> Path:
    """[1,3,8,8] -> Conv(4 filters, 3x3) -> Reshape([1,-1]) -> [1,144]: batch hard-coded."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv")]
    if shape_via_identity:
        # Batch still hard-coded, but not through a constant normalize_model can rewrite.
        nodes.append(helper.make_node("Identity", ["shape"], ["shape2"], name="ident"))
        nodes.append(helper.make_node("Reshape", ["c", "shape2"], ["y"], name="reshape"))
    else:
        nodes.append(helper.make_node("Reshape", ["c", "shape"], ["y"], name="reshape"))
    graph = helper.make_graph(
        nodes,
        "conv_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 144])],
        initializer=[w, shape],
    )
    return _save(_opset9(graph), path)


def _pool_embedding_model(path: Path, size: int, dim: int) -> Path:
    """[1,3,size,size] -> GlobalAveragePool -> Flatten -> MatMul -> [1,dim]."""
    wm = numpy_helper.from_array(np.ones((3, dim), dtype=np.float32), "wm")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["x"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("MatMul", ["f", "wm"], ["y"]),
        ],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dim])],
        initializer=[wm],
    )
    return _save(_opset9(graph), path)


# --------------------------------------------------------------------------- inspect


def test_inspect_shared_model(model_path: Path) -> None:
    spec = inspect_model(model_path)
    assert spec.path == str(model_path)
    assert spec.input_name == "input"
    assert spec.output_name == "output"
    assert spec.input_size == (112, 112)
    assert spec.embedding_dim == 512
    assert spec.opset == 9
    assert spec.batch_dim == 1
    # Recognised by sha256: not insightface's default 127.5 / 127.5.
    assert (spec.mean, spec.std, spec.channel_order) == (127.0, 128.0, "RGB")
    d = spec.to_dict()
    assert d["input_size"] == [112, 112] and d["embedding_dim"] == 512
    assert ModelSpec(**{**d, "input_size": tuple(d["input_size"])}) == spec
    text = describe(spec)
    assert "(pixel - 127) / 128" in text and "512" in text and str(model_path) in text


def test_inspect_overrides(model_path: Path) -> None:
    spec = inspect_model(
        model_path, {"mean": 0, "std": 1.0, "channel_order": "bgr", "input_size": [112, 112]}
    )
    assert (spec.mean, spec.std, spec.channel_order) == (0.0, 1.0, "BGR")
    assert isinstance(spec.mean, float) and spec.input_size == (112, 112)
    assert spec.embedding_dim == 512  # untouched fields keep their inferred values
    with pytest.raises(FacequantError, match="meen"):
        inspect_model(model_path, {"meen": 0.0})
    with pytest.raises(FacequantError, match="channel_order"):
        inspect_model(model_path, {"channel_order": "RGBA"})


def test_insightface_rule_for_unknown_models(tmp_path: Path) -> None:
    # Not the faceplugin file, no Sub+Mul nodes up front: insightface's 127.5 / 127.5, RGB.
    spec = inspect_model(_pool_embedding_model(tmp_path / "pool.onnx", 112, 16))
    assert (spec.mean, spec.std, spec.channel_order) == (127.5, 127.5, "RGB")
    assert spec.embedding_dim == 16 and spec.batch_dim == 1


def test_garbage_file_is_bad_model(tmp_path: Path) -> None:
    bad = tmp_path / "not_a_model.onnx"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(BadModelError, match="not_a_model.onnx") as err:
        inspect_model(bad)
    assert "ONNX" in err.value.reason
    with pytest.raises(BadModelError, match="not found"):
        inspect_model(tmp_path / "missing.onnx")


def test_rank4_output_is_bad_model(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "rank4",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = _save(_opset9(graph), tmp_path / "rank4.onnx")
    with pytest.raises(BadModelError) as err:
        inspect_model(path)
    assert err.value.reason == "model output has shape [1, 3, 8, 8]: expected [batch, D] embedding"


def test_rank2_input_is_bad_model(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "rank2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 192])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 192])],
    )
    path = _save(_opset9(graph), tmp_path / "rank2in.onnx")
    with pytest.raises(BadModelError, match=r"input has shape \[1, 192\]"):
        inspect_model(path)


# --------------------------------------------------------------------------- normalize


def test_normalize_shared_model(model_path: Path, tmp_path: Path) -> None:
    out = normalize_model(model_path)
    assert out.is_file() and out.parent.name == "models"
    assert file_sha256(model_path) == FACEPLUGIN_SHA256["fr_feature.onnx"]  # source untouched

    m = onnx.load(str(out))
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 13
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert m.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    # The normalized copy keeps the source's preprocessing though its sha256 changed.
    spec = inspect_model(out)
    assert (spec.mean, spec.std, spec.batch_dim, spec.opset) == (127.0, 128.0, "batch", opset)

    rng = np.random.default_rng(123)
    x = ((rng.uniform(0, 255, (5, 3, 112, 112)) - 127.0) / 128.0).astype(np.float32)
    batched = _run(out, x)
    per_sample = np.concatenate([_run(model_path, x[i : i + 1]) for i in range(5)])
    assert batched.shape == (5, 512)
    assert np.max(np.abs(batched - per_sample)) <= 1e-5

    # Second call: cache hit, nothing rewritten.
    mtime = out.stat().st_mtime_ns
    assert normalize_model(model_path) == out
    assert out.stat().st_mtime_ns == mtime


def test_normalize_synthetic_reshape_model(tmp_path: Path) -> None:
    src = _conv_reshape_model(tmp_path / "tiny.onnx")
    with pytest.raises(Exception):  # noqa: B017 - the precondition: batch 4 fails as shipped
        _run(src, np.zeros((4, 3, 8, 8), np.float32))
    out = normalize_model(src, cache=tmp_path / "cache")
    assert out.parent == tmp_path / "cache"
    x = np.random.default_rng(5).normal(size=(4, 3, 8, 8)).astype(np.float32)
    got = _run(out, x)
    want = np.concatenate([_run(src, x[i : i + 1]) for i in range(4)])
    assert got.shape == (4, 144)
    assert np.max(np.abs(got - want)) <= 1e-5
    assert inspect_model(out).batch_dim == "batch"


def test_normalize_reports_batch_still_hard_coded(tmp_path: Path) -> None:
    src = _conv_reshape_model(tmp_path / "stubborn.onnx", shape_via_identity=True)
    with pytest.raises(BadModelError, match="hard-codes batch") as err:
        normalize_model(src, cache=tmp_path / "cache")
    assert "stubborn.onnx" in str(err.value)
    assert not list((tmp_path / "cache").glob("*.onnx"))  # nothing cached


def test_normalize_nan_model(tmp_path: Path) -> None:
    # Flatten -> Sqrt(x - 10): inputs are in [-1, 1], so every output is NaN.
    shift = numpy_helper.from_array(np.array(10.0, dtype=np.float32), "ten")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"], name="flatten"),
            helper.make_node("Sub", ["f", "ten"], ["s"], name="shift"),
            helper.make_node("Sqrt", ["s"], ["y"], name="root"),
        ],
        "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 192])],
        initializer=[shift],
    )
    path = _save(_opset9(graph), tmp_path / "nan.onnx")
    with pytest.raises(BadModelError, match="NaN") as err:
        normalize_model(path, cache=tmp_path / "cache")
    assert "nan.onnx" in str(err.value)


def test_normalize_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"\x00\xff" * 100)
    with pytest.raises(BadModelError, match="junk.onnx"):
        normalize_model(bad, cache=tmp_path / "cache")


# --------------------------------------------------------------------------- resolve


def test_resolve_path_and_faceplugin(model_path: Path) -> None:
    assert resolve_model(str(model_path)) == model_path
    assert resolve_model("faceplugin") == model_path


def test_resolve_unknown_name() -> None:
    with pytest.raises(FacequantError, match="neither a file nor a known name") as err:
        resolve_model("no_such_model_xyz")
    assert "no_such_model_xyz" in str(err.value) and "buffalo_l" in str(err.value)


def test_resolve_pack_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dead proxy makes the download fail fast even on a machine that has network.
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(
        FacequantError, match="could not download insightface pack 'buffalo_l'"
    ) as err:
        resolve_model("buffalo_l", insightface_root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "models" / "buffalo_l") in msg and "pass a path" in msg
    assert not (tmp_path / "models" / "buffalo_l").exists()  # no empty pack left behind


def test_resolve_installed_pack_picks_recognition_model(tmp_path: Path) -> None:
    pack = tmp_path / "models" / "buffalo_s"
    pack.mkdir(parents=True)
    _pool_embedding_model(pack / "2d106det.onnx", 192, 212)  # landmarks: rank 2 but 192x192
    _pool_embedding_model(pack / "w600k_mbf.onnx", 112, 512)
    (pack / "broken.onnx").write_bytes(b"not onnx")
    assert resolve_model("buffalo_s", insightface_root=tmp_path) == pack / "w600k_mbf.onnx"


# --------------------------------------------------------------------------- pull


@pytest.mark.slow
def test_pull_faceplugin(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        reason = "npm not installed: cannot fetch faceplugin-face-recognition-js"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI machines have Node.js: a missing npm is a broken setup
        pytest.skip(reason)
    dest = tmp_path / "faceplugin"
    out = pull_faceplugin(dest)
    assert out == dest / "fr_feature.onnx"
    assert sorted(p.name for p in dest.iterdir()) == sorted(FACEPLUGIN_SHA256)  # no temp left
    for name, sha in FACEPLUGIN_SHA256.items():
        assert file_sha256(dest / name) == sha
    assert inspect_model(out).embedding_dim == 512


def test_extract_rejects_wrong_sha(tmp_path: Path) -> None:
    # A real tarball whose member does not match the sha256 asked for.
    import tarfile

    payload = tmp_path / "fr_feature.onnx"
    payload.write_bytes(b"tampered")
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(payload, arcname="package/model/fr_feature.onnx")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FacequantError, match="fr_feature.onnx: sha256"):
        models._extract_members(tgz, out, {"fr_feature.onnx": "0" * 64})

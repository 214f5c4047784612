"""Exports of a mixed-precision recipe: ORT options JSON round-trips into the same model."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import quantize_static

from facequant.backends.quantize.build import (
    _ArrayReader,
    build_quantized,
    prepare_for_quantization,
)
from facequant.backends.quantize.export import (
    HAILO_ALLS,
    ORT_JSON,
    PRECISION_JSON,
    export_precision,
    load_name_map,
    ort_options_from_json,
)
from facequant.backends.quantize.layers import resolve_recipe
from facequant.errors import FacequantError
from facequant.models.files import file_sha256
from facequant.models.normalize import normalize_model
from facequant.models.spec import inspect_model
from facequant.sweep.config import SweepConfig
from facequant.sweep.probes import prepare_probes


@pytest.fixture(scope="module")
def calib(model_path: Path, celebs13: Path) -> np.ndarray:
    ps = prepare_probes(SweepConfig(model=str(model_path), data=str(celebs13), distances_m=(1.0,), calibration_size=8))
    return ps.calibration_tensors()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["int8-pt+16bit:last3", "int8-pc+16bit:last2+float:first1"])
def test_ort_json_reloads_into_the_same_model(tmp_path: Path, model_path: Path, calib: np.ndarray, name: str):
    spec = inspect_model(model_path)
    normalized = normalize_model(model_path)
    result = export_precision(name, normalized, spec.input_name, calib, tmp_path / "exp")
    doc = json.loads((tmp_path / "exp" / ORT_JSON).read_text())
    assert doc["quantize_static"]["extra_options"]["TensorQuantOverrides"]
    built = build_quantized(normalized, file_sha256(model_path), spec.input_name, resolve_recipe(name, normalized), calib)
    with tempfile.TemporaryDirectory() as tmp:
        prepped = prepare_for_quantization(normalized, result["recipe"], Path(tmp))
        again = tmp_path / "again.onnx"
        quantize_static(str(prepped), str(again), _ArrayReader(spec.input_name, calib),
                        **ort_options_from_json(doc["quantize_static"]))
    a = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(built)).graph.initializer}
    b = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(again)).graph.initializer}
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_precision_json_and_hailo_lines(tmp_path: Path, model_path: Path, calib: np.ndarray):
    spec = inspect_model(model_path)
    normalized = normalize_model(model_path)
    name_map = tmp_path / "names.csv"
    name_map.write_text("onnx,hailo\nConv_94,arcface_mobilefacenet/fc1\nConv_93,arcface_mobilefacenet/conv33\n")
    result = export_precision("int8-pt+16bit:last3", normalized, spec.input_name, calib, tmp_path / "e",
                              load_name_map(name_map))
    layers = json.loads((tmp_path / "e" / PRECISION_JSON).read_text())["layers"]
    assert len(layers) == 50
    assert [k for k, v in layers.items() if v == "a16_w16"] == ["Conv_91", "Conv_93", "Conv_94"]
    assert set(layers.values()) == {"a8_w8", "a16_w16"}
    alls = (tmp_path / "e" / HAILO_ALLS).read_text()
    assert "quantization_param(arcface_mobilefacenet/fc1, precision_mode=a16_w16)" in alls
    assert "quantization_param(arcface_mobilefacenet/conv33, precision_mode=a16_w16)" in alls
    assert "Conv_91" in alls and "WARNING" in alls
    assert len(result["warnings"]) == 1 and "Conv_91" in result["warnings"][0]


def test_bad_inputs(tmp_path: Path, model_path: Path, calib: np.ndarray):
    bad = tmp_path / "map.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(FacequantError, match="map.yaml"):
        load_name_map(bad)
    spec = inspect_model(model_path)
    with pytest.raises(FacequantError, match="static"):
        export_precision("int8-dyn", normalize_model(model_path), spec.input_name, calib, tmp_path / "x")


def test_cli_export_precision(tmp_path: Path, model_path: Path, celebs13: Path, capsys: pytest.CaptureFixture[str]):
    from facequant.cli import main

    out = tmp_path / "exports"
    args = ["export-precision", "int8-pt+16bit:last3", "--model", str(model_path), "--data", str(celebs13),
            "--calib-size", "4", "--out", str(out), "--quiet"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert str(out / HAILO_ALLS) in captured.out and str(out / "run.json") in captured.out
    # no --name-map: one line on what that means (three ONNX names), none blaming a map not given
    (warning,) = captured.err.splitlines()
    assert warning.startswith("facequant: warning: no --name-map given") and "3 layer(s)" in warning
    assert "in the name map" not in captured.err
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "export-precision" and run["config"]["recipe"] == "int8-pt+16bit:last3"
    assert run["config"]["sweep"]["calibration_size"] == 4 and len(run["warnings"]) == 1
    names = tmp_path / "names.csv"
    names.write_text("onnx,hailo\nConv_94,fc1\n")
    assert main([*args, "--name-map", str(names), "--out", str(tmp_path / "mapped")]) == 0
    err = capsys.readouterr().err
    assert err.count("no compiler layer name in the name map") == 2 and "Conv_94" not in err  # the two unmapped
    assert "quantization_param(fc1, precision_mode=a16_w16)" in (tmp_path / "mapped" / HAILO_ALLS).read_text()
    assert main(args) == 2  # never overwritten without --force

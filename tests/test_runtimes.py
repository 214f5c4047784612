"""The runtime axis: OpenVINO backends, NNCF-built INT8 on either runtime, the extra that brings
them, TensorRT's place, and the cache of NNCF models."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from corpus import need_openvino, one_line_error

from facequant.backends import cpu
from facequant.backends.base import preprocess
from facequant.backends.registry import (
    BackendFactory,
    available_backends,
    check_backend_name,
    require_calibrated,
)
from facequant.backends.runtimes import EXTRA_HINT, NncfRecipe, parse_runtime_name, runtime_of
from facequant.cli import main
from facequant.errors import FacequantError
from facequant.models.files import file_sha256
from facequant.models.normalize import normalize_model
from facequant.models.spec import inspect_model


def _crops(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(n, 14, 14, 3)).astype(np.uint8)
    return np.stack([np.kron(s, np.ones((8, 8, 1), np.uint8)) for s in small])


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def factory(model_path: Path) -> BackendFactory:
    spec = inspect_model(model_path)
    calib = preprocess(_crops(12, 0), spec)
    return BackendFactory(normalize_model(model_path), file_sha256(model_path), spec, lambda: calib)


@pytest.fixture
def openvino() -> None:
    need_openvino()


# ---------------------------------------------------------------- names (no extra needed)


def test_runtime_names_are_listed_and_parsed():
    assert {"ov-fp32", "ov-bf16", "ov-int8", "nncf-int8"} <= set(available_backends())
    base, recipe = parse_runtime_name("ov-int8+preset:mixed+bc:full+sq:0.5+subset:64+float:last2")
    assert base == "ov-int8" and recipe is not None
    assert (recipe.runtime, recipe.preset, recipe.bias_correction, recipe.smooth_quant, recipe.subset_size,
            recipe.selectors) == ("openvino", "mixed", "full", 0.5, 64, ("float:last2",))
    assert parse_runtime_name("nncf-int8")[1] == NncfRecipe("nncf-int8", "onnxruntime")
    assert parse_runtime_name("ov-bf16") == ("ov-bf16", None)
    assert [runtime_of(n) for n in ("fp32", "int8-pt", "ov-fp32", "ov-int8", "nncf-int8+bc:full")] == [
        "onnxruntime", "onnxruntime", "openvino", "openvino", "onnxruntime"]


def test_same_parameters_share_one_model_whoever_runs_it():
    ov = parse_runtime_name("ov-int8+bc:full")[1]
    ort = parse_runtime_name("nncf-int8+bc:full")[1]
    assert ov is not None and ort is not None and ov.build_params() == ort.build_params()
    other = parse_runtime_name("nncf-int8+bc:none")[1]
    assert other is not None and other.build_params() != ort.build_params()


@pytest.mark.parametrize(("name", "says"), [
    ("ov-int8+bc:slow", "bias correction 'slow'"),
    ("ov-int8+preset:fast", "preset 'fast'"),
    ("ov-int8+sq:0", "SmoothQuant alpha '0'"),
    ("ov-int8+sq:nan", "SmoothQuant alpha 'nan'"),
    ("ov-int8+subset:-3", "subset '-3'"),
    ("ov-int8+subset:0", "subset '0'"),
    ("nncf-int8+16bit:last2", "keep layers in float"),
    ("nncf-int8+bc:full+bc:fast", "given twice"),
    ("ov-int8+float:last0", "chooses no layer"),
    ("ov-int8+wat", "'+wat' not understood"),
    ("ov-fp32+bc:full", "takes no options"),
    ("ov-int4", "unknown"),
])
def test_bad_runtime_names_are_one_line_errors(name: str, says: str):
    with pytest.raises(FacequantError) as err:
        check_backend_name(name)
    assert says in str(err.value) and name in str(err.value) and "\n" not in str(err.value)


def test_tensorrt_names_say_what_is_missing():
    with pytest.raises(FacequantError) as err:
        check_backend_name("trt-int8")
    text = str(err.value)
    assert "trt-int8" in text and "TensorRT" in text and "GPU" in text and "\n" not in text


def test_runtime_backends_are_not_ort_recipes_for_study_or_export():
    with pytest.raises(FacequantError, match="OpenVINO / NNCF backend"):
        require_calibrated("ov-int8", "--recipe", "nothing to study")


def test_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "nncf", None)
    for name in ("ov-fp32", "ov-int8", "nncf-int8+bc:full"):
        with pytest.raises(FacequantError, match="facequant\\[openvino\\]"):
            check_backend_name(name)
    assert main(["sweep", "--backends", "fp32,ov-int8", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert EXTRA_HINT in one_line_error(capsys, "ov-int8")
    assert not (tmp_path / "r").exists()


def test_cpu_features_name_what_changes_results():
    features = cpu.cpu_features()
    if Path("/proc/cpuinfo").is_file():
        assert set(features["features"]) == set(cpu.RESULT_FLAGS)  # type: ignore[arg-type]
        assert cpu.has_bf16() == bool({"avx512_bf16", "amx_bf16"} & cpu.cpu_flags())


# ---------------------------------------------------------------- OpenVINO and NNCF


def test_ov_fp32_matches_ort_fp32(openvino: None, factory: BackendFactory):
    crops = _crops(5, 1)
    ort_emb = factory.make("fp32").embed(crops)
    ov = factory.make("ov-fp32")
    assert ov.describe()["inference_precision"] == "f32" and ov.describe()["runtime"] == "openvino"
    assert _cos(ov.embed(crops), ort_emb).min() > 1 - 1e-5


def test_ov_bf16_is_bf16_or_refused(openvino: None, factory: BackendFactory, monkeypatch: pytest.MonkeyPatch):
    crops = _crops(5, 2)
    ref = factory.make("fp32").embed(crops)
    if cpu.has_bf16():
        bf16 = factory.make("ov-bf16")
        assert bf16.describe()["inference_precision"] == "bf16"
        cos = _cos(bf16.embed(crops), ref)
        assert cos.min() > 0.99 and cos.mean() < 1 - 1e-6  # close, and really not f32
    monkeypatch.setattr(cpu, "has_bf16", lambda: False)
    with pytest.raises(FacequantError, match="no native bf16"):
        factory.make("ov-bf16")


def test_batch_runners_time_each_backend_on_its_runtime(openvino: None, factory: BackendFactory):
    from facequant.backends.cost import cpu_latencies
    from facequant.backends.timing import TimingSettings

    backends = {name: factory.make(name) for name in ("fp32", "ov-fp32")}
    timed = cpu_latencies(backends, 4, TimingSettings(rounds=2, per_round=2, warmup=1))
    for name in backends:
        t = timed[name]
        assert t.batch == 4 and 0 < t.p50_ms <= t.p95_ms and t.batch_p50_ms > 0, name
    assert 0 < timed["ov-fp32"].ratio  # against ORT's fp32, round by round


@pytest.mark.slow
def test_nncf_model_is_cached_reused_and_rebuilt_on_change(openvino: None, factory: BackendFactory,
                                                          monkeypatch: pytest.MonkeyPatch):
    from facequant.backends.quantize import nncf_build

    nncf = nncf_build.import_nncf("nncf-int8")
    builds: list[int] = []
    real = nncf.quantize
    monkeypatch.setattr(nncf, "quantize", lambda *a, **k: builds.append(1) or real(*a, **k))
    crops = _crops(4, 3)
    first = factory.make("nncf-int8")
    assert len(builds) == 1
    again = factory.make("nncf-int8")  # a re-run: the cached model, checked, not rebuilt
    assert len(builds) == 1 and again.model_path == first.model_path
    on_ov = factory.make("ov-int8")  # the same model compiled by OpenVINO: not rebuilt either
    assert len(builds) == 1 and on_ov.model_path == first.model_path
    assert _cos(on_ov.embed(crops), first.embed(crops)).min() > 0.98  # same model, another runtime's kernels
    full = factory.make("nncf-int8+bc:full")  # a parameter changed: another model
    assert len(builds) == 2 and full.model_path != first.model_path
    monkeypatch.setattr(nncf_build, "nncf_version", lambda: "0.0-other")  # another NNCF: rebuilt
    assert factory.make("nncf-int8").model_path != first.model_path and len(builds) == 3
    ref = factory.make("fp32").embed(crops)
    assert 0.9 < _cos(first.embed(crops), ref).mean() < 0.99999  # really quantized


@pytest.mark.slow
def test_nncf_variants_reach_nncf(openvino: None, factory: BackendFactory, monkeypatch: pytest.MonkeyPatch):
    from facequant.backends.quantize import nncf_build

    nncf = nncf_build.import_nncf("nncf-int8")
    seen: list[dict[str, object]] = []
    real = nncf.quantize
    monkeypatch.setattr(nncf, "quantize", lambda m, d, **k: seen.append(k) or real(m, d, **k))
    backend = factory.make("nncf-int8+preset:mixed+bc:none+sq:0.5+subset:8+float:last2")
    args = seen[-1]
    assert args["preset"] == nncf.QuantizationPreset.MIXED and args["subset_size"] == 8
    assert args["model_type"] == nncf.ModelType.TRANSFORMER  # NNCF runs SmoothQuant only for transformers
    advanced = args["advanced_parameters"]
    assert advanced.disable_bias_correction and advanced.smooth_quant_alphas.convolution == 0.5  # type: ignore[attr-defined]
    last2 = list(backend.describe()["layers_float"])  # type: ignore[arg-type]
    assert len(last2) == 2 and args["ignored_scope"].names == last2  # type: ignore[attr-defined]
    assert nncf_build.float_nodes(backend.model_path, tuple(last2)) == last2  # NNCF left them in float


@pytest.mark.slow
def test_sweep_with_both_runtimes_writes_one_results_directory(openvino: None, tmp_path: Path, model_path: Path,
                                                               celebs13: Path):
    import json

    import pandas as pd

    out = tmp_path / "both"
    backends = ["fp32", "ov-fp32", "ov-bf16", "ov-int8", "nncf-int8"]
    if not cpu.has_bf16():
        backends.remove("ov-bf16")  # refused on such a CPU (test_ov_bf16_is_bf16_or_refused)
    assert main(["sweep", "--model", str(model_path), "--data", str(celebs13), "--backends", ",".join(backends),
                 "--batch-size", "16", "--out", str(out), "--quiet"]) == 0
    probes = pd.read_csv(out / "probes.csv")
    ov = probes[(probes.backend == "ov-fp32") & probes.simulated]
    assert ov.distance_m.nunique() == 12  # every distance of the default sweep
    worst = ov.groupby("distance_m").cos_to_fp32.min()
    assert (worst > 1 - 1e-4).all(), worst  # OpenVINO at f32 is ONNX Runtime's fp32, at every distance
    for name in ("ov-int8", "nncf-int8"):  # INT8 measured like any other backend, and really quantized
        assert probes[(probes.backend == name) & probes.simulated].cos_to_fp32.mean() < 1 - 1e-4
    sweep = pd.read_csv(out / "sweep.csv")
    assert sorted(sweep.backend.unique()) == sorted(backends)
    cost = pd.read_csv(out / "cost.csv").set_index("backend")
    assert cost.loc["ov-int8", "runtime"] == "openvino" and cost.loc["nncf-int8", "runtime"] == "onnxruntime"
    assert cost.loc["ov-int8", "latency_vs_fp32_basis"] == "cpu openvino"
    assert (cost.cpu_latency_p50_ms > 0).all() and (cost.cpu_batch_size == 16).all()
    assert (cost.cpu_batch_latency_p50_ms > 0).all()
    run = json.loads((out / "run.json").read_text())
    assert run["backends"]["ov-fp32"]["inference_precision"] == "f32"
    assert run["versions"]["openvino"] and run["versions"]["nncf"]
    assert run["cpu"]["openvino_cpu_plugin"]["capabilities"]
    if Path("/proc/cpuinfo").is_file():
        assert set(run["cpu"]["features"]) >= {"avx512_vnni", "avx512_bf16", "amx_int8"}


def test_diagnose_refuses_runtime_backends_in_one_line():
    from facequant.analysis.diagnose.run import check_qdq_backend

    with pytest.raises(FacequantError, match="OpenVINO / NNCF backend"):
        check_qdq_backend("nncf-int8")


def test_help_and_tui_list_the_runtime_backends(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("ov-fp32", "ov-bf16", "ov-int8", "nncf-int8", "+bc:fast|full|none", "+sq:ALPHA", "facequant[openvino]"):
        assert name in text, name
    from tui.screens import _hints

    assert "ov-int8" in _hints()["backends"] and "nncf-int8" in _hints()["backends"]

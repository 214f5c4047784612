from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facequant.backends.base import preprocess
from facequant.backends.quantize.build import build_quantized, quantized_model_path
from facequant.backends.quantize.recipes import RECIPES
from facequant.backends.registry import BackendFactory, available_backends, parse_backends
from facequant.errors import FacequantError
from facequant.models.files import file_sha256
from facequant.models.normalize import normalize_model
from facequant.models.spec import inspect_model


@pytest.fixture(scope="module")
def factory(model_path: Path) -> BackendFactory:
    spec = inspect_model(model_path)
    rng = np.random.default_rng(0)
    # smooth random "faces": low-frequency noise upsampled, so activations look image-like
    small = rng.integers(0, 256, size=(8, 14, 14, 3)).astype(np.uint8)
    crops = np.stack([np.kron(s, np.ones((8, 8, 1), np.uint8)) for s in small])
    calib = preprocess(crops, spec)
    return BackendFactory(normalize_model(model_path), file_sha256(model_path), spec, lambda: calib)


def _crops(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(n, 14, 14, 3)).astype(np.uint8)
    return np.stack([np.kron(s, np.ones((8, 8, 1), np.uint8)) for s in small])


def test_preprocess_matches_spec(model_path: Path):
    spec = inspect_model(model_path)
    crops = _crops(2, 1)
    x = preprocess(crops, spec)
    assert x.shape == (2, 3, 112, 112) and x.dtype == np.float32
    assert x[1, 0, 5, 7] == pytest.approx((crops[1, 5, 7, 0] - spec.mean) / spec.std)  # RGB, channel 0 = R


def test_fp32_batch_equals_single(factory: BackendFactory):
    fp32 = factory.make("fp32")
    crops = _crops(5, 2)
    batch = fp32.embed(crops)
    single = np.concatenate([fp32.embed(crops[i : i + 1]) for i in range(5)])
    assert batch.shape == (5, 512)
    assert np.abs(batch - single).max() < 1e-4


@pytest.mark.slow
def test_quantized_backends_differ_from_fp32_by_precision(factory: BackendFactory):
    crops = _crops(6, 3)
    ref = factory.make("fp32").embed(crops)

    def cos(name: str) -> float:
        e = factory.make(name).embed(crops)
        return float(np.mean(np.sum(e * ref, 1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)))

    pt, pc, a16 = cos("int8-pt"), cos("int8-pc"), cos("a16w8")
    assert pt < 0.9999  # it is really quantized
    assert a16 > pt and pc > pt  # more precision, closer to the float model
    assert a16 > 0.99


def test_insightface_backend_close_to_fp32(factory: BackendFactory):
    crops = _crops(3, 4)
    ref = factory.make("fp32").embed(crops)
    ins = factory.make("insightface").embed(crops)
    cos = np.sum(ins * ref, 1) / np.linalg.norm(ins, axis=1) / np.linalg.norm(ref, axis=1)
    # insightface normalises with 127.5/127.5 where the model card says 127/128: close, not identical
    assert np.all(cos > 0.99)


def test_quantized_model_is_cached(factory: BackendFactory):
    calib = factory.calibration()
    recipe = RECIPES["int8-pt"]
    path = build_quantized(factory.model_path, factory.model_sha, factory.spec.input_name, recipe, calib)
    mtime = path.stat().st_mtime_ns
    again = build_quantized(factory.model_path, factory.model_sha, factory.spec.input_name, recipe, calib)
    assert again == path and path.stat().st_mtime_ns == mtime
    other = quantized_model_path(factory.model_path, factory.model_sha, recipe.with_calibration("entropy"), "x")
    assert other != path


def test_backend_names():
    assert parse_backends("int8-pt") == ["fp32", "int8-pt"]
    assert parse_backends("int8-pc, fp32 ,int8-pc,fp16") == ["fp32", "int8-pc", "fp16"]  # fp32 first, no repeats
    assert {"fp16", "int8-dyn", "a16w16", "int8-sym", "int8-npu"} <= set(available_backends())
    with pytest.raises(FacequantError, match="unknown"):
        parse_backends("fp32,int9")
    with pytest.raises(FacequantError, match="'int9'"):
        parse_backends("int8-pt,int9+16bit:last3")
    with pytest.raises(FacequantError, match="calibration method"):
        RECIPES["int8-pt"].with_calibration("vibes")


def test_describe_has_cost_keys(factory: BackendFactory):
    for name in ("fp32", "int8-pt", "fp16"):
        d = factory.make(name).describe()
        assert d["file_bytes"] == Path(str(d["model"])).stat().st_size > 0
        assert d["precision"] and d["layers_16bit"] == [] and d["layers_float"] == []
    assert factory.make("int8-pt").describe()["recipe"]["name"] == "int8-pt"


@pytest.mark.slow
def test_entropy_calibration_is_not_minmax_in_disguise(factory: BackendFactory):
    # quantize_static's own Entropy calibrator (128 bins -> 128 bins) returns MinMax's ranges;
    # facequant runs the KL search over 2048 bins, so the activation scales must differ.
    import onnx
    from onnx import numpy_helper

    calib = factory.calibration()

    def scales(method: str) -> dict[str, np.ndarray]:
        recipe = RECIPES["int8-pt"].with_calibration(method)
        path = build_quantized(factory.model_path, factory.model_sha, factory.spec.input_name, recipe, calib)
        return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
                if i.name.endswith("_scale")}

    minmax, entropy = scales("minmax"), scales("entropy")
    changed = [k for k in minmax if k in entropy and not np.array_equal(minmax[k], entropy[k])]
    assert len(changed) >= 10
    # KL clipping only ever narrows a range
    assert all(float(np.max(entropy[k])) <= float(np.max(minmax[k])) * 1.0001 for k in changed)

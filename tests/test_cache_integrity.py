"""Bad-input corpus, cache integrity: cache keys cover every byte a model reads (external data
too), and a corrupt, truncated, swapped or foreign cache entry is rebuilt with a one-line
warning, never trusted, never fatal; the rebuilt entry equals a clean build."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from corpus import one_line_error
from onnx import numpy_helper

from facequant import settings
from facequant.backends.quantize.build import build_quantized, pow2_moves_path
from facequant.backends.quantize.recipes import RECIPES
from facequant.cache import sidecar
from facequant.cli import main
from facequant.errors import BadModelError
from facequant.faces.pipeline import ENTRY_SUFFIX, FacePipeline, pack_entry, unpack_entry
from facequant.models.files import file_sha256, model_sha256
from facequant.models.normalize import normalize_model
from facequant.models.spec import inspect_model

# --------------------------------------------------------------------------- helpers


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def embed(model: Path, x: np.ndarray) -> np.ndarray:
    """One sample at a time: the source models have a fixed batch of 1."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def one_warning(capsys: pytest.CaptureFixture[str], *names: str) -> str:
    """stderr holds exactly one line: a facequant warning naming `names`."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("facequant: warning:") and len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, (name, err)
    return err


@pytest.fixture(scope="module")
def inputs(model_path: Path) -> np.ndarray:
    h, w = inspect_model(model_path).input_size
    return np.random.default_rng(0).normal(size=(3, 3, h, w)).astype(np.float32)


@pytest.fixture(scope="module")
def external_models(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> dict[str, Path]:
    """The shared model saved with its weights in model.onnx.data, twice: 'a' as is, 'b' with
    its largest weight halved. Same graph file name, same data file name, same graph bytes."""
    root = tmp_path_factory.mktemp("external")
    out = {}
    for name, scale in (("a", 1.0), ("b", 0.5)):
        model = onnx.load(str(model_path))
        weight = max(model.graph.initializer, key=lambda t: t.ByteSize())
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(scale), weight.name))
        (root / name).mkdir()
        onnx.save(model, str(root / name / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
        out[name] = root / name / "model.onnx"
    return out


# --------------------------------------------------------------------------- class: keys cover external data


@pytest.mark.slow
def test_external_data__same_graph_file_other_weights_is_another_model(external_models: dict[str, Path],
                                                                         tmp_path: Path, inputs: np.ndarray):
    a, b = external_models["a"], external_models["b"]
    assert file_sha256(a) == file_sha256(b)  # the graph file alone cannot tell them apart
    assert model_sha256(a) != model_sha256(b)
    cache = tmp_path / "models"
    norm_a = normalize_model(a, cache=cache)
    norm_b = normalize_model(b, cache=cache)  # warm cache, same graph file: must not reuse a's
    assert norm_a != norm_b
    for source, normalized in ((a, norm_a), (b, norm_b)):
        np.testing.assert_allclose(embed(normalized, inputs), embed(source, inputs), atol=1e-5)
    assert not np.allclose(embed(norm_a, inputs), embed(norm_b, inputs))
    # quantized models are keyed by the same identity
    spec = inspect_model(a)
    quantized = {n: build_quantized(norm, model_sha256(src), spec.input_name, RECIPES["int8-pt"], inputs, cache=tmp_path)
                 for n, src, norm in (("a", a, norm_a), ("b", b, norm_b))}
    assert quantized["a"] != quantized["b"]


def test_external_data__missing_weights_file_is_one_line_error_on_a_warm_cache(
        external_models: dict[str, Path], tmp_path: Path, celebs13: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(settings.CACHE_ENV, str(tmp_path / "cache"))
    model = tmp_path / "m" / "model.onnx"
    shutil.copytree(external_models["b"].parent, model.parent)
    normalize_model(model)  # warm
    (model.parent / "model.onnx.data").unlink()
    with pytest.raises(BadModelError, match="model.onnx.data: external data file of model.onnx not found"):
        normalize_model(model)
    assert main(["sweep", "--model", str(model), "--data", str(celebs13), "--backends", "fp32", "--distances", "1",
                 "--no-latency", "--quiet", "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, str(model.parent / "model.onnx.data"), "not found")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- class: corrupt normalized models


def _garbage(entry: Path, _other: Path) -> None:
    entry.write_bytes(os.urandom(4096))


def _truncated(entry: Path, _other: Path) -> None:
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])


def _bit_flip(entry: Path, _other: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, still a loadable model: only the hash can tell
    entry.write_bytes(bytes(data))


def _swapped_file(entry: Path, other: Path) -> None:
    shutil.copyfile(other, entry)


def _swapped_with_record(entry: Path, other: Path) -> None:
    shutil.copyfile(other, entry)
    shutil.copyfile(sidecar(other), sidecar(entry))


def _record_deleted(entry: Path, _other: Path) -> None:
    sidecar(entry).unlink()


def _record_garbage(entry: Path, _other: Path) -> None:
    sidecar(entry).write_text("{not json")


CORRUPTIONS: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "garbage": (_garbage, "replaced"),
    "truncated": (_truncated, "truncated"),
    "bit flip": (_bit_flip, "sha256"),
    "swapped file": (_swapped_file, "replaced"),
    "swapped file and record": (_swapped_with_record, "other inputs"),
    "record deleted": (_record_deleted, "no .json record"),
    "record garbage": (_record_garbage, "unreadable"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_normalized_model__rebuilt_with_a_warning(corruption: str, model_path: Path,
                                                          external_models: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    corrupt, reason = CORRUPTIONS[corruption]
    cache = tmp_path / "models"
    entry = normalize_model(model_path, cache=cache)
    clean = sha(entry)
    other = normalize_model(external_models["b"], cache=cache)  # another model's entry to swap in
    corrupt(entry, other)
    capsys.readouterr()
    assert normalize_model(model_path, cache=cache) == entry
    one_warning(capsys, str(entry), "normalized model", reason, "rebuilding")
    assert sha(entry) == clean and normalize_model(model_path, cache=cache) == entry
    assert capsys.readouterr().err == ""  # rebuilt once, then trusted


# --------------------------------------------------------------------------- class: corrupt quantized models


@pytest.fixture(scope="module")
def normalized(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return normalize_model(model_path, cache=tmp_path_factory.mktemp("norm"))


def _build(normalized: Path, model_path: Path, recipe: str, calib: np.ndarray, cache: Path) -> Path:
    return build_quantized(normalized, model_sha256(model_path), inspect_model(model_path).input_name,
                           RECIPES[recipe], calib, cache=cache)


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "bit flip", "swapped file", "swapped file and record",
                                        "record deleted"])
@pytest.mark.slow
def test_corrupt_quantized_model__rebuilt_with_a_warning(corruption: str, normalized: Path, model_path: Path,
                                                         inputs: np.ndarray, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]):
    corrupt, reason = CORRUPTIONS[corruption]
    entry = _build(normalized, model_path, "int8-pt", inputs, tmp_path)
    clean, clean_out = sha(entry), embed(entry, inputs)
    other = _build(normalized, model_path, "int8-pc", inputs, tmp_path)  # another recipe's entry to swap in
    corrupt(entry, other)
    capsys.readouterr()
    assert _build(normalized, model_path, "int8-pt", inputs, tmp_path) == entry
    one_warning(capsys, str(entry), "int8-pt model", reason)
    assert sha(entry) == clean
    np.testing.assert_array_equal(embed(entry, inputs), clean_out)


@pytest.mark.slow
@pytest.mark.parametrize("corruption", ["garbage", "other moves", "record deleted"])
def test_corrupt_pow2_moves_list__rebuilt_with_a_warning(corruption: str, normalized: Path, model_path: Path,
                                                         inputs: np.ndarray, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]):
    entry = _build(normalized, model_path, "int8-npu", inputs, tmp_path)
    moves = pow2_moves_path(entry)
    clean = moves.read_text()
    if corruption == "garbage":
        moves.write_text("[truncated")
    elif corruption == "other moves":  # valid JSON, wrong content: only the hash tells
        moves.write_text(json.dumps({"recipe": "int8-npu", "moves": []}))
    else:
        sidecar(moves).unlink()
    capsys.readouterr()
    assert _build(normalized, model_path, "int8-npu", inputs, tmp_path) == entry
    one_warning(capsys, str(moves), "moves list", "rebuilding")
    assert moves.read_text() == clean


# --------------------------------------------------------------------------- class: corrupt crop-cache entries


def _crop_garbage(entry: Path, _other: Path) -> None:
    entry.write_bytes(b"PK\x03\x04 not really a zip")


def _crop_truncated(entry: Path, _other: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-200])


def _crop_swapped(entry: Path, other: Path) -> None:
    shutil.copyfile(other, entry)  # a valid entry, of another photo


def _crop_tampered(entry: Path, _other: Path) -> None:
    head, crop = unpack_entry(entry)
    entry.write_bytes(pack_entry({k: v for k, v in head.items() if k != "shape"}, crop // 2 + 1))  # valid, key kept


def _crop_old_format(entry: Path, _other: Path) -> None:
    head, crop = unpack_entry(entry)
    entry.write_bytes(pack_entry({k: v for k, v in head.items() if k not in ("key", "digest", "shape")}, crop))


CROP_CORRUPTIONS = {
    "garbage": (_crop_garbage, "unreadable"),
    "truncated": (_crop_truncated, "unreadable"),
    "swapped with another photo's entry": (_crop_swapped, "another photo"),
    "tampered crop": (_crop_tampered, "checksum"),
    "entry without key or checksum": (_crop_old_format, "unreadable"),
}


@pytest.mark.parametrize("corruption", list(CROP_CORRUPTIONS))
def test_corrupt_crop_entry__rebuilt_with_a_warning(corruption: str, celebs13: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]):
    corrupt, reason = CROP_CORRUPTIONS[corruption]
    pipeline = FacePipeline.default(cache_dir=tmp_path / "crops")
    photo, other_photo = sorted((celebs13 / "person01").glob("*.jpg"))[:2]
    clean = pipeline.extract(photo)
    pipeline.extract(other_photo)
    entry = pipeline.cache_path(photo.read_bytes())
    other = pipeline.cache_path(other_photo.read_bytes())
    assert entry is not None and other is not None and entry.is_file()
    corrupt(entry, other)
    capsys.readouterr()
    again = pipeline.extract(photo)
    one_warning(capsys, str(entry), "cached crop", reason, "rebuilding")
    np.testing.assert_array_equal(again.crop, clean.crop)
    np.testing.assert_array_equal(again.landmarks5, clean.landmarks5)
    assert (again.native_face_px, again.score, again.n_faces) == (clean.native_face_px, clean.score, clean.n_faces)
    pipeline.extract(photo)
    assert capsys.readouterr().err == ""  # the rebuilt entry is trusted again


def test_corrupt_faceplugin_copy__fetched_again_with_a_warning(tmp_path: Path, model_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]):
    from facequant.models import sources as models
    from facequant.models.files import FACEPLUGIN_SHA256

    monkeypatch.setenv(settings.SHARED_ENV, str(tmp_path / "no-shared"))  # no ../shared: the cached copy is used
    monkeypatch.setenv(settings.CACHE_ENV, str(tmp_path / "cache"))
    dest = tmp_path / "cache" / "faceplugin"
    dest.mkdir(parents=True)
    for name in FACEPLUGIN_SHA256:
        shutil.copy(model_path.parent / name, dest / name)
    (dest / "fr_feature.onnx").write_bytes(b"half a download")

    def pull(folder: Path) -> Path:  # npm pack, offline: the verified files from the shared folder
        assert not (folder / "fr_feature.onnx").exists()  # the corrupt copy went first
        shutil.copy(model_path, folder / "fr_feature.onnx")
        return folder / "fr_feature.onnx"

    monkeypatch.setattr(models, "pull_faceplugin", pull)
    path = models.faceplugin_file("fr_feature.onnx")
    one_warning(capsys, str(dest / "fr_feature.onnx"), "sha256", "fetching it again")
    assert path == dest / "fr_feature.onnx" and file_sha256(path) == FACEPLUGIN_SHA256["fr_feature.onnx"]


# --------------------------------------------------------------------------- class: the hash memo


def test_hash_memo__rewrite_in_place_within_the_clock_tick(tmp_path: Path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"A" * 1000)
    first = file_sha256(f)
    stat = f.stat()
    f.write_bytes(b"B" * 1000)  # same size, and the same mtime put back
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(f) != first == hashlib.sha256(b"A" * 1000).hexdigest()


@pytest.mark.slow
def test_hash_memo__rewrite_of_an_old_file_with_its_mtime_put_back(tmp_path: Path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"A" * 1000)
    old = time.time_ns() - 3600 * 10**9
    os.utime(f, ns=(old, old))
    time.sleep(2.1)  # past the racy window: this hash is memoised
    first = file_sha256(f)
    f.write_bytes(b"B" * 1000)
    os.utime(f, ns=(old, old))  # size and mtime as before; ctime cannot be put back
    assert file_sha256(f) == hashlib.sha256(b"B" * 1000).hexdigest() != first


# --------------------------------------------------------------------------- class: corrupt embedding-cache rows


def _embedding_rows(tmp_path: Path, n: int = 3, dim: int = 4) -> tuple[Path, list[bytes]]:
    from facequant.sweep.embedding_cache import EmbeddingCache

    path = tmp_path / "embeddings.sqlite"
    cache = EmbeddingCache(path)
    keys = [EmbeddingCache.key("backend", f"crop{i}") for i in range(n)]
    cache.put((k, np.full(dim, i + 1, np.float32)) for i, k in enumerate(keys))
    cache.close()
    return path, keys


def _sql(path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    import sqlite3

    db = sqlite3.connect(path)
    for statement, params in statements:
        db.execute(statement, params)
    db.commit()
    db.close()


def _rotate_rows(path: Path, keys: list[bytes]) -> None:
    """Each row's (dim, vector, checksum) moved to the next key: every row still self-consistent."""
    import sqlite3

    db = sqlite3.connect(path)
    rows = {bytes(k): (d, v, c) for k, d, v, c in db.execute("SELECT key, dim, vector, checksum FROM embeddings")}
    db.close()
    _sql(path, *[("UPDATE embeddings SET dim = ?, vector = ?, checksum = ? WHERE key = ?",
                  (*rows[keys[(i + 1) % len(keys)]], key)) for i, key in enumerate(keys)])


def _foreign_size_row(path: Path, keys: list[bytes]) -> None:
    """A row of another model's size (2-d) put under the key through the cache's own writer."""
    from facequant.sweep.embedding_cache import EmbeddingCache

    cache = EmbeddingCache(path)
    cache.put([(keys[0], np.ones(2, np.float32))])
    cache.close()


EMBEDDING_CORRUPTIONS = {
    "rows rotated between keys": (_rotate_rows, 3),
    "a row of another size under the key": (_foreign_size_row, 1),
    "dimension field changed": (lambda path, keys: _sql(path, ("UPDATE embeddings SET dim = 2, vector = substr(vector, 1, 8)"
                                                               " WHERE key = ?", (keys[1],))), 1),
}


@pytest.mark.parametrize("corruption", list(EMBEDDING_CORRUPTIONS))
def test_corrupt_embedding_rows__not_trusted_and_named_a_corrupt_cache(corruption: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]):
    from facequant.sweep.embedding_cache import EmbeddingCache

    corrupt, n_bad = EMBEDDING_CORRUPTIONS[corruption]
    path, keys = _embedding_rows(tmp_path)
    corrupt(path, keys)
    capsys.readouterr()
    found = EmbeddingCache(path).get(keys, dim=4)
    assert len(found) == len(keys) - n_bad  # the bad rows are absent (recomputed), never used
    assert all(vector.shape == (4,) and vector[0] == keys.index(key) + 1 for key, vector in found.items())
    one_warning(capsys, str(path), "corrupt embedding cache")


# --------------------------------------------------------------------------- class: end to end


@pytest.mark.slow
def test_end_to_end__corrupt_caches_give_the_clean_run_s_numbers(tmp_path: Path, model_path: Path, celebs13: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]):
    data = tmp_path / "data"
    for person in ("person01", "person02"):
        shutil.copytree(celebs13 / person, data / person, ignore=lambda _d, names: sorted(names)[3:])
    cache = tmp_path / "cache"
    monkeypatch.setenv(settings.CACHE_ENV, str(cache))
    args = ["sweep", "--model", str(model_path), "--data", str(data), "--backends", "fp32,int8-pt,int8-npu",
            "--distances", "1,4", "--calib-size", "4", "--no-latency", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "clean")]) == 0
    entries = [p for p in cache.rglob("*") if p.is_file() and (sidecar(p).is_file() or p.suffix == ENTRY_SUFFIX)]
    assert {p.parent.name for p in entries} == {"models", "quantized", "crops"}
    for p in entries:  # garbage into every cached artefact
        p.write_bytes(os.urandom(256))
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("facequant: warning:")]
    named = {p for p in entries if any(f"{p}:" in w for w in warnings)}
    # every entry is named, but a moves list whose model was already rebuilt (rebuilt with it)
    assert named == {p for p in entries if not p.name.endswith(".pow2.json")}
    for name in ("sweep.csv", "probes.csv", "cliff.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "clean" / name), pd.read_csv(tmp_path / "again" / name))


@pytest.mark.slow
def test_end_to_end__embedding_rows_rotated_give_the_clean_run_s_numbers(tmp_path: Path, model_path: Path,
                                                                         celebs13: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]):
    """The reported case: (vector, checksum) pairs rotated between rows changed every table
    without a word. Now each rotated row fails its keyed checksum: recomputed, one warning."""
    import sqlite3

    data = tmp_path / "data"
    for person in ("person01", "person02", "person03"):
        shutil.copytree(celebs13 / person, data / person, ignore=lambda _d, names: sorted(names)[3:])
    monkeypatch.setenv(settings.CACHE_ENV, str(tmp_path / "cache"))
    args = ["sweep", "--model", str(model_path), "--data", str(data), "--backends", "fp32", "--distances", "0.5,4",
            "--no-latency", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "clean")]) == 0
    path = tmp_path / "cache" / "embeddings.sqlite"
    db = sqlite3.connect(path)
    keys = [bytes(k) for (k,) in db.execute("SELECT key FROM embeddings ORDER BY key")]
    db.close()
    assert len(keys) > 2
    _rotate_rows(path, keys)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "corrupt embedding cache" in line]
    assert len(warnings) == 1 and str(path) in warnings[0]
    for name in ("sweep.csv", "probes.csv", "cliff.csv"):
        assert (tmp_path / "clean" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name

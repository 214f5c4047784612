"""The sweep's crop store: the memory budget's decision, and an entry's integrity checked once
per run (a later read of the unchanged entry skips the digest; a tampered one is caught)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from facequant.cli import main
from facequant.faces import pipeline as pipeline_module
from facequant.faces.pipeline import FacePipeline, pack_entry, unpack_entry
from facequant.sweep import crops
from facequant.sweep.crops import CropStore

CROP_448 = 448 * 448 * 3


def test_budget__a_quarter_of_the_available_memory_up_to_the_ceiling():
    assert crops.default_budget_mb(200) == 50
    assert crops.default_budget_mb(2000) == crops.DEFAULT_CEILING_MB == 64
    assert crops.default_budget_mb(64_000) == crops.DEFAULT_CEILING_MB
    assert crops.default_budget_mb(0) == 0


def test_budget__unknown_available_memory_streams(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(crops, "available_memory_mb", lambda: None)
    assert crops.default_budget_mb() == 0


def test_budget__crops_held_only_when_all_fit():
    assert crops.fits(61, CROP_448, 36)  # 61 crops are 35.1 MiB
    assert not crops.fits(61, CROP_448, 35)
    assert not crops.fits(1, CROP_448, 0)
    assert crops.fits(0, CROP_448, 0)


@pytest.fixture()
def photos(celebs13: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setattr(crops, "_RACY_NS", 0)  # entries written a moment ago count as settled
    return sorted((celebs13 / "person01").glob("*.jpg"))[:2]


@pytest.fixture()
def digests(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the crop-cache digests computed (each checked read or store computes one)."""
    calls = [0]
    real = pipeline_module._face_digest

    def counting(face: pipeline_module.AlignedFace) -> str:
        calls[0] += 1
        return real(face)

    monkeypatch.setattr(pipeline_module, "_face_digest", counting)
    return calls


def test_streaming__the_digest_is_checked_once_per_run(photos: list[Path], tmp_path: Path, digests: list[int]):
    warm = FacePipeline.default(cache_dir=tmp_path / "crops")
    clean = [warm.extract(p).crop for p in photos]  # the entries exist, as after a first run
    digests[0] = 0
    store = CropStore(FacePipeline.default(cache_dir=tmp_path / "crops"), budget_mb=0)
    for p in photos:
        store.extract(p)  # the run's first read: checked
    assert store.decide(len(photos)) is False
    assert digests[0] == len(photos)
    for _ in range(5):  # the distances
        for p, want in zip(photos, clean, strict=True):
            np.testing.assert_array_equal(store.crop(p), want)
    assert digests[0] == len(photos)  # no digest after the first read
    assert store.describe()["crop_reads_unchanged"] == 5 * len(photos)


def test_streaming__an_entry_tampered_after_its_check_is_caught(photos: list[Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]):
    pipeline = FacePipeline.default(cache_dir=tmp_path / "crops")
    store = CropStore(pipeline, budget_mb=0)
    clean = store.extract(photos[0])[0].crop.copy()
    store.decide(1)
    entry = pipeline.cache_path(photos[0].read_bytes())
    assert entry is not None
    head, crop = unpack_entry(entry)
    before = os.stat(entry)
    entry.write_bytes(pack_entry({k: v for k, v in head.items() if k != "shape"}, crop // 2 + 1))  # key kept
    os.utime(entry, ns=(before.st_atime_ns, before.st_mtime_ns))  # its modification time put back
    capsys.readouterr()
    again = store.crop(photos[0])
    err = capsys.readouterr().err
    assert "cached crop does not match its checksum" in err and str(entry) in err
    np.testing.assert_array_equal(again, clean)  # rebuilt, not trusted
    assert store.describe()["crop_reads_checked"] == 2


def test_held__read_once_then_served_from_memory(photos: list[Path], tmp_path: Path, digests: list[int]):
    pipeline = FacePipeline.default(cache_dir=tmp_path / "crops")
    store = CropStore(pipeline, budget_mb=2)
    for p in photos:
        store.extract(p)
    assert store.decide(len(photos)) is True  # 2 x 602 kB <= 2 MiB
    first = store.crop(photos[0])
    entry = pipeline.cache_path(photos[0].read_bytes())
    assert entry is not None
    entry.unlink()  # held: the cache is not read again
    assert store.crop(photos[0]) is first
    assert not first.flags.writeable  # a shared crop no caller may change
    assert store.describe() == {"crop_memory_mb": 2, "crops_held": True, "crop_bytes": CROP_448,
                                "crop_reads_checked": 2, "crop_reads_unchanged": 1}


@pytest.mark.parametrize("value", ["-1", "1.5", "x", "2000000"])
def test_crop_memory_option__bad_values_are_one_line_errors(value: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]):
    assert main(["sweep", "--crop-memory", value, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--crop-memory" in err[-1] and "Traceback" not in "".join(err)
    assert not (tmp_path / "out").exists()


def test_an_entry_changed_just_before_its_check_is_checked_at_every_read(photos: list[Path], tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         digests: list[int]):
    monkeypatch.setattr(crops, "_RACY_NS", 3_600 * 10**9)  # every entry changed "just now"
    store = CropStore(FacePipeline.default(cache_dir=tmp_path / "crops"), budget_mb=0)
    store.extract(photos[0])
    store.decide(1)
    digests[0] = 0
    store.crop(photos[0])
    store.crop(photos[0])
    assert digests[0] == 2 and store.describe()["crop_reads_unchanged"] == 0


def test_one_read_gives_the_photo_digest_and_its_entry(photos: list[Path], tmp_path: Path):
    # a sweep keys its probes (and so the embedding cache) on the photo's SHA-256: the digest
    # taken on the way to the crop is the file's, and the entry is the one cache_path names
    from facequant.models.files import file_sha256

    pipeline = FacePipeline.default(cache_dir=tmp_path / "crops")
    for p in photos:
        face, photo_sha, entry = pipeline.extract_keyed(p)
        assert photo_sha == file_sha256(p)
        assert entry == pipeline.cache_path(p.read_bytes()) and entry is not None and entry.is_file()
        np.testing.assert_array_equal(face.crop, pipeline.extract(p).crop)
    store = CropStore(pipeline, budget_mb=0)
    assert store.extract(photos[0])[1] == file_sha256(photos[0])

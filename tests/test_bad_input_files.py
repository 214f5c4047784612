"""Bad-input corpus, part 2: photos and photo folders (classes 1-3 of issue 9).

Class 1 (image): every hostile picture is generated here and either refused from its header
or decoded behind the guard; a bad one is skipped with its reason, never fatal.
Class 2 (name): file names that are not UTF-8, hold spaces, quotes, commas, newlines, a
leading '-' or unicode go through a whole sweep and export; keys follow one rule (`\\xNN`).
Class 3 (dataset): everything left out of an identity-folder tree is listed with its reason.
One tiny end-to-end sweep (module fixture) carries all three classes at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from corpus import one_line_error

from facequant import settings
from facequant.cli import main
from facequant.datasets.folders import load_identity_folders
from facequant.errors import BadImageError
from facequant.faces.images import MAX_PIXELS_ENV
from facequant.faces.pipeline import FacePipeline

# --------------------------------------------------------------------------- generators


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A ~600-byte JPEG whose frame header (SOF0) declares width x height."""
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert ok
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")  # FFC0, length (2), precision (1), height (2), width (2)
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb(side: int) -> bytes:
    """A valid side x side 1-bit PNG of zeros (~110 kB for 30000): decoded to RGB it would need
    side^2 x 3 bytes (2.7 GB for 30000)."""
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(1)
    block = row * 1000
    idat = b"".join(comp.compress(block) for _ in range(side // 1000)) + comp.compress(row * (side % 1000))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _cmyk_jpeg(photo: Path) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.open(photo).convert("CMYK").save(out, "JPEG")
    return out.getvalue()


BAD_NAMES = {"jpeg-header-60000x60000": "bomb.jpg", "png-30000x30000": "bomb.png", "jpeg-truncated": "truncated.jpg",
             "jpeg-header-then-noise": "noise.jpg", "zero-bytes": "empty.jpg", "text-named-jpg": "notes.jpg",
             "html-named-png": "page.png", "one-pixel": "dot.png", "png-bad-chunk": "chunk.png"}
#: Words the skip reason must hold, where a case has one reason only it can give.
REASONS = {"jpeg-header-60000x60000": "3600000000 pixels", "png-30000x30000": "900000000 pixels",
           "zero-bytes": "empty file", "one-pixel": "too small", "text-named-jpg": "not a readable image",
           "html-named-png": "not a readable image"}


def _bad_images(photo: Path) -> dict[str, tuple[str, bytes]]:
    """id: (file name, bytes) of pictures that must be skipped."""
    raw = photo.read_bytes()
    data = {
        "jpeg-header-60000x60000": _jpeg_claiming(60000, 60000),
        "png-30000x30000": _png_bomb(30000),
        "jpeg-truncated": raw[: len(raw) // 2],
        "jpeg-header-then-noise": raw[:600] + np.random.default_rng(0).bytes(20000),
        "zero-bytes": b"",
        "text-named-jpg": b"not a picture, just words\n",
        "html-named-png": b"<!doctype html><html><body>404</body></html>\n",
        "one-pixel": _encode(np.zeros((1, 1, 3), np.uint8), ".png"),
        "png-bad-chunk": _encode(np.zeros((64, 64, 3), np.uint8), ".png")[:40] + b"\x00" * 50,
    }
    return {case: (BAD_NAMES[case], content) for case, content in data.items()}


def _good_images(photo: Path) -> dict[str, tuple[str, bytes]]:
    """id: (file name, bytes) of unusual but valid encodings of a face photo: all must work."""
    bgr = cv2.imread(str(photo))
    return {
        "png-16-bit": ("deep.png", _encode(bgr.astype(np.uint16) * 257, ".png")),
        "png-grayscale": ("gray.png", _encode(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), ".png")),
        "png-rgba": ("alpha.png", _encode(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), ".png")),
        "jpeg-cmyk": ("cmyk.jpg", _cmyk_jpeg(photo)),
    }


@pytest.fixture(scope="module")
def photo(celebs13: Path) -> Path:
    return sorted((celebs13 / "person01").iterdir())[0]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, detector_path: Path, landmark_path: Path) -> FacePipeline:
    return FacePipeline.default(cache_dir=tmp_path_factory.mktemp("crops"))


# --------------------------------------------------------------------------- class 1: images


BAD_IDS = list(BAD_NAMES)


@pytest.mark.parametrize("case", BAD_IDS)
def test_image_skipped(case: str, photo: Path, pipeline: FacePipeline, tmp_path: Path):
    name, data = _bad_images(photo)[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BadImageError) as info:
        pipeline.extract(path)
    assert info.value.path == str(path) and "\n" not in info.value.reason
    assert REASONS.get(case, "") in info.value.reason


@pytest.mark.parametrize("case", ["png-16-bit", "png-grayscale", "png-rgba", "jpeg-cmyk"])
def test_image_unusual_encoding_works(case: str, photo: Path, pipeline: FacePipeline, tmp_path: Path):
    name, data = _good_images(photo)[case]
    (tmp_path / name).write_bytes(data)
    face = pipeline.extract(tmp_path / name)
    reference = pipeline.extract(photo)
    assert face.crop.shape == (448, 448, 3) and face.crop.dtype == np.uint8
    # the same face, found and aligned alike: landmarks within 2 % of the eye distance (grey
    # and CMYK shift the detector's input a little)
    assert np.abs(face.landmarks5 - reference.landmarks5).max() < 0.02 * reference.native_iod_px


def test_image_cap_comes_from_the_environment(photo: Path, pipeline: FacePipeline, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(MAX_PIXELS_ENV, "10000")  # far below the photo's size
    with pytest.raises(BadImageError, match=f"cap of 10000 .*{MAX_PIXELS_ENV}"):
        pipeline.extract(photo)


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_image_cap_setting_refused(value: str, tmp_path: Path, celebs13: Path, model_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv(MAX_PIXELS_ENV, value)
    out = tmp_path / "r"
    assert main(["sweep", "--model", str(model_path), "--data", str(celebs13), "--backends", "fp32", "--distances", "1",
                 "--no-latency", "--quiet", "--out", str(out)]) == 2
    one_line_error(capsys, MAX_PIXELS_ENV, value)
    assert not out.exists()


def test_image_bomb_decoded_without_the_guard_would_be_huge(photo: Path):
    """The generated bombs really declare what they claim (so the cases above test the guard)."""
    import io

    from PIL import Image

    Image.MAX_IMAGE_PIXELS, before = None, Image.MAX_IMAGE_PIXELS
    try:
        for case, side in (("jpeg-header-60000x60000", 60000), ("png-30000x30000", 30000)):
            with Image.open(io.BytesIO(_bad_images(photo)[case][1])) as im:
                assert im.size == (side, side)
    finally:
        Image.MAX_IMAGE_PIXELS = before


# --------------------------------------------------------------------------- class 3: dataset listing


def _messy_tree(root: Path, photo: Path) -> None:
    """Two good identity folders, plus one of everything a folder of photos can hold."""
    for person in ("alice", "bob"):
        (root / person).mkdir(parents=True)
        shutil.copy(photo, root / person / "ok.jpg")
    shutil.copy(photo, root / "at-root.jpg")
    (root / "alice" / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(photo, root / "alice" / "sub" / "nested.jpg")
    shutil.copy(photo, root / "alice" / "sub" / "deeper" / "nested2.png")
    (root / "alice" / "broken.jpg").symlink_to(root / "alice" / "gone.jpg")
    (root / "alice" / "loop.jpg").symlink_to(root / "alice" / "loop.jpg")
    (root / "alice" / "folder.jpg").mkdir()
    os.mkfifo(root / "bob" / "pipe.jpg")  # reading it would hang the sweep
    (root / "bob" / "notes.txt").write_text("who is who\n")
    shutil.copy(photo, root / "bob" / "._ok.jpg")  # macOS AppleDouble file
    (root / "loop").symlink_to(root)
    (root / "carol").symlink_to(root / "nobody")
    (root / "pairs.csv").write_text("image_a,image_b,same_identity\n")  # root files that are not photos: fine


EXCLUDED = {  # file: words its reason must hold
    "at-root.jpg": "dataset root", "alice/sub/nested.jpg": "nested below the identity folder 'alice'",
    "alice/sub/deeper/nested2.png": "nested", "alice/broken.jpg": "broken link", "alice/loop.jpg": "symlink loop",
    "alice/folder.jpg": "a folder", "bob/pipe.jpg": "FIFO", "bob/notes.txt": "not an image type",
    "bob/._ok.jpg": "hidden", "loop": "symlink loop", "carol": "broken link",
}


@pytest.mark.parametrize("file", EXCLUDED)
def test_dataset_lists_what_it_leaves_out(file: str, photo: Path, tmp_path: Path):
    _messy_tree(tmp_path / "data", photo)
    ds = load_identity_folders(tmp_path / "data")
    assert sorted(i.key for i in ds.images) == ["alice/ok.jpg", "bob/ok.jpg"]
    reasons = {e["file"]: e["reason"] for e in ds.excluded}
    assert EXCLUDED[file] in reasons[file]
    assert set(reasons) == set(EXCLUDED)  # pairs.csv at the root is not a photo: not listed


# --------------------------------------------------------------------------- class 2: names

NAMES = {  # id: (folder, file name as bytes, key in every output)
    "latin1-byte": (b"alice", b"caf\xe9.jpg", "alice/caf\\xe9.jpg"),
    "latin1-folder": (b"j\xfcrgen", b"one.jpg", "j\\xfcrgen/one.jpg"),
    "spaces-quotes-commas": (b"alice", b'a "quoted", name.jpg', 'alice/a "quoted", name.jpg'),
    "newline": (b"alice", b"two\nlines.jpg", "alice/two\nlines.jpg"),
    "leading-dash": (b"bob", b"-rf.jpg", "bob/-rf.jpg"),
    "unicode": (b"bob", "ünïcödé 名前.jpg".encode(), "bob/ünïcödé 名前.jpg"),
    "latin1-byte-beside-its-escape": (b"bob", b"caf\xe9.jpg", "bob/caf\\xe9.jpg"),
}


def _named_tree(root: Path, celebs13: Path) -> None:
    photos = {"alice": sorted((celebs13 / "person01").iterdir()), "bob": sorted((celebs13 / "person02").iterdir()),
              "jürgen": sorted((celebs13 / "person03").iterdir())}
    used: dict[bytes, int] = {}
    for folder, name, _ in NAMES.values():
        person = folder.decode("utf-8", "replace").replace("\ufffd", "ü")
        i = used[folder] = used.get(folder, -1) + 1
        target = os.fsencode(root) + b"/" + folder
        os.makedirs(target, exist_ok=True)
        shutil.copyfile(photos[person][i], os.fsdecode(target + b"/" + name))
    # a name spelled with a literal '\xe9' beside the raw byte: one key, so one of them is left out
    shutil.copyfile(photos["bob"][5], root / "bob" / "caf\\xe9.jpg")


#: The folders themselves are named in Latin-1 (not UTF-8): paths, not only keys, must work.
DATA_DIR, OUT_DIR, PROBES_DIR = (os.fsdecode(n) for n in (b"d\xe9ta", b"r\xe9sults", b"pr\xf6bes"))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, celebs13: Path, model_path: Path, photo: Path) -> Path:
    """One tiny sweep over odd names, bad pictures and a messy tree; its results folder."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / DATA_DIR
    _messy_tree(data, photo)
    _named_tree(data, celebs13)
    for name, content in _bad_images(photo).values():
        (data / "bob" / name).write_bytes(content)
    for name, content in _good_images(photo).values():
        (data / "alice" / name).write_bytes(content)
    out = root / OUT_DIR
    with pytest.MonkeyPatch.context() as env:  # module scope runs before the per-test cache fixture
        env.setenv(settings.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "cache"))
        env.setenv("COLUMNS", "400")  # rich wraps at 80 off a terminal: keep the long path on one line
        summary = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # a UTF-8 stdout, as a pipe or terminal is
        with contextlib.redirect_stdout(summary):
            assert main(["sweep", "--model", str(model_path), "--data", str(data), "--backends", "fp32",
                         "--distances", "1,3", "--no-latency", "--quiet", "--save-comparisons", "--out", str(out)]) == 0
        summary.flush()
        (root / "summary.txt").write_bytes(summary.buffer.getvalue())  # type: ignore[attr-defined]
        assert main(["export-probes", "--model", str(model_path), "--data", str(data), "--distances", "1",
                     "--quiet", "--out", str(root / PROBES_DIR)]) == 0
    return out


@pytest.mark.parametrize("case", NAMES)
def test_name_works_end_to_end(case: str, hostile_run: Path):
    key = NAMES[case][2]
    run = json.loads((hostile_run / "run.json").read_text())
    probes = pd.read_csv(hostile_run / "probes.csv")
    with open(hostile_run / "comparisons.parquet", "rb") as fh:  # pyarrow cannot open an undecodable path
        comparisons = pd.read_parquet(fh)
    manifest = pd.read_csv(hostile_run.parent / PROBES_DIR / "manifest.csv")
    assert key in set(probes.image) and key in set(comparisons.probe) and key in set(manifest.image)
    assert key in run["calibration"]["images"]
    assert not any("\udc80" <= ch <= "\udcff" for ch in json.dumps(run, ensure_ascii=False))  # no raw surrogate


def test_name_rule_is_the_same_everywhere(hostile_run: Path):
    """Keys in probes.csv, run.json and the export manifest are one set, spelled alike."""
    run = json.loads((hostile_run / "run.json").read_text())
    probes = set(pd.read_csv(hostile_run / "probes.csv").image)
    manifest = pd.read_csv(hostile_run.parent / PROBES_DIR / "manifest.csv")
    assert probes == set(manifest.image) == set(run["calibration"]["images"]) | (probes - set(run["calibration"]["images"]))
    assert {k for k in probes if "\\x" in k} == {NAMES[c][2] for c in NAMES if "\\x" in NAMES[c][2]}


@pytest.mark.parametrize("case", BAD_IDS)
def test_image_skipped_in_a_sweep(case: str, hostile_run: Path):
    skipped = {s["image"]: s["reason"] for s in json.loads((hostile_run / "run.json").read_text())["skipped_images"]}
    key = f"bob/{BAD_NAMES[case]}"
    assert key in skipped and REASONS.get(case, "") in skipped[key]


@pytest.mark.parametrize("name", ["deep.png", "gray.png", "alpha.png", "cmyk.jpg"])
def test_image_unusual_encoding_used_in_a_sweep(name: str, hostile_run: Path):
    assert f"alice/{name}" in set(pd.read_csv(hostile_run / "probes.csv").image)


def test_dataset_lists_a_name_collision(hostile_run: Path):
    excluded = {e["file"]: e["reason"] for e in json.loads((hostile_run / "run.json").read_text())["excluded_files"]}
    assert "same as another file's" in excluded["bob/caf\\xe9.jpg"]


def test_dataset_exclusions_counted_in_the_summary(hostile_run: Path):
    summary = (hostile_run.parent / "summary.txt").read_text()
    n = len(json.loads((hostile_run / "run.json").read_text())["excluded_files"])
    assert f"{n} file(s) left out of the dataset" in summary and "photo(s) skipped" in summary
    assert "results in " in summary and "r\\xe9sults" in summary  # the folder's byte, as \xNN


@pytest.mark.parametrize("file", EXCLUDED)
def test_dataset_exclusion_in_run_json(file: str, hostile_run: Path):
    excluded = {e["file"]: e["reason"] for e in json.loads((hostile_run / "run.json").read_text())["excluded_files"]}
    assert EXCLUDED[file] in excluded[file]

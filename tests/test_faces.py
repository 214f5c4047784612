"""Face reading, detection, landmarks, alignment and crop cache, on the real shared assets."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from insightface.utils import face_align

from facequant.errors import BadImageError, BadModelError, FacequantError
from facequant.faces.alignment import (
    ARCFACE_TEMPLATE_112,
    TEMPLATE_EYE_DISTANCE_112,
    align,
    crop_side,
    inter_ocular_px,
    similarity_matrix,
    template,
)
from facequant.faces.detectors import (
    Detection,
    LandmarkModel68,
    RFBDetector,
    SCRFDDetector,
    choose_primary,
)
from facequant.faces.images import _jpeg_truncated, read_image
from facequant.faces.pipeline import AlignedFace, FacePipeline, unpack_entry

# The photo where RFB-320 puts a larger, slightly less confident box on the blurred crowd
# beside the real face.
FALSE_POSITIVE_PHOTO = "person09/img41.jpg"


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _to112(crop: np.ndarray) -> np.ndarray:
    return cv2.resize(crop, (112, 112), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pipeline(detector_path, landmark_path, tmp_path_factory) -> FacePipeline:
    return FacePipeline(
        RFBDetector(detector_path, threads=2),
        LandmarkModel68(landmark_path, threads=2),
        cache_dir=tmp_path_factory.mktemp("crops"),
    )


@pytest.fixture(scope="module")
def celeb_results(pipeline, celebs13) -> dict[str, AlignedFace | BadImageError]:
    """Every celebs13 photo -> its AlignedFace, or the BadImageError it raised."""
    out: dict[str, AlignedFace | BadImageError] = {}
    for path in sorted(celebs13.glob("person*/*")):
        rel = path.relative_to(celebs13).as_posix()
        try:
            out[rel] = pipeline.extract(path)
        except BadImageError as exc:
            out[rel] = exc
    return out


@pytest.fixture(scope="module")
def embedder(model_path):
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def embed(crop: np.ndarray) -> np.ndarray:
        x = (_to112(crop).astype(np.float32) - 127.0) / 128.0
        e = session.run(None, {"input": x.transpose(2, 0, 1)[None]})[0][0]
        return e / np.linalg.norm(e)

    return embed


# --------------------------------------------------------------------------- alignment


def test_template_comes_from_insightface():
    np.testing.assert_allclose(ARCFACE_TEMPLATE_112, face_align.arcface_dst, atol=1e-5)
    assert TEMPLATE_EYE_DISTANCE_112 == pytest.approx(35.24, abs=0.01)
    assert inter_ocular_px(ARCFACE_TEMPLATE_112 * 3) == pytest.approx(3 * TEMPLATE_EYE_DISTANCE_112)


def test_similarity_matrix_identity_on_scaled_template():
    m = similarity_matrix(ARCFACE_TEMPLATE_112 * 4, 448)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-4)
    with pytest.raises(ValueError):
        similarity_matrix(ARCFACE_TEMPLATE_112, 0)


@pytest.mark.parametrize("size", [112, 160, 224, 256, 448], ids=lambda s: f"{s}px")
def test_template_is_the_112_template_scaled_never_cropped(size):
    # insightface's estimate_norm shifts the template by 8 px for multiples of 128 (its 128
    # crops); facequant scales the 112 template to any model input, so 224 is 2x exactly.
    np.testing.assert_allclose(template(size), ARCFACE_TEMPLATE_112 * size / 112, rtol=1e-6)
    m = similarity_matrix(ARCFACE_TEMPLATE_112, size)  # 112 landmarks onto the size template
    np.testing.assert_allclose(m, [[size / 112, 0, 0], [0, size / 112, 0]], atol=1e-4)


def test_matrix_at_multiples_of_112_is_insightfaces():
    # The sweep's numbers must not move: at margin 0 the fit is exactly insightface's.
    pts = ARCFACE_TEMPLATE_112 * 3.1 + np.array([[200.0, 90.0]]) + np.random.default_rng(2).normal(0, 2, (5, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # skimage's deprecation, in insightface's call
        theirs = face_align.estimate_norm(pts, 448)
    np.testing.assert_array_equal(similarity_matrix(pts, 448), np.asarray(theirs, dtype=np.float64))


@pytest.mark.parametrize("margin", [0.0, 0.25, 1.0])
def test_crop_margin_shrinks_the_face_around_the_centre(margin):
    t = template(448, margin)
    eye_distance = float(np.linalg.norm(t[1] - t[0]))
    assert eye_distance == pytest.approx(TEMPLATE_EYE_DISTANCE_112 * 4 / (1 + margin), rel=1e-5)
    # the template's own centre stays where it was: the border grows evenly on every side
    centre_112 = (ARCFACE_TEMPLATE_112 - 56) * 4 / (1 + margin) + 224
    np.testing.assert_allclose(t, centre_112, rtol=1e-5, atol=1e-4)
    assert crop_side(100.0, margin) == pytest.approx(100.0 * (1 + margin))
    with pytest.raises(ValueError):
        template(448, -0.1)


def test_pipeline_margin_changes_the_crop_and_its_cache_key(pipeline, celebs13):
    loose = FacePipeline(pipeline.detector, pipeline.landmarks, cache_dir=pipeline.cache_dir, margin=0.25)
    photo = celebs13 / "person01" / "img1.jpg"
    assert loose.cache_path(photo.read_bytes()) != pipeline.cache_path(photo.read_bytes())
    tight, wide = pipeline.extract(photo), loose.extract(photo)
    assert wide.native_face_px == tight.native_face_px  # the face's own size does not change
    # the tight crop is the middle of the loose one, scaled up by 1.25
    middle = wide.crop[448 // 10 : 448 - 448 // 10, 448 // 10 : 448 - 448 // 10]
    a = cv2.resize(middle, (112, 112), interpolation=cv2.INTER_AREA).astype(float)
    b = cv2.resize(tight.crop, (112, 112), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(a - b).mean() < 6 and np.abs(wide.crop.astype(float) - tight.crop.astype(float)).mean() > 10
    with pytest.raises(FacequantError, match="crop margin: must be a number in \\[0, 1\\]"):
        FacePipeline(pipeline.detector, pipeline.landmarks, margin=1.5)


@pytest.mark.parametrize("scale", [0.6, 3.0, 9.0])  # enlarging, mild and strong shrinking
def test_align_puts_marked_points_on_template(scale):
    # A rotated, scaled, shifted copy of the template drawn as dark discs on a textured
    # background; after alignment each disc must sit on its template point.
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = (ARCFACE_TEMPLATE_112 - 56) @ rot.T * scale + np.array([700.0, 600.0])
    image = np.full((1200, 1400, 3), 230, np.uint8)
    image[::7] = 200  # stripes finer than the output grid would alias without INTER_AREA
    for x, y in src:
        cv2.circle(
            image,
            (round(x * 16), round(y * 16)),
            round(4 * scale * 16),
            (0, 0, 0),
            -1,
            lineType=cv2.LINE_AA,
            shift=4,
        )
    for size in (112, 448):
        crop = align(image, src, size)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        dark = (255 - crop[..., 0].astype(np.float64)) * (crop[..., 0] < 128)
        ys, xs = np.mgrid[0:size, 0:size]
        r = size / 112 * 8
        for tx, ty in ARCFACE_TEMPLATE_112 * size / 112:
            win = dark * ((xs - tx) ** 2 + (ys - ty) ** 2 < r * r)
            cx, cy = (win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()
            assert abs(cx - tx) < 0.5 * size / 112 and abs(cy - ty) < 0.5 * size / 112


def test_align_shrink_is_antialiased():
    # A 1-px checkerboard shrunk 8x must come out as flat grey, not as a moire pattern.
    image = ((np.indices((1600, 1600)).sum(0) % 2) * 255).astype(np.uint8)
    image = np.repeat(image[..., None], 3, axis=2)
    crop = align(image, (ARCFACE_TEMPLATE_112 - 56) * 8 + 800, 112)
    assert abs(float(crop.mean()) - 127.5) < 3 and float(crop.std()) < 3


# --------------------------------------------------------------------------- celebs13


def test_every_celebs13_photo_aligns(celeb_results):
    assert len(celeb_results) == 61
    failed = {k: str(v) for k, v in celeb_results.items() if isinstance(v, BadImageError)}
    assert not failed, failed
    for rel, face in celeb_results.items():
        assert isinstance(face, AlignedFace)
        assert face.crop.shape == (448, 448, 3) and face.crop.dtype == np.uint8
        assert not face.prealigned and face.n_faces >= 1 and face.score > 0.7
        assert face.source.endswith(rel)
        assert face.native_face_px == pytest.approx(
            112 * face.native_iod_px / TEMPLATE_EYE_DISTANCE_112
        )
        assert face.native_iod_px == pytest.approx(inter_ocular_px(face.landmarks5))
        # celebs13 are portraits: faces of at least ~40 px between the eyes.
        assert 30 < face.native_iod_px < 1500


def test_aligned_eyes_land_on_template(pipeline, celeb_results):
    # Independent check: run detector + landmarks again on the 112 downsample of each crop.
    errors = {}
    for rel, face in celeb_results.items():
        small = _to112(face.crop)
        dets = pipeline.detector.detect(small)
        assert dets, f"{rel}: no face re-detected on its own aligned crop"
        eyes = pipeline.landmarks.five_points(small, choose_primary(dets).box)[:2]
        errors[rel] = float(np.linalg.norm(eyes - ARCFACE_TEMPLATE_112[:2], axis=1).max())
    worst = max(errors, key=errors.get)
    assert errors[worst] < 5.0, (worst, errors[worst])  # measured max ~3.5 px
    assert float(np.median(list(errors.values()))) < 2.5  # measured ~1.9 px


def test_identity_separates_genuine_and_impostor(celeb_results, celebs13, embedder):
    emb = {rel: embedder(face.crop) for rel, face in celeb_results.items()}
    genuine, impostor = [], []
    with open(celebs13 / "pairs.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            cos = float(emb[row["image_a"]] @ emb[row["image_b"]])
            (genuine if row["same_identity"] == "1" else impostor).append(cos)
    assert len(genuine) > 50 and len(impostor) > 50
    assert np.mean(genuine) > 0.6, np.mean(genuine)  # measured 0.725
    assert np.mean(impostor) < 0.2, np.mean(impostor)  # measured 0.010


def test_false_positive_photo_keeps_the_confident_face(pipeline, celebs13, celeb_results):
    image = read_image(celebs13 / FALSE_POSITIVE_PHOTO)
    dets = pipeline.detector.detect(image)
    assert len(dets) == 2
    chosen = choose_primary(dets)
    largest = max(dets, key=lambda d: d.area)
    assert chosen is not largest  # the big box is the crowd beside the face
    face = celeb_results[FALSE_POSITIVE_PHOTO]
    assert face.n_faces == 2 and face.score == pytest.approx(chosen.score)
    x1, y1, x2, y2 = chosen.box
    assert np.all((face.landmarks5[:, 0] > x1) & (face.landmarks5[:, 0] < x2))
    assert np.all((face.landmarks5[:, 1] > y1) & (face.landmarks5[:, 1] < y2))


# --------------------------------------------------------------------------- selection


def _det(score: float, side: float) -> Detection:
    return Detection(box=np.array([0.0, 0.0, side, side]), score=score, landmarks5=None)


def test_choose_primary_prefers_confidence_over_area():
    small_sure, big_unsure = _det(0.99, 50), _det(0.95, 500)
    assert choose_primary([big_unsure, small_sure]) is small_sure
    # Within 0.01 the scores tie and the larger face wins.
    near_tie_big = _det(0.985, 400)
    assert choose_primary([small_sure, near_tie_big]) is near_tie_big
    assert choose_primary([_det(0.8, 10)]).score == pytest.approx(0.8)
    with pytest.raises(ValueError):
        choose_primary([])


def test_multi_face_photos(detector_path, landmark_path, multi_face, tmp_path):
    primary = FacePipeline(
        RFBDetector(detector_path, threads=2),
        LandmarkModel68(landmark_path, threads=2),
        cache_dir=tmp_path,
    )
    skip = FacePipeline(primary.detector, primary.landmarks, multi_face="skip", cache_dir=tmp_path)
    for name in ("couple.jpg", "selfie-many-people.jpg"):
        face = primary.extract(multi_face / name)
        assert face.n_faces > 1
        with pytest.raises(BadImageError, match=r"\d+ faces found \(multi_face=skip\)") as info:
            skip.extract(multi_face / name)
        assert name in str(info.value)
    # The mirrored face in the reflection photo is not found by RFB-320: one face, kept.
    assert primary.extract(multi_face / "img11_reflection.jpg").n_faces >= 1
    with pytest.raises(ValueError):
        FacePipeline(primary.detector, None, multi_face="all")


# --------------------------------------------------------------------------- bad inputs


def test_corrupt_and_missing_files(pipeline, celebs13, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BadImageError, match="cannot decode image") as info:
        pipeline.extract(corrupt)
    assert "corrupt.jpg" in str(info.value)

    data = (celebs13 / "person01" / "img1.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="cannot decode image") as info:
        pipeline.extract(truncated)
    assert "truncated.jpg" in str(info.value)

    with pytest.raises(BadImageError, match="file not found") as info:
        read_image(tmp_path / "nowhere.jpg")
    assert "nowhere.jpg" in str(info.value)


def test_jpeg_truncation_check():
    data = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    assert not _jpeg_truncated(data)
    assert not _jpeg_truncated(data + b"\x00" * 32)  # padding after the end marker is fine
    assert _jpeg_truncated(data[: len(data) // 2])
    assert not _jpeg_truncated(b"\x89PNG\r\n")  # not a JPEG: not this check's business


def test_blank_images_have_no_face(pipeline, tmp_path):
    for name, shape in (("grey.png", (480, 640, 3)), ("grey448.png", (448, 448, 3))):
        path = _write_rgb(tmp_path / name, np.full(shape, 128, np.uint8))
        with pytest.raises(BadImageError, match="no face found") as info:
            pipeline.extract(path)
        assert name in str(info.value)


def test_odd_paths_and_exif_orientation(celebs13, tmp_path):
    odd = tmp_path / "dir with spaces" / "naïve ünïcode #1.jpg"
    odd.parent.mkdir()
    shutil.copyfile(celebs13 / "person01" / "img5.jpg", odd)
    assert read_image(odd).shape == (512, 330, 3)

    from PIL import Image

    rgb = np.zeros((40, 80, 3), np.uint8)
    rgb[:, :20] = 255
    pil = Image.fromarray(rgb)
    exif = pil.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    pil.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    shown = read_image(tmp_path / "rotated.jpg")
    assert shown.shape == (80, 40, 3) and shown[:10].mean() > 200 and shown[-10:].mean() < 50


# --------------------------------------------------------------------------- pre-aligned


def test_prealigned_crops_are_accepted(pipeline, celeb_results, tmp_path):
    face = celeb_results["person01/img1.jpg"]
    for side in (112, 448):
        path = _write_rgb(
            tmp_path / f"aligned{side}.png",
            cv2.resize(face.crop, (side, side), interpolation=cv2.INTER_AREA),
        )
        got = pipeline.extract(path)
        assert got.prealigned and got.native_face_px == side
        assert got.native_iod_px == pytest.approx(TEMPLATE_EYE_DISTANCE_112 * side / 112)
        assert got.crop.shape == (448, 448, 3)
        if side == 448:
            np.testing.assert_array_equal(got.crop, face.crop)  # png round trip is lossless


def test_square_photo_that_is_not_aligned_gets_detected(pipeline, celebs13, tmp_path):
    # Letterboxed to a 448 square: right size, but the face is small and off the template.
    image = read_image(celebs13 / "person01" / "img1.jpg")
    h, w = image.shape[:2]
    square = cv2.copyMakeBorder(
        image, 0, 0, (h - w) // 2, h - w - (h - w) // 2, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )
    path = _write_rgb(
        tmp_path / "square.png", cv2.resize(square, (448, 448), interpolation=cv2.INTER_AREA)
    )
    got = pipeline.extract(path)
    assert not got.prealigned and got.native_face_px < 300


# --------------------------------------------------------------------------- cache


def test_cache_hit_and_corrupt_entry(detector_path, landmark_path, celebs13, tmp_path, monkeypatch):
    pipe = FacePipeline(
        RFBDetector(detector_path, threads=2),
        LandmarkModel68(landmark_path, threads=2),
        cache_dir=tmp_path / "c",
    )
    photo = celebs13 / "person02" / "img27.jpg"
    first = pipe.extract(photo)
    entry = pipe.cache_path(photo.read_bytes())
    assert entry is not None and entry.is_file() and entry.suffix == ".crop"

    def boom(image_rgb):
        raise AssertionError("detector called despite a cache entry")

    with monkeypatch.context() as m:
        m.setattr(pipe.detector, "detect", boom)
        second = pipe.extract(photo)
    np.testing.assert_array_equal(second.crop, first.crop)
    np.testing.assert_allclose(second.landmarks5, first.landmarks5)
    assert (second.native_iod_px, second.n_faces, second.prealigned) == (
        first.native_iod_px,
        first.n_faces,
        first.prealigned,
    )

    # Same bytes under another name: cache hit, but the result names the file asked for.
    copy = tmp_path / "copy.jpg"
    shutil.copyfile(photo, copy)
    with monkeypatch.context() as m:
        m.setattr(pipe.detector, "detect", boom)
        assert pipe.extract(copy).source == str(copy)

    # Other settings, other key.
    other = FacePipeline(pipe.detector, pipe.landmarks, crop_size=224, cache_dir=tmp_path / "c")
    assert other.cache_path(photo.read_bytes()) != entry

    entry.write_bytes(b"not a crop entry")
    third = pipe.extract(photo)
    np.testing.assert_array_equal(third.crop, first.crop)
    head, crop = unpack_entry(entry)  # rewritten as a valid entry
    assert crop.shape == (448, 448, 3) and head["key"] == entry.stem


def test_default_pipeline_uses_settings_cache(celebs13):
    pipe = FacePipeline.default()
    assert pipe.cache_dir.name == "crops" and pipe.crop_size == 448
    face = pipe.extract(celebs13 / "person13" / "img25.jpg")
    assert pipe.cache_path((celebs13 / "person13" / "img25.jpg").read_bytes()).is_file()
    assert face.crop.shape == (448, 448, 3)


# --------------------------------------------------------------------------- models


def test_wrong_models_are_rejected(detector_path, landmark_path, tmp_path):
    with pytest.raises(BadModelError, match="not an RFB-320"):
        RFBDetector(landmark_path)
    with pytest.raises(BadModelError, match="not a 68-point"):
        LandmarkModel68(detector_path)
    with pytest.raises(BadModelError, match="not an SCRFD"):
        SCRFDDetector(detector_path)
    with pytest.raises(BadModelError, match="file not found"):
        RFBDetector(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    with pytest.raises(BadModelError, match="cannot load"):
        LandmarkModel68(junk)


def test_pipeline_for_model_picks_pack_detector(tmp_path, model_path, detector_path):
    import shutil

    from facequant.errors import BadModelError
    from facequant.faces.detectors import RFBDetector
    from facequant.faces.pipeline import pipeline_for_model

    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(model_path, plain / "w600k.onnx")
    assert isinstance(pipeline_for_model(plain / "w600k.onnx").detector, RFBDetector)
    pack = tmp_path / "pack"
    pack.mkdir()
    shutil.copy(model_path, pack / "w600k.onnx")
    shutil.copy(detector_path, pack / "det_10g.onnx")  # a det_ file that is not SCRFD
    with pytest.raises(BadModelError, match="det_10g.onnx"):
        pipeline_for_model(pack / "w600k.onnx")

from __future__ import annotations

import math

import numpy as np
import pytest

from facequant.errors import FacequantError
from facequant.faces.alignment import TEMPLATE_EYE_DISTANCE_112
from facequant.simulate.camera import (
    CameraProfile,
    Degradation,
    camera_from_spec,
    distances_for_face_px,
    is_simulable,
    load_cameras,
    parse_distances,
    simulate,
)


def test_focal_from_fov_and_face_px_scale_inverse_with_distance():
    cam = CameraProfile("t", width_px=1920, hfov_deg=90)
    assert cam.focal == pytest.approx(960.0)
    # 63 mm at 1 m with f=960 px: 60.48 px between the eyes
    assert cam.iod_px(1.0) == pytest.approx(60.48)
    assert cam.face_px(1.0) == pytest.approx(112 * 60.48 / TEMPLATE_EYE_DISTANCE_112)
    assert cam.face_px(2.0) == pytest.approx(cam.face_px(1.0) / 2)
    assert cam.distance_for_face_px(cam.face_px(3.7)) == pytest.approx(3.7)


def test_presets_load_and_inline_specs():
    cams = load_cameras()
    assert {"1080p-90", "720p-60", "4k-110"} <= set(cams)
    assert cams["720p-60"].focal == pytest.approx(640 / math.tan(math.radians(30)))
    assert camera_from_spec("1280x60").focal == pytest.approx(cams["720p-60"].focal)
    assert camera_from_spec("f1000w1920").focal == 1000
    with pytest.raises(FacequantError, match="not a preset"):
        camera_from_spec("potato")


def test_parse_distances():
    assert parse_distances(None)[0] == 0.5 and parse_distances(None)[-1] == 12.0
    assert len(parse_distances(None)) == 12
    assert parse_distances("2,1,1") == (1.0, 2.0)
    geo = parse_distances("1:8:4")
    assert geo == pytest.approx((1, 2, 4, 8))
    with pytest.raises(FacequantError):
        parse_distances("1,-2")
    cam = load_cameras()["1080p-90"]
    ds = distances_for_face_px(cam, [112, 56])
    assert cam.face_px(ds[0]) == pytest.approx(112, rel=1e-3)


def test_simulable_rule():
    # native 80 px: fine for a 60-px face, not for a 100-px face (model sees 100 -> 112 px of detail)
    assert is_simulable(80, 60, 112)
    assert not is_simulable(80, 100, 112)
    # native 150: holds all the detail the model can use even when the face is 400 px
    assert is_simulable(150, 400, 112)


def _pattern(size: int = 448) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    img = (127 + 120 * np.sin(xx / 3.0) * np.cos(yy / 5.0)).astype(np.uint8)
    return np.stack([img, img[::-1], img.T], axis=-1)


def test_simulate_removes_detail_as_face_shrinks():
    crop = _pattern()
    near = simulate(crop, 224, 112)
    far = simulate(crop, 24, 112)
    assert near.shape == far.shape == (112, 112, 3)
    # high-frequency energy (Laplacian variance) falls with the simulated face size
    def hf(x: np.ndarray) -> float:
        g = x[..., 0].astype(np.float32)
        return float(np.var(g[1:-1, 1:-1] * 4 - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]))
    assert hf(far) < 0.2 * hf(near)


def test_degradations_are_seeded_and_change_pixels():
    crop = _pattern()
    d = Degradation(blur_sigma_px=0.8, noise_sigma=4.0, jpeg_quality=60)
    a = simulate(crop, 64, 112, d, np.random.default_rng(1))
    b = simulate(crop, 64, 112, d, np.random.default_rng(1))
    c = simulate(crop, 64, 112, d, np.random.default_rng(2))
    plain = simulate(crop, 64, 112)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - plain.astype(int)).mean() > 1.0

"""ArcFace 5-point alignment: template, similarity transform, warp, inter-ocular distance."""

from __future__ import annotations

import math
import warnings

import cv2
import numpy as np
from insightface.utils import face_align
from skimage import transform

#: ArcFace 5-point template for a 112x112 crop (left eye, right eye, nose, mouth left, mouth right).
#: Taken from insightface so it can never drift from what the embedding models were trained on.
ARCFACE_TEMPLATE_112: np.ndarray = np.asarray(face_align.arcface_dst, dtype=np.float32).copy()
ARCFACE_TEMPLATE_112.setflags(write=False)

#: Distance between the template eye centres in a 112 crop (~35.24 px).
TEMPLATE_EYE_DISTANCE_112: float = float(
    np.linalg.norm(ARCFACE_TEMPLATE_112[1] - ARCFACE_TEMPLATE_112[0])
)


def _check_landmarks(landmarks5: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks5, dtype=np.float64)
    if pts.shape != (5, 2) or not np.all(np.isfinite(pts)):
        raise ValueError(f"landmarks5 must be a finite 5x2 array, got shape {pts.shape}")
    return pts


def template(size: int, margin: float = 0.0) -> np.ndarray:
    """The 112 ArcFace template scaled to a size x size crop, always scaled, never cropped or
    shifted (insightface's estimate_norm shifts it by 8 px for multiples of 128). With a
    margin the face shrinks to 1 / (1 + margin) of the crop, centred: a crop with that
    fraction of extra border, for models trained on looser crops."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a number >= 0, got {margin}")
    ratio = float(size) / 112.0
    dst = ARCFACE_TEMPLATE_112 * ratio  # float32, exactly insightface's arithmetic at margin 0
    if margin:
        dst = dst / (1.0 + margin) + size * margin / (2.0 * (1.0 + margin))
    return dst


def crop_side(face_px: float, margin: float = 0.0) -> float:
    """Side of the whole crop, border included, when the face (the 112-template region) spans
    face_px: what simulation shrinks a crop to for that face size."""
    return face_px * (1.0 + margin)


def similarity_matrix(landmarks5: np.ndarray, size: int, margin: float = 0.0) -> np.ndarray:
    """2x3 similarity transform mapping source landmarks onto the ArcFace template scaled to
    size (with `margin` extra border: see template)."""
    pts = _check_landmarks(landmarks5)
    dst = template(size, margin)
    # The same least-squares similarity insightface's estimate_norm fits; skimage deprecates
    # estimate() in favour of from_estimate(), a warning that would fire once per face.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tform = transform.SimilarityTransform()
        tform.estimate(pts, dst)
    return np.asarray(tform.params[0:2, :], dtype=np.float64)


def _scale(matrix: np.ndarray) -> float:
    # A similarity matrix is s*[[cos, -sin], [sin, cos]]: the column norm is s.
    return float(math.hypot(matrix[0, 0], matrix[1, 0]))


def align(image_rgb: np.ndarray, landmarks5: np.ndarray, size: int, margin: float = 0.0) -> np.ndarray:
    """Warp the face to a size x size ArcFace-aligned crop (anti-aliased when shrinking)."""
    matrix = similarity_matrix(landmarks5, size, margin)
    scale = _scale(matrix)
    image = np.ascontiguousarray(image_rgb)
    if scale >= 1.0:
        return cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )

    # cv2.warpAffine silently treats INTER_AREA as INTER_LINEAR, which aliases badly when a
    # large face is shrunk. So: cut out the source region the crop needs, shrink it with
    # cv2.resize(INTER_AREA) to about the target scale, then warp at ~1:1 with linear.
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    src = corners @ inverse.T
    h, w = image.shape[:2]
    margin = 2.0 / scale  # a couple of output pixels, so linear sampling never hits the cut
    x0 = int(max(0, math.floor(src[:, 0].min() - margin)))
    y0 = int(max(0, math.floor(src[:, 1].min() - margin)))
    x1 = int(min(w, math.ceil(src[:, 0].max() + margin)))
    y1 = int(min(h, math.ceil(src[:, 1].max() + margin)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        # The crop lies (almost) entirely outside the photo: nothing to anti-alias.
        return cv2.warpAffine(
            image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    region = image[y0:y1, x0:x1]
    new_w = max(1, round((x1 - x0) * scale))
    new_h = max(1, round((y1 - y0) * scale))
    small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx = new_w / (x1 - x0)
    fy = new_h / (y1 - y0)
    # Source pixel centre (x + 0.5) maps to small pixel centre (x + 0.5) * f - 0.5.
    to_small = np.array([[fx, 0.0, (0.5 - x0) * fx - 0.5], [0.0, fy, (0.5 - y0) * fy - 0.5]])
    from_small = cv2.invertAffineTransform(to_small)
    combined = matrix @ np.vstack([from_small, [0.0, 0.0, 1.0]])
    # BORDER_REPLICATE on the cut region is right: where the crop needs pixels outside the
    # region, that is outside the photo too (the region was only clamped at photo edges).
    return cv2.warpAffine(
        small, combined, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def inter_ocular_px(landmarks5: np.ndarray) -> float:
    """Distance between the two eye centres (points 0 and 1), in the landmarks' pixel units."""
    pts = _check_landmarks(landmarks5)
    return float(np.linalg.norm(pts[1] - pts[0]))

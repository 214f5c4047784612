"""Face detectors (RFB-320, SCRFD), the 68-point landmark model, and which face to keep."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import onnxruntime as ort

from facequant import settings
from facequant.errors import BadModelError
from facequant.models.files import model_sha256

#: Detector scores closer than this count as equal in choose_primary.
SCORE_TIE = 0.01
# --------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields make field-wise == ambiguous
class Detection:
    """One detected face: box (x1, y1, x2, y2) in pixels, score, optional 5 landmarks (5x2)."""

    box: np.ndarray
    score: float
    landmarks5: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Normalise once here so every consumer can rely on float arrays of the right shape.
        box = np.asarray(self.box, dtype=np.float64).reshape(4)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        if self.landmarks5 is not None:
            pts = np.asarray(self.landmarks5, dtype=np.float64).reshape(5, 2)
            object.__setattr__(self, "landmarks5", pts)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in an RGB uint8 image."""

    def detect(self, image_rgb: np.ndarray) -> list[Detection]: ...


# --------------------------------------------------------------------------- helpers


def _session(path: Path, threads: int | None) -> ort.InferenceSession:
    if not path.is_file():
        raise BadModelError(path, "file not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or settings.ort_threads()
    options.log_severity_level = 3  # ORT warnings are noise for users here
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises several unrelated types for a bad file
        raise BadModelError(path, f"cannot load ONNX model ({exc.__class__.__name__})") from exc


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy hard NMS (what the RFB-320 reference code uses), highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return keep


def resize_for(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize with INTER_AREA when shrinking (no aliasing) and linear when enlarging."""
    h, w = image.shape[:2]
    shrink = size[0] < w or size[1] < h
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- detectors


class RFBDetector:
    """RFB-320 face detector (fr_detect.onnx): boxes and scores, no landmarks."""

    INPUT_W = 320
    INPUT_H = 240

    def __init__(
        self,
        path: str | os.PathLike[str],
        score_threshold: float = 0.7,
        nms_iou: float = 0.3,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self._session = _session(self.path, threads)
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if (
            len(inputs) != 1
            or list(inputs[0].shape[1:]) != [3, 240, 320]
            or outputs
            != [
                "scores",
                "boxes",
            ]
        ):
            raise BadModelError(
                self.path, "not an RFB-320 detector (input [1,3,240,320] -> scores, boxes)"
            )
        self._input = inputs[0].name
        # Identity of this detector for crop caches: weights + everything that changes results.
        self.fingerprint = f"rfb:{model_sha256(self.path)}:{self.score_threshold:g}:{self.nms_iou:g}"

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces above score_threshold after NMS, best first; boxes in image pixels."""
        h, w = image_rgb.shape[:2]
        # The model sees the whole frame squeezed to 320x240 (aspect not kept), as trained.
        small = resize_for(image_rgb, (self.INPUT_W, self.INPUT_H)).astype(np.float32)
        blob = ((small - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self._session.run(None, {self._input: blob})
        face = scores[0, :, 1]
        keep = face > self.score_threshold
        if not np.any(keep):
            return []
        face = face[keep].astype(np.float64)
        pix = boxes[0, keep].astype(np.float64) * np.array([w, h, w, h], dtype=np.float64)
        pix[:, 0::2] = np.clip(pix[:, 0::2], 0, w)
        pix[:, 1::2] = np.clip(pix[:, 1::2], 0, h)
        return [
            Detection(box=pix[i], score=float(face[i]), landmarks5=None)
            for i in _nms(pix, face, self.nms_iou)
        ]


class SCRFDDetector:
    """insightface SCRFD detector (e.g. det_10g.onnx): boxes, scores and 5 landmarks."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        score_threshold: float = 0.5,
        input_size: tuple[int, int] = (640, 640),
    ) -> None:
        from insightface.model_zoo import get_model
        from insightface.model_zoo.scrfd import SCRFD

        self.path = Path(path)
        if not self.path.is_file():
            raise BadModelError(self.path, "file not found")
        try:
            model = get_model(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BadModelError(
                self.path, f"cannot load ONNX model ({exc.__class__.__name__})"
            ) from exc
        if not isinstance(model, SCRFD):
            raise BadModelError(self.path, "not an SCRFD detector")
        model.prepare(ctx_id=-1, input_size=input_size, det_thresh=score_threshold)
        self._model = model
        self.fingerprint = (
            f"scrfd:{model_sha256(self.path)}:{score_threshold:g}:{input_size[0]}x{input_size[1]}"
        )

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces with their 5 keypoints, best first (insightface wants BGR)."""
        bgr = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)
        dets, kpss = self._model.detect(bgr)
        out = [
            Detection(
                box=np.asarray(d[:4], dtype=np.float64),
                score=float(d[4]),
                landmarks5=None if kpss is None else np.asarray(kpss[i], dtype=np.float64),
            )
            for i, d in enumerate(dets)
        ]
        return sorted(out, key=lambda d: -d.score)


# --------------------------------------------------------------------------- landmarks


class LandmarkModel68:
    """68-point landmark regressor (fr_landmark.onnx) reduced to the 5 ArcFace points."""

    INPUT = 64
    # Box margins the faceplugin reference code adds before cropping (left, top, right,
    # bottom, as fractions of the box): the regressor was trained on that framing. Checked
    # against a square / enlarged-square crop on celebs13: these give the steadiest points
    # when re-detected on the aligned crop and the same genuine/impostor separation.
    MARGINS = (0.05, 0.0, 0.05, 0.10)

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = Path(path)
        self._session = _session(self.path, threads)
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if (
            len(inputs) != 1
            or list(inputs[0].shape[1:]) != [1, self.INPUT, self.INPUT]
            or list(outputs[0].shape[-1:]) != [136]
        ):
            raise BadModelError(
                self.path, "not a 68-point landmark model (input [1,1,64,64] -> 136)"
            )
        self._input = inputs[0].name
        self.fingerprint = f"lmk68:{model_sha256(self.path)}"

    def crop_box(self, box: np.ndarray) -> np.ndarray:
        """The region actually fed to the model for a detector box (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = (float(v) for v in box)
        w, h = x2 - x1, y2 - y1
        left, top, right, bottom = self.MARGINS
        return np.array([x1 - left * w, y1 - top * h, x2 + right * w, y2 + bottom * h])

    def points68(self, image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """All 68 landmarks (68x2) in image pixels."""
        x1, y1, x2, y2 = self.crop_box(box)
        if not (x2 - x1 >= 2 and y2 - y1 >= 2):
            raise ValueError(f"face box too small for landmarks: {box}")
        gray = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        # Cut the region, padding by edge replication where it leaves the frame, so the
        # 64x64 input always covers exactly the crop box (the mapping back stays exact).
        ix1, iy1 = int(np.floor(x1)), int(np.floor(y1))
        ix2, iy2 = int(np.ceil(x2)), int(np.ceil(y2))
        pad = (max(0, -iy1), max(0, iy2 - h), max(0, -ix1), max(0, ix2 - w))
        region = gray[max(0, iy1) : min(h, iy2), max(0, ix1) : min(w, ix2)]
        if region.size == 0:
            raise ValueError(f"face box outside the image: {box}")
        if any(pad):
            region = cv2.copyMakeBorder(region, *pad, borderType=cv2.BORDER_REPLICATE)
        patch = resize_for(region, (self.INPUT, self.INPUT)).astype(np.float32) / 256.0
        out = self._session.run(None, {self._input: patch[None, None]})[0]
        pts = np.asarray(out, dtype=np.float64).reshape(68, 2)
        # Output is normalised to the (integer) region that was resized.
        return pts * np.array([ix2 - ix1, iy2 - iy1]) + np.array([ix1, iy1])

    def five_points(self, image_rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Eye centres (mean of 36-41, 42-47), nose tip (30), mouth corners (48, 54); 5x2."""
        p = self.points68(image_rgb, box)
        return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


# --------------------------------------------------------------------------- functions


def choose_primary(detections: list[Detection]) -> Detection:
    """The face to keep: highest confidence; scores within SCORE_TIE count as a tie, won by area.

    Not largest-box-first: background texture next to a face can give a big, confident box.
    """
    if not detections:
        raise ValueError("choose_primary needs at least one detection")
    best_score = max(d.score for d in detections)
    tied = [d for d in detections if d.score >= best_score - SCORE_TIE]
    # max() keeps the first of equal keys, so ties in area too go to the best-scored one.
    tied.sort(key=lambda d: -d.score)
    return max(tied, key=lambda d: d.area)



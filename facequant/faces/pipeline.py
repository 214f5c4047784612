"""Photos to aligned face crops: read, detect, pick one face, 5 landmarks, align, cache.

Everything a user's photo folder can throw at us (corrupt files, no face, several faces)
ends as a one-line BadImageError naming the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import onnxruntime as ort

from facequant import settings
from facequant.cache import warn
from facequant.errors import BadImageError, BadModelError, FacequantError
from facequant.faces.alignment import (
    ARCFACE_TEMPLATE_112,
    TEMPLATE_EYE_DISTANCE_112,
    align,
    inter_ocular_px,
)
from facequant.models.spec import model_sha256
from facequant.ranges import CROP_MARGIN_RANGE, require

#: Bump when the crop recipe changes, so old cache entries are never reused.
#: 2: each entry carries its own key and a checksum of its content.
CACHE_VERSION = 2
#: Accepted values of FacePipeline(multi_face=...).
MULTI_FACE_MODES = ("primary", "skip")
#: Detector scores closer than this count as equal in choose_primary.
SCORE_TIE = 0.01
#: Largest picture decoded (width x height): a 40-megapixel photo is already beyond any camera
#: a face pipeline sees; a file claiming more is refused from its header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000
#: Environment variable overriding MAX_IMAGE_PIXELS.
MAX_PIXELS_ENV = "FACEQUANT_MAX_IMAGE_PIXELS"


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


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """A face aligned to the ArcFace template plus what is known of its size in the photo."""

    source: str  # image path
    crop: np.ndarray  # crop_size x crop_size x 3 uint8 RGB: the template face (plus the pipeline's margin)
    native_iod_px: float  # inter-ocular distance in the original photo, pixels
    native_face_px: float  # width the 112-template crop spans in the original photo, pixels
    landmarks5: np.ndarray  # 5x2, source-image pixels
    score: float  # detector confidence (0.0 when a pre-aligned crop had no detection)
    n_faces: int  # faces the detector found (after NMS, above threshold)
    prealigned: bool  # the input was already an aligned crop and was only resized


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


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
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
        small = _resize(image_rgb, (self.INPUT_W, self.INPUT_H)).astype(np.float32)
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
        patch = _resize(region, (self.INPUT, self.INPUT)).astype(np.float32) / 256.0
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


def _jpeg_truncated(data: bytes) -> bool:
    """True when JPEG data stops before its image ends.

    libjpeg (inside cv2.imdecode) only warns on a truncated file and returns a grey-filled
    picture, so it is checked here: a complete JPEG ends with the EOI marker (FFD9), maybe
    followed by padding. Files with other trailing bytes get a full Pillow decode to decide.
    """
    if not data.startswith(b"\xff\xd8"):
        return False
    if data.rstrip(b"\x00\r\n\xff ").endswith(b"\xff\xd9"):
        return False
    import io

    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone relaxed Pillow globally; trust the marker
        return True
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception:
        return True
    return False


def max_image_pixels() -> int:
    """The pixel cap: $FACEQUANT_MAX_IMAGE_PIXELS, else MAX_IMAGE_PIXELS."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise FacequantError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive whole number of pixels")
    return value


def _header_size(data: bytes, path: str | os.PathLike[str], cap: int) -> tuple[int, int]:
    """(width, height) as the file's header declares them, read without decoding any pixel
    (Pillow's lazy open), so a small file claiming a huge picture costs nothing."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as exc:  # over Pillow's own (looser) cap too
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{declared.group(1)} pixels" if declared else "more pixels than Pillow allows"
        raise BadImageError(path, f"image too large: its header declares {size}, more than the cap of "
                                  f"{cap} ({MAX_PIXELS_ENV} raises it)") from None
    except Exception as exc:  # Pillow raises many types on hostile headers; all mean the same here
        raise BadImageError(path, f"cannot decode image (not a readable image: {type(exc).__name__})") from None


def check_image_size(data: bytes, path: str | os.PathLike[str]) -> None:
    """BadImageError unless the header declares a picture of 2x2 up to the pixel cap."""
    if not data:
        raise BadImageError(path, "cannot decode image (empty file)")
    cap = max_image_pixels()
    width, height = _header_size(data, path, cap)
    if width * height > cap:
        raise BadImageError(path, f"image too large: {width}x{height} pixels is more than the cap of {cap} "
                                  f"({MAX_PIXELS_ENV} raises it)")
    if width < 2 or height < 2:
        raise BadImageError(path, f"image too small to hold a face ({width}x{height} pixels)")


def _decode(data: bytes, path: str | os.PathLike[str]) -> np.ndarray:
    """Decode image bytes to RGB uint8 (EXIF orientation applied), or raise BadImageError.
    The size is checked against the pixel cap before any pixel is decoded."""
    check_image_size(data, path)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except (cv2.error, MemoryError, ValueError, OverflowError) as exc:
        raise BadImageError(path, f"cannot decode image ({type(exc).__name__})") from None
    if bgr is None or bgr.ndim != 3 or bgr.shape[0] < 2 or bgr.shape[1] < 2:
        raise BadImageError(path, "cannot decode image (corrupt or not an image)")
    if _jpeg_truncated(data):
        raise BadImageError(path, "cannot decode image (truncated JPEG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    if not p.exists():
        raise BadImageError(path, "file not found")
    if not p.is_file():
        raise BadImageError(path, "not a regular file")
    try:
        # Bounded before reading: no image under the pixel cap needs more bytes than this.
        limit = max_image_pixels() * 8 + (16 << 20)
        if p.stat().st_size > limit:
            raise BadImageError(path, f"file too large for an image under the pixel cap ({p.stat().st_size} bytes)")
        # np.fromfile + imdecode rather than cv2.imread: works for any path the OS accepts.
        return np.fromfile(p, dtype=np.uint8).tobytes()
    except OSError as exc:
        raise BadImageError(path, f"cannot read file ({exc.strerror or exc})") from exc
    except MemoryError:
        raise BadImageError(path, "cannot read file (out of memory)") from None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as RGB uint8 (HxWx3), EXIF orientation applied; BadImageError otherwise."""
    return _decode(_read_bytes(path), path)


def _face_digest(face: AlignedFace) -> str:
    """Checksum of everything a crop-cache entry holds (not its source name)."""
    h = hashlib.sha256(np.ascontiguousarray(face.crop).tobytes())
    h.update(np.ascontiguousarray(face.landmarks5, dtype=np.float64).tobytes())
    h.update(repr((float(face.native_iod_px), float(face.native_face_px), float(face.score), int(face.n_faces),
                   bool(face.prealigned))).encode())
    return h.hexdigest()


def _bad_entry(file: Path, reason: str) -> None:
    """A crop-cache entry not to trust: say so; the caller recomputes it and stores it over it."""
    warn(f"{file}: cached crop {reason}; rebuilding it")


@lru_cache(maxsize=4)
def _shared_rfb(path: str, threads: int | None) -> RFBDetector:
    # One ONNX session per model file for the whole process: pipelines are cheap to make.
    return RFBDetector(path, threads=threads)


@lru_cache(maxsize=4)
def _shared_landmarks(path: str, threads: int | None) -> LandmarkModel68:
    return LandmarkModel68(path, threads=threads)


# --------------------------------------------------------------------------- pipeline


class FacePipeline:
    """Photo path -> AlignedFace, with an on-disk cache of results.

    Pre-aligned input rule (such crops are used as they are, only resized):
      * the image is square and its side is a multiple of 112 (112 is the input of the
        ArcFace-family models, 224/448 are common "high-res aligned" sizes), and
      * either the detector finds no face and the side is at most 224 (RFB-320 misses some
        faces in tiny crops; a large square without a face is a photo without a face), or
        the most confident detection spans at least half the frame width, its centre is in
        the middle of the frame, and (when landmarks can be had) both eyes are within 5% of
        the side from the template eye positions.
      A near-uniform image is never pre-aligned. Anything else goes through detection.
    A pre-aligned crop keeps n_faces (0 when nothing was detected, score 0.0 then) but is
    not subject to multi_face="skip": a crop is one face by construction.
    """

    PREALIGNED_NO_DETECTION_MAX_SIDE = 224
    PREALIGNED_MIN_BOX_FRACTION = 0.5
    # Re-detected eyes on true aligned crops of celebs13 sit within 3.3% of the side from the
    # template; a tightly centre-cropped portrait was 6.6% off. 5% separates the two.
    PREALIGNED_EYE_TOLERANCE = 0.05

    def __init__(
        self,
        detector: FaceDetector,
        landmarks: LandmarkModel68 | None,
        crop_size: int = 448,
        multi_face: str = "primary",
        cache_dir: Path | None = None,
        margin: float = 0.0,
    ) -> None:
        if crop_size <= 0 or crop_size % 112:
            raise ValueError(f"crop_size must be a positive multiple of 112, got {crop_size}")
        if multi_face not in MULTI_FACE_MODES:
            raise ValueError(f"multi_face must be one of {MULTI_FACE_MODES}, got {multi_face!r}")
        require("crop margin", margin, CROP_MARGIN_RANGE)
        self.detector = detector
        self.landmarks = landmarks
        self.crop_size = int(crop_size)
        self.multi_face = multi_face
        self.margin = float(margin)  # extra border around the template face, a fraction of it
        self.cache_dir = (
            Path(cache_dir) if cache_dir is not None else settings.cache_dir() / "crops"
        )
        self._settings_key = self._make_settings_key()

    @classmethod
    def default(
        cls,
        *,
        crop_size: int = 448,
        multi_face: str = "primary",
        cache_dir: Path | None = None,
        threads: int | None = None,
        margin: float = 0.0,
    ) -> FacePipeline:
        """RFB detector + 68-point landmarks: the faceplugin models (shared folder, or pulled)."""
        from facequant.models.spec import faceplugin_file

        return cls(
            _shared_rfb(str(faceplugin_file("fr_detect.onnx")), threads),
            _shared_landmarks(str(faceplugin_file("fr_landmark.onnx")), threads),
            crop_size=crop_size,
            multi_face=multi_face,
            cache_dir=cache_dir,
            margin=margin,
        )

    # ------------------------------------------------------------------ cache

    def _make_settings_key(self) -> str | None:
        det = getattr(self.detector, "fingerprint", None)
        if det is None:
            return None  # unknown detector: results can't be keyed safely, so no cache
        lmk = "none" if self.landmarks is None else getattr(self.landmarks, "fingerprint", "?")
        # The margin joins the key only when set: tight crops keep their cache entries.
        margin = f"|margin{self.margin:g}" if self.margin else ""
        # OpenCV resamples the crop: another release may give other pixels (4.x -> 5.x does).
        return f"v{CACHE_VERSION}|{self.crop_size}|{self.multi_face}|{det}|{lmk}{margin}|cv{cv2.__version__}"

    @property
    def settings_key(self) -> str | None:
        """Everything besides the photo's bytes that determines its crop (None: not keyable)."""
        return self._settings_key

    def cache_path(self, data: bytes) -> Path | None:
        """Where the result for these file bytes lives (None when caching is off)."""
        if self._settings_key is None:
            return None
        key = hashlib.sha256(data)
        key.update(b"\0" + self._settings_key.encode())
        return self.cache_dir / f"{key.hexdigest()}.npz"

    def _load_cached(self, file: Path, source: str) -> AlignedFace | None:
        """The cached face, or None (with a one-line warning, the entry removed) when the
        entry is unreadable, belongs to another key (a swapped file) or fails its checksum."""
        try:
            with np.load(file, allow_pickle=False) as z:
                key, digest = str(z["key"]), str(z["digest"])
                face = AlignedFace(
                    source=source,  # the same bytes may sit under another name
                    crop=z["crop"],
                    native_iod_px=float(z["native_iod_px"]),
                    native_face_px=float(z["native_face_px"]),
                    landmarks5=z["landmarks5"],
                    score=float(z["score"]),
                    n_faces=int(z["n_faces"]),
                    prealigned=bool(z["prealigned"]),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            return _bad_entry(file, f"is unreadable ({type(exc).__name__})")
        if key != file.stem:
            return _bad_entry(file, "belongs to another photo or settings")
        ok = (
            face.crop.dtype == np.uint8
            and face.crop.shape == (self.crop_size, self.crop_size, 3)
            and face.landmarks5.shape == (5, 2)
        )
        if not ok or digest != _face_digest(face):
            return _bad_entry(file, "does not match its checksum")
        return face

    def _store(self, file: Path, face: AlignedFace) -> None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a crash or a parallel run never leaves a half-written entry.
            fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    key=np.array(file.stem),
                    digest=np.array(_face_digest(face)),
                    crop=face.crop,
                    native_iod_px=face.native_iod_px,
                    native_face_px=face.native_face_px,
                    landmarks5=face.landmarks5,
                    score=face.score,
                    n_faces=face.n_faces,
                    prealigned=face.prealigned,
                )
            os.replace(tmp, file)
        except OSError:
            pass  # a read-only or full cache only costs speed

    # ------------------------------------------------------------------ extraction

    def extract(self, path: str | os.PathLike[str]) -> AlignedFace:
        """The aligned face of one photo (cached); BadImageError when there is none to use."""
        source = str(path)
        data = _read_bytes(path)
        check_image_size(data, path)  # before the cache too: the same photos pass whatever is cached
        cache_file = self.cache_path(data)
        if cache_file is not None and cache_file.is_file():
            cached = self._load_cached(cache_file, source)
            if cached is not None:
                return cached
        face = self._extract(_decode(data, path), source)
        if cache_file is not None:
            self._store(cache_file, face)
        return face

    def _five_points(self, image: np.ndarray, det: Detection) -> np.ndarray | None:
        if det.landmarks5 is not None:
            return np.asarray(det.landmarks5, dtype=np.float64)
        if self.landmarks is None:
            return None
        return self.landmarks.five_points(image, det.box)

    def _is_prealigned(self, image: np.ndarray, detections: list[Detection]) -> bool:
        h, w = image.shape[:2]
        if h != w or w % 112:
            return False
        if float(image.std()) < 2.0:  # flat picture: no face, aligned or not
            return False
        if not detections:
            return w <= self.PREALIGNED_NO_DETECTION_MAX_SIDE
        best = choose_primary(detections)
        x1, y1, x2, y2 = (float(v) for v in best.box)
        cx, cy = (x1 + x2) / (2 * w), (y1 + y2) / (2 * w)
        if (x2 - x1) < self.PREALIGNED_MIN_BOX_FRACTION * w or not (
            0.3 < cx < 0.7 and 0.3 < cy < 0.7
        ):
            return False
        pts = self._five_points(image, best)
        if pts is None:
            return True
        template_eyes = ARCFACE_TEMPLATE_112[:2] * (w / 112.0)
        err = np.linalg.norm(pts[:2] - template_eyes, axis=1).max()
        return bool(err <= self.PREALIGNED_EYE_TOLERANCE * w)

    def _extract(self, image: np.ndarray, source: str) -> AlignedFace:
        detections = self.detector.detect(image)
        if self._is_prealigned(image, detections):
            side = image.shape[0]
            ratio = side / 112.0
            if self.margin:  # a tight crop given, a looser one wanted: the border is replicated
                crop = align(image, ARCFACE_TEMPLATE_112.astype(np.float64) * ratio, self.crop_size, self.margin)
            else:
                crop = _resize(image, (self.crop_size, self.crop_size))
            best = choose_primary(detections) if detections else None
            return AlignedFace(
                source=source,
                crop=crop,
                native_iod_px=TEMPLATE_EYE_DISTANCE_112 * ratio,
                native_face_px=float(side),
                landmarks5=ARCFACE_TEMPLATE_112.astype(np.float64) * ratio,
                score=best.score if best is not None else 0.0,
                n_faces=len(detections),
                prealigned=True,
            )

        if not detections:
            raise BadImageError(source, "no face found")
        if len(detections) > 1 and self.multi_face == "skip":
            raise BadImageError(source, f"{len(detections)} faces found (multi_face=skip)")
        best = choose_primary(detections)
        try:
            pts = self._five_points(image, best)
        except ValueError as exc:
            raise BadImageError(source, f"face too small or cut off ({exc})") from exc
        if pts is None:
            raise BadImageError(source, "detector gives no landmarks and no landmark model is set")
        iod = inter_ocular_px(pts)
        if not np.isfinite(iod) or iod < 1.0:
            raise BadImageError(source, "face landmarks degenerate (eyes coincide)")
        crop = align(image, pts, self.crop_size, self.margin)
        return AlignedFace(
            source=source,
            crop=crop,
            native_iod_px=iod,
            native_face_px=112.0 * iod / TEMPLATE_EYE_DISTANCE_112,
            landmarks5=pts,
            score=float(best.score),
            n_faces=len(detections),
            prealigned=False,
        )


#: File names of insightface's SCRFD detectors inside its model packs.
SCRFD_PATTERNS = ("det_*.onnx", "scrfd_*.onnx")


def pipeline_for_model(model_path: Path, multi_face: str = "primary", margin: float = 0.0) -> FacePipeline:
    """insightface's SCRFD (with its own 5 landmarks) when the model sits in a pack folder that
    has one, else the default faceplugin detector and landmarks. `margin`: extra border
    around the template face (a fraction of it), for models trained on looser crops."""
    for pattern in SCRFD_PATTERNS:
        found = sorted(Path(model_path).parent.glob(pattern))
        if found:
            return FacePipeline(SCRFDDetector(found[0]), None, multi_face=multi_face, margin=margin)
    return FacePipeline.default(multi_face=multi_face, margin=margin)

"""Photos to aligned face crops: read, detect, pick one face, 5 landmarks, align, cache.

Everything a user's photo folder can throw at us (corrupt files, no face, several faces)
ends as a one-line BadImageError naming the file."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facequant import settings
from facequant.cache import warn
from facequant.errors import BadImageError
from facequant.faces.alignment import (
    ARCFACE_TEMPLATE_112,
    TEMPLATE_EYE_DISTANCE_112,
    align,
    inter_ocular_px,
)
from facequant.faces.detectors import (
    Detection,
    FaceDetector,
    LandmarkModel68,
    RFBDetector,
    SCRFDDetector,
    choose_primary,
    resize_for,
)
from facequant.faces.images import check_image_size, decode_image, read_bytes
from facequant.ranges import CROP_MARGIN_RANGE, require

#: Bump when the crop recipe changes, so old cache entries are never reused.
#: 2: each entry carries its own key and a checksum of its content.
#: 3: one file, a JSON header and the raw crop, read in one go (an .npz of nine arrays cost
#: ~2 ms a read, and a sweep reads every crop once per distance).
CACHE_VERSION = 3
ENTRY_SUFFIX = ".crop"
_MAGIC = b"FQCROP\n"
#: Accepted values of FacePipeline(multi_face=...).
MULTI_FACE_MODES = ("primary", "skip")
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


def _face_digest(face: AlignedFace) -> str:
    """Checksum of everything a crop-cache entry holds (not its source name)."""
    h = hashlib.sha256(np.ascontiguousarray(face.crop).tobytes())
    h.update(np.ascontiguousarray(face.landmarks5, dtype=np.float64).tobytes())
    h.update(repr((float(face.native_iod_px), float(face.native_face_px), float(face.score), int(face.n_faces),
                   bool(face.prealigned))).encode())
    return h.hexdigest()


def pack_entry(head: dict[str, object], crop: np.ndarray) -> bytes:
    """A crop-cache entry: magic, header length, JSON header (with the crop's shape), crop bytes."""
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    text = json.dumps({**head, "shape": list(crop.shape)}).encode()
    return _MAGIC + struct.pack("<I", len(text)) + text + crop.tobytes()


def unpack_entry(file: Path) -> tuple[dict[str, Any], np.ndarray]:
    """(header, crop) of an entry; ValueError when it is not one or is cut short."""
    with open(file, "rb") as fh:
        data = bytearray(os.fstat(fh.fileno()).st_size)  # writable: the crop is used in place
        if fh.readinto(data) != len(data):
            raise ValueError("short read")
    start = len(_MAGIC) + 4
    if data[: len(_MAGIC)] != _MAGIC or len(data) < start:
        raise ValueError("not a crop-cache entry")
    (size,) = struct.unpack("<I", data[len(_MAGIC):start])
    head = json.loads(bytes(data[start:start + size]))
    if not isinstance(head, dict):
        raise ValueError("header is not an object")
    shape = tuple(int(v) for v in head["shape"])
    body = memoryview(data)[start + size:]
    if len(body) != int(np.prod(shape)):
        raise ValueError("crop cut short")
    return head, np.frombuffer(body, dtype=np.uint8).reshape(shape)


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
        from facequant.models.sources import faceplugin_file

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
        return self._digests(data)[1]

    def _digests(self, data: bytes) -> tuple[str, Path | None]:
        """The photo's SHA-256 and its cache entry's path, from one pass over its bytes."""
        key = hashlib.sha256(data)
        photo = key.hexdigest()  # hexdigest leaves the hash open: the entry's key continues it
        if self._settings_key is None:
            return photo, None
        key.update(b"\0" + self._settings_key.encode())
        return photo, self.cache_dir / f"{key.hexdigest()}{ENTRY_SUFFIX}"

    def _load_cached(self, file: Path, source: str) -> AlignedFace | None:
        """The cached face, or None (with a one-line warning, the entry removed) when the
        entry is unreadable, belongs to another key (a swapped file) or fails its checksum."""
        try:
            head, crop = unpack_entry(file)
            key, digest = str(head["key"]), str(head["digest"])
            face = AlignedFace(
                source=source,  # the same bytes may sit under another name
                crop=crop,
                native_iod_px=float(head["native_iod_px"]),
                native_face_px=float(head["native_face_px"]),
                landmarks5=np.asarray(head["landmarks5"], dtype=np.float64),
                score=float(head["score"]),
                n_faces=int(head["n_faces"]),
                prealigned=bool(head["prealigned"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _bad_entry(file, f"is unreadable ({type(exc).__name__})")
            return None
        if key != file.stem:
            _bad_entry(file, "belongs to another photo or settings")
            return None
        ok = (
            face.crop.dtype == np.uint8
            and face.crop.shape == (self.crop_size, self.crop_size, 3)
            and face.landmarks5.shape == (5, 2)
        )
        if not ok or digest != _face_digest(face):
            _bad_entry(file, "does not match its checksum")
            return None
        return face

    def _store(self, file: Path, face: AlignedFace) -> None:
        head = {"key": file.stem, "digest": _face_digest(face), "native_iod_px": float(face.native_iod_px),
                "native_face_px": float(face.native_face_px),
                "landmarks5": np.asarray(face.landmarks5, dtype=np.float64).tolist(), "score": float(face.score),
                "n_faces": int(face.n_faces), "prealigned": bool(face.prealigned)}
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a crash or a parallel run never leaves a half-written entry.
            fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(pack_entry(head, face.crop))
            os.replace(tmp, file)
        except OSError:
            pass  # a read-only or full cache only costs speed

    # ------------------------------------------------------------------ extraction

    def extract(self, path: str | os.PathLike[str]) -> AlignedFace:
        """The aligned face of one photo (cached); BadImageError when there is none to use."""
        return self.extract_keyed(path)[0]

    def extract_keyed(self, path: str | os.PathLike[str]) -> tuple[AlignedFace, str, Path | None]:
        """extract's face, with the photo's SHA-256 and its cache entry (None when caching is
        off), from one read of the photo: a sweep keys its probes on the digest."""
        source = str(path)
        data = read_bytes(path)
        check_image_size(data, path)  # before the cache too: the same photos pass whatever is cached
        photo_sha, cache_file = self._digests(data)
        if cache_file is not None and cache_file.is_file():
            cached = self._load_cached(cache_file, source)
            if cached is not None:
                return cached, photo_sha, cache_file
        face = self._extract(decode_image(data, path), source)
        if cache_file is not None:
            self._store(cache_file, face)
        return face, photo_sha, cache_file

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
                crop = resize_for(image, (self.crop_size, self.crop_size))
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

"""Distance simulation: a camera model turns metres into face pixels; a degradation chain
turns a high-resolution aligned crop into what that camera would hand the aligner."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from facequant import settings, yamlfiles
from facequant.errors import FacequantError
from facequant.faces.alignment import TEMPLATE_EYE_DISTANCE_112
from facequant.params import PROBES, SIMULATION, VALIDATE, param, validate
from facequant.ranges import (
    BLUR_RANGE,
    DISTANCE_RANGE,
    JPEG_RANGE,
    MAX_DISTANCE_POINTS,
    MAX_FOCAL_PX,
    NOISE_RANGE,
    Range,
    require,
)

#: Adult mean inter-pupillary distance; maps the aligned crop to physical size.
DEFAULT_IOD_MM = 63.0
#: 12 distances from a kiosk close-up to a far corridor end.
DEFAULT_DISTANCES_M: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0)
#: Widest sensor a camera profile may claim (a 100k-pixel-wide frame is already science fiction).
MAX_CAMERA_WIDTH_PX = 100_000


@dataclass(frozen=True)
class CameraProfile:
    """A pinhole camera: how many pixels a physical length spans at a distance."""

    name: str
    width_px: int
    hfov_deg: float | None = None
    focal_px: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.focal_px is None and self.hfov_deg is None:
            raise FacequantError(f"camera '{self.name}': give hfov_deg or focal_px")
        require(f"camera '{self.name}': width_px", self.width_px, Range(1, MAX_CAMERA_WIDTH_PX), integer=True)
        if self.hfov_deg is not None:
            require(f"camera '{self.name}': hfov_deg", self.hfov_deg, Range(0, 180, low_open=True, high_open=True))
        if self.focal_px is not None:
            require(f"camera '{self.name}': focal_px", self.focal_px, Range(0, MAX_FOCAL_PX, low_open=True))
        elif self.focal > MAX_FOCAL_PX:  # a needle-thin field of view: a focal length no lens has
            raise FacequantError(f"camera '{self.name}': hfov_deg {self.hfov_deg:g} gives a focal length of "
                                 f"{self.focal:.3g} px, over {MAX_FOCAL_PX:g}")

    @property
    def focal(self) -> float:
        if self.focal_px is not None:
            return float(self.focal_px)
        assert self.hfov_deg is not None
        return (self.width_px / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)

    def iod_px(self, distance_m: float, iod_mm: float = DEFAULT_IOD_MM) -> float:
        """Inter-ocular distance in pixels of a face at distance_m."""
        return self.focal * (iod_mm / 1000.0) / distance_m

    def face_px(self, distance_m: float, iod_mm: float = DEFAULT_IOD_MM) -> float:
        """Side, in camera pixels, of the ArcFace-aligned face crop at distance_m (the
        template's eyes sit TEMPLATE_EYE_DISTANCE_112 apart in a 112-px crop)."""
        return 112.0 * self.iod_px(distance_m, iod_mm) / TEMPLATE_EYE_DISTANCE_112

    def distance_for_face_px(self, face_px: float, iod_mm: float = DEFAULT_IOD_MM) -> float:
        """Inverse of face_px: the distance at which the aligned crop spans face_px pixels."""
        return self.face_px(1.0, iod_mm) / face_px

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "focal_px_effective": self.focal}


def load_cameras(path: Path | None = None) -> dict[str, CameraProfile]:
    path = path or settings.configs_dir() / "cameras.yaml"
    try:
        raw = yamlfiles.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        line = yamlfiles.error_line(exc)
        raise FacequantError(f"{path}{f':{line}' if line else ''}: cannot read camera presets: not valid YAML "
                             f"({yamlfiles.error_reason(exc)})") from exc
    except OSError as exc:
        raise FacequantError(f"{path}: cannot read camera presets ({exc.strerror})") from exc
    if not isinstance(raw, dict) or not all(isinstance(fields, dict) for fields in raw.values()):
        raise FacequantError(f"{path}: camera presets must map each name to its settings")
    return {name: CameraProfile(name=name, **fields) for name, fields in raw.items()}


def camera_from_spec(spec: str) -> CameraProfile:
    """A preset name ('1080p-90') or an inline profile ('1920x90' = width x hfov, 'f1400w1920')."""
    presets = load_cameras()
    if spec in presets:
        return presets[spec]
    try:
        if spec.startswith("f") and "w" in spec:
            focal, width = spec[1:].split("w")
            return CameraProfile(name=spec, width_px=int(width), focal_px=float(focal))
        width, hfov = spec.lower().split("x")
        return CameraProfile(name=spec, width_px=int(width), hfov_deg=float(hfov))
    except ValueError:
        raise FacequantError(
            f"camera '{spec}': not a preset ({', '.join(presets)}) nor WIDTHxHFOV (e.g. 1920x90) nor fFOCALwWIDTH"
        ) from None


@dataclass(frozen=True)
class Degradation:
    """What a real camera adds on top of fewer pixels. Zero means off."""

    blur_sigma_px: float = param(0.0, help="optics blur sigma in camera pixels (0: off)", group=SIMULATION,
                                 option="blur", range=BLUR_RANGE, commands=(*PROBES, VALIDATE))
    noise_sigma: float = param(0.0, help="sensor noise sigma in 8-bit levels (0: off)", group=SIMULATION,
                               option="noise", range=NOISE_RANGE, commands=(*PROBES, VALIDATE))
    jpeg_quality: int = param(0, help="JPEG quality 1-100 applied at camera resolution (0: off)", group=SIMULATION,
                              option="jpeg", range=JPEG_RANGE, integer=True, commands=(*PROBES, VALIDATE))

    def __post_init__(self) -> None:
        validate(self, "degradation")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def is_simulable(native_face_px: float, face_px: float, model_px: int) -> bool:
    """A photo can stand in for a face of face_px only if it holds at least the detail the
    model will see: min(face_px, model_px). Anything less would be upsampled and counted."""
    return native_face_px >= min(face_px, model_px) * 0.999


def simulate(
    crop: np.ndarray,
    face_px: float,
    model_px: int,
    degradation: Degradation = Degradation(),
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render a high-resolution aligned crop as a face of face_px pixels, then resample it to
    the model input the way an aligner would (bilinear)."""
    side = max(1, int(round(face_px)))
    if side < crop.shape[0]:
        small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    else:
        small = crop  # the source is the most detail there is; never invent more
    if degradation.blur_sigma_px > 0:
        small = cv2.GaussianBlur(small, (0, 0), degradation.blur_sigma_px)
    if degradation.noise_sigma > 0:
        rng = rng or np.random.default_rng(0)
        noisy = small.astype(np.float32) + rng.normal(0.0, degradation.noise_sigma, small.shape)
        small = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if degradation.jpeg_quality > 0:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(degradation.jpeg_quality)])
        if not ok:
            raise FacequantError("JPEG encoding failed during simulation")
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if decoded is None:
            raise FacequantError("JPEG decoding failed during simulation")
        small = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if small.shape[0] == model_px:
        return np.ascontiguousarray(small)
    # Bilinear both ways: a deployed aligner (insightface's norm_crop) warps with INTER_LINEAR.
    return cv2.resize(small, (model_px, model_px), interpolation=cv2.INTER_LINEAR)


def parse_distances(text: str | None) -> tuple[float, ...]:
    """'0.5,1,2' or 'START:STOP:N' (geometric); None or '' -> the defaults. Every distance must be
    in DISTANCE_RANGE metres; FacequantError naming the text otherwise."""
    if not text:
        return DEFAULT_DISTANCES_M

    def bad(why: str) -> FacequantError:
        return FacequantError(f"distances '{text}': {why}")

    parts = text.split(":")
    if len(parts) not in (1, 3):
        raise bad("expected '0.5,1,2' or 'START:STOP:N'")
    try:
        if len(parts) == 3:
            start, stop, n = float(parts[0]), float(parts[1]), int(parts[2])
            if not 1 <= n <= MAX_DISTANCE_POINTS:
                raise bad(f"N must be an integer in [1, {MAX_DISTANCE_POINTS}], got {n}")
            ends = (start, stop)
            if not all(DISTANCE_RANGE.contains(v) for v in ends):
                raise bad(f"START and STOP must be {DISTANCE_RANGE} metres")
            values = tuple(float(v) for v in np.geomspace(start, stop, n).round(3))
        else:
            if any(not item.strip() for item in text.split(",")):
                raise bad("an empty item")
            values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise bad("expected '0.5,1,2' or 'START:STOP:N'") from None
    if not all(DISTANCE_RANGE.contains(v) for v in values):
        raise bad(f"every distance must be a number {DISTANCE_RANGE} metres")
    return tuple(sorted(set(values)))


def distances_for_face_px(camera: CameraProfile, face_px: Sequence[float], iod_mm: float = DEFAULT_IOD_MM) -> tuple[float, ...]:
    """A sweep given in face pixels, expressed as distances for the same camera."""
    return tuple(sorted(round(camera.distance_for_face_px(px, iod_mm), 4) for px in face_px))

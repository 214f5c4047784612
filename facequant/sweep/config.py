"""What a sweep evaluates and how: SweepConfig, saved in every run.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from facequant.datasets.folders import GENUINE_MODES
from facequant.errors import FacequantError
from facequant.models.preprocessing import check_mode
from facequant.ranges import (
    COSINE_RANGE,
    COUNT_RANGE,
    CROP_MARGIN_RANGE,
    DISTANCE_RANGE,
    FACE_PX_RANGE,
    FAR_RANGE,
    IOD_RANGE,
    RAY_TIMEOUT_RANGE,
    SEED_RANGE,
    Range,
    require,
)
from facequant.simulate.camera import DEFAULT_DISTANCES_M, DEFAULT_IOD_MM, Degradation

#: progress(stage, done, total): stages "faces", "calibration" (building backends), "gallery", "distances".
Progress = Callable[[str, int, int], None]

#: --crop-memory, MiB: 0 streams every crop from the crop cache; the top is 1 TiB.
CROP_MEMORY_RANGE = Range(0, 1 << 20)

PROTOCOLS = ("verification", "identification")
EXECUTORS = ("local", "ray")
GALLERIES = ("same-backend", "fp32")


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines a sweep's numbers; saved in run.json."""

    model: str
    data: str
    backends: tuple[str, ...] = ("fp32", "int8-pt", "int8-pc")
    camera: str = "1080p-90"
    distances_m: tuple[float, ...] = DEFAULT_DISTANCES_M
    face_px: tuple[float, ...] | None = None  # a sweep given in face pixels overrides distances_m
    iod_mm: float = DEFAULT_IOD_MM
    degradation: Degradation = Degradation()
    genuine_mode: str = "different-photo"
    gallery: str = "same-backend"  # or "fp32": enrol every backend's gallery with the float model
    pairs: str | None = None  # pairs CSV; None compares every photo with every other
    target_far: float = 1e-3
    threshold: float | None = None  # given: used as is; None: set on fp32 close-range impostors
    calibration_size: int = 32
    calibration_data: str | None = None  # a folder of photos to calibrate on; None: the evaluation photos
    calibration_distances_m: tuple[float, ...] | None = None  # None: the closest sweep distance only
    device_profile: str | None = None  # YAML with a device's measured latencies (configs/devices/)
    measure_cost: bool = True  # time each backend at batch 1 on this CPU after the sweep
    calibration_method: str | None = None  # None: each recipe's own (minmax)
    multi_face: str = "primary"
    seed: int = 0
    batch_size: int = 64
    model_overrides: dict[str, object] = field(default_factory=dict)
    # The preprocessing, checked on data (facequant.models.preprocessing; "auto": chosen by the
    # check unless model_overrides set it), and extra border around the aligned face.
    preprocessing: str = "auto"
    crop_margin: float = 0.0
    # Matching protocol (facequant.evaluate.identification): both are measured in every run;
    # this one is what the cliff, the recommendation and the TUI read.
    protocol: str = "verification"
    target_fpir: float = 1e-2  # identification: the open-set threshold's false-positive rate
    nonmated_fraction: float = 0.2  # identification: identities left out of the gallery
    # How the work runs; none of these change a number.
    save_comparisons: bool = False  # every comparison as rows, comparisons.parquet (large: N^2)
    executor: str = "local"  # or "ray": embeddings computed by a Ray cluster
    ray_address: str | None = None  # None: start (or join) a local Ray instance
    ray_timeout_s: float = 30.0  # how long joining the Ray cluster may take
    embedding_cache: bool = True  # reuse embeddings computed before for the same model, crop and recipe
    chunk_size: int = 256  # photos whose crops are held at once
    crop_memory_mb: int | None = None  # crops held in memory up to this (MiB); None: from the available memory

    def __post_init__(self) -> None:
        # The CLI checks every option where it is parsed; this keeps API callers (the TUI,
        # studies, scripts) from computing garbage with values no command line would pass.
        if not self.distances_m:
            raise FacequantError("sweep config: distances_m is empty")
        for what, values, rng in (("distances_m", self.distances_m, DISTANCE_RANGE),
                                  ("face_px", self.face_px or (), FACE_PX_RANGE),
                                  ("calibration_distances_m", self.calibration_distances_m or (), DISTANCE_RANGE)):
            for v in values:
                require(f"sweep config: {what}", v, rng)
        require("sweep config: iod_mm", self.iod_mm, IOD_RANGE)
        require("sweep config: target_far", self.target_far, FAR_RANGE)
        if self.threshold is not None:
            require("sweep config: threshold", self.threshold, COSINE_RANGE)
        require("sweep config: calibration_size", self.calibration_size, COUNT_RANGE, integer=True)
        require("sweep config: batch_size", self.batch_size, COUNT_RANGE, integer=True)
        require("sweep config: seed", self.seed, SEED_RANGE, integer=True)
        require("sweep config: crop_margin", self.crop_margin, CROP_MARGIN_RANGE)
        check_mode(self.preprocessing, self.model_overrides)
        require("sweep config: target_fpir", self.target_fpir, FAR_RANGE)
        require("sweep config: nonmated_fraction", self.nonmated_fraction, FAR_RANGE)
        require("sweep config: chunk_size", self.chunk_size, COUNT_RANGE, integer=True)
        if self.crop_memory_mb is not None:
            require("sweep config: crop_memory_mb", self.crop_memory_mb, CROP_MEMORY_RANGE, integer=True)
        require("sweep config: ray_timeout_s", self.ray_timeout_s, RAY_TIMEOUT_RANGE)
        for what, value, allowed in (("protocol", self.protocol, PROTOCOLS), ("executor", self.executor, EXECUTORS),
                                     ("genuine_mode", self.genuine_mode, GENUINE_MODES),
                                     ("gallery", self.gallery, GALLERIES)):
            if value not in allowed:
                raise FacequantError(f"sweep config: {what} '{value}': choose {' or '.join(allowed)}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

"""What a sweep evaluates and how: SweepConfig, saved in every run.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from facequant import options, settings
from facequant.datasets.folders import GENUINE_MODES
from facequant.errors import FacequantError
from facequant.faces.pipeline import MULTI_FACE_MODES
from facequant.models.preprocessing import check_mode
from facequant.params import (
    CALIBRATES,
    COST,
    DIAGNOSE,
    MODELS_CHECK,
    PROBES,
    PROTOCOL,
    QUANTIZATION,
    RUN,
    SCALE,
    SIMULATION,
    SWEEPING,
    TUI,
    WHAT,
    nested,
    param,
    validate,
)
from facequant.ranges import (
    CALIBRATION_METHODS,
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
)
from facequant.simulate.camera import DEFAULT_DISTANCES_M, DEFAULT_IOD_MM, Degradation

#: progress(stage, done, total): stages "faces", "calibration" (building backends), "gallery", "distances".
Progress = Callable[[str, int, int], None]

#: --crop-memory, MiB: 0 streams every crop from the crop cache; the top is 1 TiB.
CROP_MEMORY_RANGE = Range(0, 1 << 20)

PROTOCOLS = ("verification", "identification")
EXECUTORS = ("local", "ray")
GALLERIES = ("same-backend", "fp32")
#: The commands that run sweeps and the TUI (which starts them): who takes the sweep-only options.
SWEEPS = (*SWEEPING, TUI)


# --------------------------------------------------------------------------- help and converters


def model_help(command: str) -> str:
    """--model: one model, in every command but sweep, which compares several."""
    several = (" Several, comma-separated: the same probes through each, compared in one run (models.csv, a "
               "recommendation among (model, backend) pairs).")
    return ("ONNX embedding model path, 'faceplugin' (the model in the shared folder), or an insightface pack "
            "(buffalo_l, buffalo_s, antelopev2)." + (several if command == "sweep" else ""))


def _backends_help(command: str) -> str:
    from facequant.backends.registry import NAME_HELP, available_backends

    return (f"comma-separated, from: {', '.join(available_backends())} (fp32 is always added as the reference). "
            f"{NAME_HELP}")


def _camera_help(command: str) -> str:
    from facequant.simulate.camera import load_cameras

    return f"preset ({', '.join(load_cameras())}) or WIDTHxHFOV, e.g. 1920x90"


def _preprocessing_help(command: str) -> str:
    from facequant.models.preprocessing import preprocessing_choices

    return ("auto: score candidate preprocessings on close-range pairs and use the best (the graph's own "
            f"spec unless one clearly beats it); or one of {', '.join(preprocessing_choices()[1:])} "
            "(see facequant models check)")


def _distances_help(command: str) -> str:
    return (f"metres, '0.5,1,2' or 'START:STOP:N' (geometric). Default: {min(DEFAULT_DISTANCES_M):g} to "
            f"{max(DEFAULT_DISTANCES_M):g} m, {len(DEFAULT_DISTANCES_M)} steps")


def _default_data(value: object) -> str:
    if value:
        return str(value)
    data = settings.default_dataset_path()
    if not data.is_dir():
        raise FacequantError(f"{data}: no default photos here (set {settings.SHARED_ENV}); pass --data DIR or --data lfw")
    return str(data)


def _backend_tuple(value: object) -> tuple[str, ...]:
    from facequant.backends.registry import parse_backends

    return tuple(parse_backends(str(value)))


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines a sweep's numbers; saved in run.json. Each field a user sets
    is declared once here (facequant.params): its option, help, range or choices."""

    model: str = param(help=model_help, group=WHAT, convert=options.text, commands=PROBES, fallback="faceplugin")
    data: str = param(help="folder of identity folders (person/photo.jpg). Default: celebs13 in the shared folder; "
                      "'lfw' (every LFW photo) or 'lfw-pairs' (LFW's official pairs), through scikit-learn where a "
                      "network exists.", group=WHAT, convert=options.text, commands=(*PROBES, MODELS_CHECK),
                      to_field=_default_data)
    backends: tuple[str, ...] = param(("fp32", "int8-pt", "int8-pc"), help=_backends_help, group=WHAT,
                                      convert=options.name_list, commands=("sweep", DIAGNOSE, TUI),
                                      to_field=_backend_tuple)
    camera: str = param("1080p-90", help=_camera_help, group=SIMULATION, convert=options.camera, commands=PROBES)
    distances_m: tuple[float, ...] = param(DEFAULT_DISTANCES_M, help=_distances_help, group=SIMULATION,
                                           option="distances", range=DISTANCE_RANGE, convert=options.distances,
                                           commands=PROBES, cli_default=False)
    # a sweep given in face pixels overrides distances_m
    face_px: tuple[float, ...] | None = param(None, help="sweep in face pixels instead of metres, e.g. "
                                              "160,112,80,56,40,28", group=SIMULATION, range=FACE_PX_RANGE,
                                              convert=options.face_px, commands=PROBES)
    iod_mm: float = param(DEFAULT_IOD_MM, help=f"physical inter-ocular distance, {IOD_RANGE} mm", group=SIMULATION,
                          range=IOD_RANGE, commands=PROBES)
    degradation: Degradation = nested(Degradation, Degradation())
    genuine_mode: str = param("different-photo", help="genuine pairs: two photos of a person, or a photo against "
                              "its own enrolment", group=PROTOCOL, option="genuine", choices=GENUINE_MODES,
                              commands=SWEEPS)
    gallery: str = param("same-backend", help="backend that enrols the close-range gallery: the backend under test, "
                         "or fp32 for every backend", group=PROTOCOL, choices=GALLERIES, commands=SWEEPS)
    pairs: str | None = param(None, help="pairs CSV (image_a,image_b,same_identity) to compare instead of every "
                              "photo pair", group=WHAT, commands=SWEEPS)
    target_far: float = param(1e-3, help="target FAR that sets the threshold on fp32 close-range impostors",
                              group=PROTOCOL, option="far", range=FAR_RANGE, commands=SWEEPS)
    # given: used as is; None: set on fp32 close-range impostors
    threshold: float | None = param(None, help=f"fixed cosine threshold {COSINE_RANGE} (overrides --far)",
                                    group=PROTOCOL, range=COSINE_RANGE, commands=SWEEPS)
    calibration_size: int = param(32, help="calibration photos, a seeded subset at close range", group=QUANTIZATION,
                                  option="calib-size", range=COUNT_RANGE, integer=True, commands=CALIBRATES)
    calibration_data: str | None = param(None, help="folder of photos to calibrate on (default: the evaluation "
                                         "photos)", group=QUANTIZATION, option="calib-data", commands=CALIBRATES)
    calibration_distances_m: tuple[float, ...] | None = param(
        None, help="metres to calibrate at, e.g. '0.5,3,6' (distance-aware calibration; default: the closest only)",
        group=QUANTIZATION, option="calib-distances", range=DISTANCE_RANGE, convert=options.distances,
        commands=CALIBRATES, to_field=lambda v: v or None)
    device_profile: str | None = param(None, help="YAML with a device's measured latency per backend (see "
                                       "configs/devices/); default: CPU timing only", group=COST, commands=SWEEPS)
    measure_cost: bool = param(True, help="skip timing each backend at batch 1 after the sweep", group=COST,
                               option="no-latency", flag=True, negate=True, commands=SWEEPS)
    calibration_method: str | None = param(None, help="calibration method for every quantized backend (default: "
                                           "each recipe's own, minmax)", group=QUANTIZATION, option="calib-method",
                                           choices=CALIBRATION_METHODS, commands=CALIBRATES)
    multi_face: str = param("primary", help="photos with several faces: use the most confident face, or skip the "
                            "photo", group=PROTOCOL, choices=MULTI_FACE_MODES, commands=PROBES)
    seed: int = param(0, help="seed for subsets, noise and calibration", group=RUN, range=SEED_RANGE, integer=True)
    batch_size: int = param(64, help="inference batch size", group=RUN, range=COUNT_RANGE, integer=True,
                            commands=(*SWEEPING, DIAGNOSE, TUI))
    model_overrides: dict[str, object] = param(
        default_factory=dict, help="override the inferred model spec, e.g. mean=127.5 std=127.5 channel_order=BGR, "
        "or per channel mean=103.939,116.779,123.68 std=1,1,1 (in the model's channel order); a preprocessing set "
        "here is checked on data and kept, with a warning when it scores clearly worse than the best", group=WHAT,
        option="model-override", convert=options.model_override, repeat=True, metavar="KEY=VALUE",
        commands=(*PROBES, MODELS_CHECK), to_field=lambda v: dict(v or []))
    # The preprocessing, checked on data (facequant.models.preprocessing; "auto": chosen by the
    # check unless model_overrides set it), and extra border around the aligned face.
    preprocessing: str = param("auto", help=_preprocessing_help, group=WHAT, convert=options.preprocessing,
                               metavar="NAME", commands=(*PROBES, MODELS_CHECK))
    crop_margin: float = param(0.0, help="extra border around the aligned face, a fraction of it "
                               f"{CROP_MARGIN_RANGE}, for models trained on looser crops (0: the ArcFace template's "
                               "crop)", group=WHAT, range=CROP_MARGIN_RANGE, metavar="FRACTION",
                               commands=(*PROBES, MODELS_CHECK))
    # Matching protocol (facequant.evaluate.identification): both are measured in every run;
    # this one is what the cliff, the recommendation and the TUI read.
    protocol: str = param("verification", help="what the cliff, the recommendation and the TUI read: 1:1 "
                          "verification (TAR at --far) or 1:N identification (TPIR at --fpir); both are measured in "
                          "every run (sweep.csv, identification.csv)", group=PROTOCOL, choices=PROTOCOLS,
                          commands=SWEEPS)
    target_fpir: float = param(1e-2, help="identification: target false-positive identification rate that sets its "
                               "threshold on fp32 close-range non-mated probes", group=PROTOCOL, option="fpir",
                               range=FAR_RANGE, commands=SWEEPS)
    nonmated_fraction: float = param(0.2, help="identification: share of the people left out of the gallery, whose "
                                     "photos must be rejected (seeded)", group=PROTOCOL, range=FAR_RANGE,
                                     commands=SWEEPS)
    # How the work runs; none of these change a number.
    save_comparisons: bool = param(False, help="also write every comparison as rows, comparisons.parquet (N^2 rows: "
                                   "large; default: the genuine ones, genuine.parquet, and impostors as counts)",
                                   group=SCALE, flag=True, commands=SWEEPS)
    executor: str = param("local", help="where embeddings are computed: this process or a Ray cluster (pip install "
                          "-e '.[ray]'); the numbers are the same", group=SCALE, choices=EXECUTORS, commands=SWEEPS)
    ray_address: str | None = param(None, help="Ray cluster to join, e.g. 10.0.0.5:6379 or 'auto' (default: start "
                                    "a local Ray instance)", group=SCALE, commands=SWEEPS)
    ray_timeout_s: float = param(30.0, help=f"seconds to wait for the Ray cluster to answer, {RAY_TIMEOUT_RANGE} "
                                 "(FACEQUANT_RAY_LOGS=1 shows Ray's own log lines)", group=SCALE,
                                 option="ray-timeout", range=RAY_TIMEOUT_RANGE, commands=SWEEPS)
    embedding_cache: bool = param(True, help="compute every embedding afresh (default: reuse the ones cached for "
                                  "the same model, recipe and probe crop)", group=SCALE, option="no-embedding-cache",
                                  flag=True, negate=True, commands=SWEEPS)
    chunk_size: int = param(256, help="photos whose crops are held in memory at once", group=SCALE,
                            range=COUNT_RANGE, integer=True, commands=SWEEPS)
    crop_memory_mb: int | None = param(None, help=f"MiB of aligned crops a sweep may hold in memory, {CROP_MEMORY_RANGE}; "
                                       "past it they stream from the crop cache (default: a quarter of the "
                                       "available memory, at most 64)", group=SCALE, option="crop-memory",
                                       range=CROP_MEMORY_RANGE, integer=True, commands=SWEEPS)

    def __post_init__(self) -> None:
        # The CLI checks every option where it is parsed; this keeps API callers (the TUI,
        # studies, scripts) from computing garbage with values no command line would pass.
        validate(self, "sweep config")
        check_mode(self.preprocessing, self.model_overrides)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

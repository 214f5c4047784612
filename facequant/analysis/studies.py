"""Calibration studies: the same recipe calibrated differently, and the distance each choice
buys. Each variant is a full sweep; the study table keeps one row per variant."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facequant import options
from facequant.datasets.folders import IMAGE_SUFFIXES
from facequant.errors import FacequantError
from facequant.params import nested, param, validate
from facequant.ranges import CALIBRATION_METHODS, COUNT_RANGE
from facequant.results.directory import pyplot, save_figure
from facequant.results.jsonfile import write_run_json
from facequant.results.output import Inputs, staged_output
from facequant.sweep.config import SweepConfig
from facequant.sweep.engine import run_sweep
from facequant.sweep.result import SweepResult
from facequant.versions import versions

STUDIES = ("calibration-size", "calibration-distance", "calibration-method")
#: What each study varies: its own option (a StudyConfig field) and the sweep field it sets per variant.
VARIES = {"calibration-size": ("sizes", "calibration_size"),
          "calibration-distance": ("mixes", "calibration_distances_m"),
          "calibration-method": ("methods", "calibration_method")}
STUDY = "study"  # the --help group of a study's own options
STUDY_COLUMNS = ["study", "variant", "backend", "n_calibration_crops", "tar_close", "reliable_distance_m",
                 "cliff_distance_m", "distance_cost_m", "cos_to_fp32_far", "prenorm_far", "far_max", "degenerate"]


@dataclass(frozen=True)
class StudyConfig:
    """One study: the recipe calibrated several ways, each a sweep of fp32 and the recipe.
    `sweep` carries everything else (model, photos, camera, distances, seed ...)."""

    kind: str = param(help="the study: what it varies", choices=STUDIES, positional=True)
    recipe: str = param(help="the quantized backend to study", group=STUDY, convert=options.text, fallback="int8-pt")
    sweep: SweepConfig = nested(SweepConfig)
    # calibration-size: default 16, 64, ... up to the photos
    sizes: tuple[int, ...] | None = param(None, help="calibration sizes, e.g. 16,64,256 (default: 16, 64, ... up to "
                                          "the photos available; sizes above the photos available run once, as "
                                          "N=<photos> (all))", group=STUDY, range=COUNT_RANGE, integer=True,
                                          convert=options.sizes, to_field=lambda v: tuple(int(n) for n in v))
    # calibration-distance: default close, +3, +6, +10 m
    mixes: tuple[tuple[float, ...], ...] | None = param(None, help="calibration distance mixes, ';' between mixes, "
                                                        "e.g. '0.5;0.5,3,6;3,6'", group=STUDY,
                                                        convert=options.distance_mixes, to_field=tuple)
    methods: tuple[str, ...] = param(CALIBRATION_METHODS, help="calibration methods to compare", group=STUDY,
                                     choices=CALIBRATION_METHODS, to_field=tuple)

    def __post_init__(self) -> None:
        validate(self, "study")
        check_calibrated(self.recipe)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Variant:
    label: str
    config: SweepConfig
    note: str = ""  # what the label cannot say (a size capped to the photos available)


@dataclass
class StudyResult:
    study: str
    recipe: str
    table: pd.DataFrame
    runs: dict[str, dict[str, object]]  # variant label -> its run.json content
    warnings: list[str] = dataclasses.field(default_factory=list)


def check_calibrated(recipe: str) -> None:
    """A calibration study varies calibration: fp32, fp16, dynamic and external have none."""
    from facequant.backends.registry import require_calibrated

    require_calibrated(recipe, "--recipe", "nothing to study")


def variants(config: StudyConfig) -> list[Variant]:
    """The study's variants of config.sweep, by kind."""
    if config.kind == "calibration-size":
        return size_variants(config.sweep, config.sizes)
    if config.kind == "calibration-distance":
        return distance_variants(config.sweep, config.mixes)
    return method_variants(config.sweep, config.methods)


def available_calibration_photos(config: SweepConfig) -> int:
    """How many photos the calibration could draw from (the folder given, else the dataset)."""
    root = Path(config.calibration_data or config.data)
    if not root.is_dir():
        raise FacequantError(f"{root}: folder not found")
    return sum(1 for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def size_variants(base: SweepConfig, sizes: Sequence[int] | None = None) -> list[Variant]:
    """N = 16, 64, 256, ... up to what the calibration source holds (and that count itself).
    A size above the photos available would calibrate on the same photos as that count under
    another label: such sizes become one variant, "N=<available> (all)", and its note says so."""
    available = available_calibration_photos(base)
    if sizes is None:
        sizes = [n for n in (16, 64, 256, 1024, 4096) if n < available] + [available]
    bad = [n for n in sizes if n < 1]
    if bad:
        raise FacequantError(f"calibration sizes must be positive, got {bad}")
    over = sorted({int(n) for n in sizes if n > available})
    kept = sorted({min(int(n), available) for n in sizes})
    out = []
    for n in kept:
        label = f"N={n} (all)" if n == available and over else f"N={n}"
        note = (f"--sizes {','.join(map(str, over))}: only {available} calibration photos available; "
                f"run once as {label}" if n == available and over else "")
        out.append(Variant(label, dataclasses.replace(base, calibration_size=n), note))
    return out


def distance_variants(base: SweepConfig, mixes: Sequence[Sequence[float]] | None = None) -> list[Variant]:
    """Close-only calibration (what every field report did) against mixes of close and far crops."""
    closest = min(base.distances_m)
    if mixes is None:
        mixes = [(closest,), (closest, 3.0), (closest, 3.0, 6.0), (closest, 3.0, 6.0, 10.0)]
    return [Variant("+".join(f"{d:g}m" for d in mix), dataclasses.replace(base, calibration_distances_m=tuple(mix)))
            for mix in mixes]


def method_variants(base: SweepConfig, methods: Sequence[str] = CALIBRATION_METHODS) -> list[Variant]:
    return [Variant(m, dataclasses.replace(base, calibration_method=m)) for m in methods]


def run_study(
    study: str,
    base: SweepConfig,
    recipe: str,
    variants: list[Variant],
    progress: Callable[[str, int, int], None] | None = None,
) -> StudyResult:
    """Run every variant as a sweep of fp32 and `recipe`; one table row per variant."""
    if study not in STUDIES:
        raise FacequantError(f"study '{study}': choose one of {', '.join(STUDIES)}")
    rows, runs = [], {}
    for i, variant in enumerate(variants):
        # A study's table has no latency column: timing each variant's backends would be waste.
        config = dataclasses.replace(variant.config, backends=("fp32", recipe), measure_cost=False)
        result = run_sweep(config)
        rows.append(_row(study, variant.label, recipe, result))
        runs[variant.label] = result.run
        if progress:
            progress(study, i + 1, len(variants))
    table = pd.DataFrame(rows, columns=STUDY_COLUMNS)
    return StudyResult(study, recipe, table, runs, [v.note for v in variants if v.note])


def _row(study: str, label: str, recipe: str, result: SweepResult) -> dict[str, object]:
    cliff = result.cliff.set_index("backend").loc[recipe]
    sweep = result.sweep[result.sweep.backend == recipe].sort_values("distance_m")
    calib = result.run["calibration"]
    assert isinstance(calib, dict)
    return {"study": study, "variant": label, "backend": recipe,
            "n_calibration_crops": len(calib["images"]) * len(calib["distances_m"]),
            "tar_close": cliff.tar_close, "reliable_distance_m": cliff.reliable_distance_m,
            "cliff_distance_m": cliff.cliff_distance_m, "distance_cost_m": cliff.distance_cost_m,
            "cos_to_fp32_far": sweep.cos_to_fp32_mean.iloc[-1], "prenorm_far": sweep.prenorm_mean.iloc[-1],
            # a longer reach bought with false accepts is no gain: keep FAR beside it
            "far_max": sweep.far.max(), "degenerate": getattr(cliff, "degenerate", "") or ""}


def write_study(result: StudyResult, out: Path, force: bool = False, inputs: Inputs = ()) -> Path:
    """Write the study into `out` atomically: a failure midway leaves any old results intact."""
    out = Path(out)
    with staged_output(out, force, inputs) as staging:
        result.table.to_csv(staging / "study.csv", index=False)
        write_run_json({"study": result.study, "recipe": result.recipe, "versions": versions(),
                        "warnings": result.warnings, "variants": result.runs}, staging / "run.json")
        plot_study(result, staging / "study.png")
    return out


def plot_study(result: StudyResult, path: Path) -> None:
    plt = pyplot()

    t = result.table
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=120)
    x = np.arange(len(t))
    cliff = t.cliff_distance_m.replace(np.inf, np.nan)
    ax1.plot(x, cliff, marker="o", label="cliff distance")
    ax1.plot(x, t.reliable_distance_m, marker="s", label="reliable distance")
    ax1.set(xticks=x, xticklabels=t.variant, ylabel="metres", title=f"{result.recipe}: distance held")
    ax1.legend()
    ax2.plot(x, t.tar_close, marker="o", label="close-range TAR")
    ax2.plot(x, t.cos_to_fp32_far, marker="s", label="cos to fp32, far end")
    ax2.set(xticks=x, xticklabels=t.variant, ylim=(0, 1.02), title=result.study)
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", rotation=20)
    save_figure(fig, path)

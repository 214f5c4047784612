"""facequant's public API: one function per command, the verbs the CLI and the TUI call.

Each verb takes a config dataclass (what to compute) and an Output (where the results
directory goes), checks the output before any work, computes, writes the results directory
(its files, run.json, the .facequant.json marker) and returns the results object. Nothing
here prints: the CLI prints, the TUI shows. Progress is a callback, progress(stage, done,
total), the stages named by the module doing the work ("faces", "calibration" for building
backends, "distances", ...).

Modules are looked up when a verb runs (engine.run_sweep, not a name bound at import), so a
replacement engine or a test's stand-in is used by every caller alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facequant import settings
from facequant.results import output as results_output

if TYPE_CHECKING:
    import pandas as pd

    from facequant.analysis.compare import Comparison
    from facequant.analysis.diagnose.run import DiagnoseConfig, DiagnoseResult
    from facequant.analysis.fidelity import ValidateConfig
    from facequant.analysis.recommend.directory import RecommendConfig
    from facequant.analysis.recommend.verdicts import Recommendation
    from facequant.analysis.search import SearchResult, SearchSettings
    from facequant.analysis.studies import StudyConfig, StudyResult
    from facequant.backends.quantize.export import PrecisionExportConfig
    from facequant.models.spec import ModelSpec
    from facequant.results.multi_model import MultiModelResult
    from facequant.simulate.camera import CameraProfile
    from facequant.sweep.config import SweepConfig
    from facequant.sweep.probe_export import ExportSummary
    from facequant.sweep.result import SweepResult

#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Output:
    """Where a verb writes its results directory. `force` replaces only a folder facequant
    wrote; `inputs` are further (option, path) pairs the folder may not hold (a --config file):
    the config's own inputs (model, photos, pairs ...) are always protected."""

    dir: Path
    force: bool = False
    inputs: tuple[tuple[str, str], ...] = ()

    def checked(self, config: object) -> list[tuple[str, str]]:
        """Refuse, before any work, a folder this run may not write; the inputs it protects."""
        inputs = [*self.inputs, *config_inputs(config)]
        results_output.check_output_dir(self.dir, self.force, inputs)
        return inputs


def config_inputs(config: object) -> list[tuple[str, str]]:
    """The input paths a config reads, defaults included, as (option, path): a results folder
    holding one is never replaced."""
    from facequant.models.files import INSIGHTFACE_PACKS

    sweep = getattr(config, "sweep", config)  # DiagnoseConfig, StudyConfig ... carry a SweepConfig
    found = results_output.inputs_of(sweep)
    model = str(getattr(sweep, "model", "") or "")
    if model == "faceplugin":
        found.append(("--model", str(settings.default_model_path())))
    elif model in INSIGHTFACE_PACKS:
        found.append(("--model", str(Path("~/.insightface/models").expanduser() / model)))
    for option in ("reference", "captures", "name_map"):  # validate-sim, export-precision
        path = getattr(config, option, None)
        if path and Path(str(path)).expanduser().exists():
            found.append((f"--{option.replace('_', '-')}", str(path)))
    for option in ("recipe", "backends"):
        found += results_output.backend_inputs(str(getattr(config, option, "") or ""))
    return found


def _record(command: str, config: object) -> dict[str, Any]:
    """The run.json head every results directory shares: command, config, versions."""
    from facequant.versions import versions

    to_dict = getattr(config, "to_dict", None)
    return {"command": command, "config": to_dict() if callable(to_dict) else config, "versions": versions()}


# --------------------------------------------------------------------------- verbs


def sweep(config: SweepConfig, output: Output, progress: Progress | None = None,
          on_distance: Callable[[float, pd.DataFrame], None] | None = None,
          cancel: threading.Event | None = None) -> SweepResult:
    """The distance sweep: sweep.csv, identification.csv, cliff.csv, cost.csv, results.csv,
    probes.csv, genuine.parquet (comparisons.parquet with save_comparisons), run.json and plots.
    on_distance(distance, rows so far) per distance. Setting `cancel` stops it: before the first
    distance finishes, facequant.errors.Cancelled and nothing written; after, the distances done
    are written as a partial run (run.json "partial": true) by the same writer."""
    from facequant.results import directory
    from facequant.sweep import engine

    output.checked(config)
    result = engine.run_sweep(config, progress=progress, on_distance=on_distance, cancel=cancel)
    directory.write_results(result, output.dir, force=output.force)
    return result


def sweep_models(configs: Sequence[SweepConfig], output: Output, progress: Progress | None = None) -> MultiModelResult:
    """Several models on the same probes, one results directory: each model's own results
    under models/<label>/, the cross-model sweep, cliff and cost tables, models.csv,
    cliff_by_model.png, and recommend.csv choosing among (model, backend) pairs per scenario.
    Progress stages carry the model: "distances [faceres]"."""
    from facequant.analysis.recommend.directory import recommend_dir
    from facequant.analysis.recommend.verdicts import NotCoveredError
    from facequant.results import multi_model
    from facequant.sweep import engine
    from facequant.sweep import probes as probe_set

    multi_model.check_same_probes(configs)
    for config in configs:
        output.checked(config)
    for config in configs:  # every model loads, with a usable input, before the first one's work starts
        probe_set.check_model(config)
    labels = multi_model.model_labels([c.model for c in configs])
    results = []
    for config, label in zip(configs, labels, strict=True):
        def tagged(stage: str, done: int, total: int, label: str = label) -> None:
            if progress:
                progress(f"{stage} [{label}]", done, total)

        results.append(engine.run_sweep(config, progress=tagged))
    combined = multi_model.combine(results, labels, multi_model.multi_record(configs))
    multi_model.write_multi(combined, output.dir, force=output.force)
    try:
        combined.recommendation = recommend_dir(output.dir)
    except NotCoveredError as exc:
        combined.not_covered = str(exc)
    return combined


def diagnose(config: DiagnoseConfig, output: Output, progress: Progress | None = None) -> DiagnoseResult:
    """Layer diagnostics: layers.csv, summary.csv, plots, run.json."""
    from facequant.analysis.diagnose import report
    from facequant.analysis.diagnose import run as diagnose_run

    diagnose_run.diagnose_backends(config.sweep.backends)  # refuse fp16, dynamic, external before any work
    output.checked(config)
    result = diagnose_run.run_diagnose(config, progress=progress)
    report.write_diagnosis(result, output.dir, force=output.force)
    return result


def search_precision(config: SweepConfig, search: SearchSettings, output: Output,
                     progress: Progress | None = None) -> SearchResult:
    """The mixed-precision search: search.json, candidates.csv, steps.csv, paired gains,
    final/ (the re-measured sweep) and run.json."""
    from facequant.analysis import search as search_module

    Output(output.dir, output.force, (*output.inputs, *results_output.backend_inputs(search.base))).checked(config)
    result = search_module.search_precision(config, search, progress=progress)
    search_module.write_search(result, output.dir, force=output.force, run=_record("search-precision", config))
    return result


def study(config: StudyConfig, output: Output, progress: Progress | None = None) -> StudyResult:
    """A calibration study: study.csv, study.png, run.json (a full sweep per variant)."""
    from facequant.analysis import studies

    inputs = output.checked(config)
    variants = studies.variants(config)
    result = studies.run_study(config.kind, config.sweep, config.recipe, variants, progress=progress)
    studies.write_study(result, output.dir, force=output.force, inputs=inputs)
    return result


def recommend(config: RecommendConfig) -> Recommendation:
    """Per deployment scenario, the cheapest backend meeting it; recommend.csv into the
    results directory read (unless config.write is False). Writes no other file."""
    from facequant.analysis.recommend.directory import recommend_dir

    return recommend_dir(config.results, list(config.scenarios) if config.scenarios else None,
                         scenarios_directory=config.scenarios_dir, device_profile=config.device_profile,
                         latency_tolerance=config.latency_tolerance, write=config.write, latency=config.latency)


def validate_simulation(config: ValidateConfig, output: Output, progress: Progress | None = None) -> pd.DataFrame:
    """Simulation fidelity against real captures: fidelity.csv and run.json."""
    from facequant.analysis import fidelity

    inputs = output.checked(config)
    table = fidelity.validate_simulation(config.model, Path(config.reference), Path(config.captures),
                                         backends=config.backends, seed=config.seed,
                                         degradation=config.degradation, progress=progress)
    fidelity.write_fidelity(table, output.dir, config.to_dict(), force=output.force, inputs=inputs)
    return table


def export_probes(config: SweepConfig, output: Output, progress: Progress | None = None) -> ExportSummary:
    """The sweep's exact model inputs for a device: NPY tensors, PNGs, manifest, run.json."""
    from facequant.sweep import probe_export
    from facequant.sweep import probes as probe_set

    output.checked(config)
    probes = probe_set.prepare_probes(config, progress)
    return probe_export.export_probes(probes, output.dir, output.force, progress, run=_record("export-probes", config))


def export_precision(config: PrecisionExportConfig, output: Output, progress: Progress | None = None) -> dict[str, Any]:
    """A static recipe as ORT quantize_static options, per-layer precision JSON and Hailo
    model-script lines, with run.json. Returns the paths written and the warnings."""
    from facequant.backends.quantize import export as precision_export
    from facequant.backends.registry import require_calibrated
    from facequant.sweep import probes as probe_set

    require_calibrated(config.recipe, "recipe", "no per-layer precision to export")  # before any work
    name_map = precision_export.load_name_map(Path(config.name_map)) if config.name_map else None
    inputs = output.checked(config)
    probes = probe_set.prepare_probes(config.sweep, progress)
    return precision_export.export_precision(
        config.recipe, probes.normalized, probes.spec.input_name, probes.calibration_tensors(), output.dir, name_map,
        force=output.force, inputs=inputs, run={**_record("export-precision", config), "model_sha256": probes.model_sha},
        calibration_method=config.sweep.calibration_method)


def report(results: str | Path) -> Path:
    """report.html of a results directory, remade from its files (a recommendation or a
    diagnosis added since then appears in it). Returns its path; writes nothing else."""
    from facequant.results.report import remake_report

    return remake_report(Path(results))


def compare(a: str | Path, b: str | Path, output: Output) -> Comparison:
    """Results directory B against A, per backend in both: reliable and cliff distance shift
    with intervals, verdict change, TAR per distance, comparability and provenance
    differences; compare.csv, compare_tar.csv, compare.json, compare.png and report.html."""
    from facequant.analysis import compare as comparing
    from facequant.analysis import compare_output

    Output(output.dir, output.force, (*output.inputs, ("A", str(a)), ("B", str(b)))).checked(None)
    result = comparing.compare(a, b)
    compare_output.write_comparison(result, output.dir, force=output.force)
    return result


# --------------------------------------------------------------------------- helpers


def inspect_model(model: str) -> ModelSpec:
    """The inferred spec of a model path, 'faceplugin' or an insightface pack."""
    from facequant.models.sources import resolve_model
    from facequant.models.spec import inspect_model as inspect_spec

    return inspect_spec(resolve_model(model))


def cameras() -> dict[str, CameraProfile]:
    """The camera presets (configs/cameras.yaml) by name."""
    from facequant.simulate.camera import load_cameras

    return load_cameras()


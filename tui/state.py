"""What the TUI shows and runs, without any widget: setup values <-> SweepConfig, results
directories, a cancellable sweep, partial saves and CSV export.

Every number comes from facequant's own API (facequant.api.sweep, cliff_table, load_results,
summary_rows); this module only moves tables between them, the disk and the screens, so it
can be tested without a terminal.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from facequant import api, params, settings
from facequant.config import (
    Option,
    field_options,
    parse_value,
    read_config,
    sweep_config,
    sweep_options,
)
from facequant.config import default_out as default_results_dir
from facequant.errors import Cancelled, FacequantError
from facequant.evaluate import cliff, metrics
from facequant.results import directory as reports
from facequant.results import output
from facequant.simulate.camera import DEFAULT_DISTANCES_M
from facequant.sweep.config import SweepConfig
from tui.layers import is_diagnostics_dir

#: The fields the setup screen edits; everything else in a config is carried over as is.
SETUP_FIELDS: tuple[str, ...] = ("model", "data", "camera", "distances", "backends", "out")
#: A distances field starting with this sweeps in face pixels (SweepConfig.face_px).
FACE_PX_PREFIX = "px:"

#: Status of the run a results screen shows.
RUNNING, COMPLETE, PARTIAL, FAILED = "running", "complete", "partial", "failed"

#: An empty comparisons table: cliff_table over the sweep rows alone (live and partial
#: results, which have no comparisons) gives every column but the pre-norm fit.
_NO_COMPARISONS = pd.DataFrame({"backend": pd.Series(dtype=str), "genuine": pd.Series(dtype=bool),
                                "cosine": pd.Series(dtype=float), "probe_prenorm": pd.Series(dtype=float)})


# --------------------------------------------------------------------------- setup values


@dataclass
class SetupValues:
    """The setup form: the edited fields as text, and the config they are applied to."""

    model: str
    data: str
    camera: str
    distances: str
    backends: str
    out: str  # "" = runs/<model>-<time>, as the CLI does
    base: SweepConfig
    source: str  # where the values came from, shown under the form

    def as_dict(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in SETUP_FIELDS}


def _fmt_number(value: float) -> str:
    return f"{value:g}"


def setup_hints() -> dict[str, str]:
    """The form's hint per field: its option's help (the declaration on SweepConfig), where it
    fits a line or two; the fields the form writes its own way say how."""
    from facequant.backends.registry import available_backends

    table = {o.name: o for o in field_options(SweepConfig, "tui")}
    hints = {name: _help_or(table[name]) for name in ("model", "data", "camera")}
    return {**hints,
            "distances": "metres '0.5,1,2', 'START:STOP:N' (geometric), or face pixels 'px:112,64,40'",
            "backends": f"comma-separated: {', '.join(available_backends())}, BASE+16bit:SEL ...",
            "out": "results directory; empty = runs/<model>-<time>, as facequant sweep"}


def _help_or(option: Option) -> str:
    try:
        return option.help_text()
    except Exception:  # noqa: BLE001 - a broken presets file is reported when a run starts
        return ""


def setup_from_config(config: SweepConfig, source: str, out: str = "") -> SetupValues:
    distances = (FACE_PX_PREFIX + ",".join(_fmt_number(v) for v in config.face_px) if config.face_px
                 else ",".join(_fmt_number(v) for v in config.distances_m))
    return SetupValues(model=config.model, data=config.data, camera=config.camera, distances=distances,
                       backends=",".join(config.backends), out=out, base=config, source=source)


def config_from_dict(values: dict[str, object]) -> SweepConfig:
    """A SweepConfig from run.json's "config" (SweepConfig.to_dict), keys this version does
    not know ignored: an older or newer run still prefills the form."""
    from facequant.simulate.camera import Degradation

    known = {f.name for f in dataclasses.fields(SweepConfig)}
    # JSON values, as loosely typed as JSON: SweepConfig checks each one where it is built
    kwargs: dict[str, Any] = {k: v for k, v in values.items() if k in known}
    for key in ("backends", "distances_m", "face_px", "calibration_distances_m"):
        if kwargs.get(key) is not None:
            kwargs[key] = tuple(kwargs[key])
    if isinstance(kwargs.get("degradation"), dict):
        kwargs["degradation"] = Degradation(**kwargs["degradation"])
    models = kwargs.get("model")
    if isinstance(models, list):  # a run of several models: the form shows them as --model does
        kwargs["model"] = ",".join(map(str, models))
    if "model" not in kwargs or "data" not in kwargs:
        raise FacequantError("run.json config has no model or data")
    return SweepConfig(**kwargs)


def run_config(run: dict[str, object]) -> dict[str, object]:
    """The sweep config in a run.json: "config" of a sweep, "config"/"sweep" of a diagnose run."""
    config = run.get("config")
    if isinstance(config, dict) and isinstance(config.get("sweep"), dict):
        config = config["sweep"]
    return config if isinstance(config, dict) else {}


def model_file_name(model: str) -> str:
    """The model file's name as a sweep's results name it (sweep.csv's model column), known
    before the run when it costs nothing: a path, or 'faceplugin' (the shared fr_feature.onnx).
    An insightface pack keeps its name until its file is known."""
    path = Path(model).expanduser()
    if path.is_file():
        return path.name
    if model.strip().lower() == "faceplugin":
        return settings.default_model_path().name
    return Path(model).name if model else ""


def is_openable(path: Path) -> bool:
    """A folder the results screen can show: a sweep's (sweep.csv, complete or partial) or a
    diagnose directory (layers.csv). Studies, searches and exports have run.json too, but
    no table this screen reads."""
    return (path / reports.SWEEP_CSV).is_file() or is_diagnostics_dir(path) or is_comparison_dir(path)


#: What `facequant compare` writes: the TUI shows both runs' TAR per distance side by side.
COMPARE_JSON, COMPARE_TAR_CSV = "compare.json", "compare_tar.csv"


def is_comparison_dir(path: Path) -> bool:
    return (path / COMPARE_JSON).is_file() and (path / COMPARE_TAR_CSV).is_file()


def load_comparison(path: Path) -> RunData:
    """A `facequant compare` directory as a sweep of its two runs: each backend twice, as
    "<backend> (A)" and "<backend> (B)", with TAR, its interval and FAR per distance; the cliff
    tab reads their distances from those rows (compare.csv holds the intervals of the shifts)."""
    summary = json.loads((path / COMPARE_JSON).read_text())
    table = reports.read_table(path / COMPARE_TAR_CSV)
    parts = []
    for tag in ("a", "b"):
        part = pd.DataFrame({"model": tag.upper(), "backend": [f"{b} ({tag.upper()})" for b in table["backend"]],
                             "distance_m": table["distance_m"]})
        for column in ("face_px", "tar", "tar_ci_low", "tar_ci_high", "far"):
            part[column] = table[f"{column}_{tag}"] if f"{column}_{tag}" in table else math.nan
        parts.append(part.dropna(subset=["tar"]))
    sweep = pd.concat(parts, ignore_index=True).reindex(columns=[*metrics.SWEEP_COLUMNS,
                                                                 *metrics.SWEEP_EXTRA_COLUMNS])
    sweep["model"] = "comparison"
    run = {"comparison": summary, "warnings": [f"not comparable: {p}" for p in summary.get("problems", [])]}
    return RunData(sweep=sweep, cliff=live_cliff(sweep), run=run, path=path, kind="compare")


def latest_run(runs_dir: Path) -> Path | None:
    """The most recently written results directory under runs_dir that holds a sweep config."""
    for path in list_runs(runs_dir):
        try:
            if run_config(json.loads((path / reports.RUN_JSON).read_text())):
                return path
        except (OSError, ValueError, AttributeError):
            continue
    return None


def list_runs(runs_dir: Path, limit: int = 50) -> list[Path]:
    """Results directories under runs_dir the TUI can open, newest first."""
    if not runs_dir.is_dir():
        return []
    found = [p.parent for p in runs_dir.glob(f"*/{reports.RUN_JSON}") if is_openable(p.parent)]
    found.sort(key=lambda p: (p / reports.RUN_JSON).stat().st_mtime, reverse=True)
    return found[:limit]


def initial_setup(config_path: Path | None, runs_dir: Path, prefill: Mapping[str, object] | None = None) -> SetupValues:
    """Prefill order: sweep options (a --config YAML with the same keys as `facequant sweep`,
    then `prefill`, the options given on the command line), else the latest run's config under
    runs_dir, else the defaults of `facequant sweep`."""
    prefill = dict(prefill or {})
    if config_path is not None or prefill:
        values = read_config(Path(config_path), sweep_options()) if config_path is not None else {}
        values.update(prefill)
        where = " and ".join(filter(None, [f"config {config_path}" if config_path is not None else "",
                                           "the command line" if prefill else ""]))
        out = values.get("out")
        return setup_from_config(sweep_config(values), where, str(out) if out else "")
    last = latest_run(runs_dir)
    if last is not None:
        try:
            run = json.loads((last / reports.RUN_JSON).read_text())
            return setup_from_config(config_from_dict(run_config(run)), f"last run {last}")
        except (OSError, ValueError, KeyError, TypeError, FacequantError):
            pass  # an unreadable old run must not stop the TUI from starting
    try:
        return setup_from_config(sweep_config({}), "defaults of facequant sweep")
    except FacequantError as exc:  # no ../shared: the user fills the form in
        return setup_from_config(SweepConfig(model="faceplugin", data=""), f"defaults ({exc})")


def config_from_setup(values: SetupValues, runs_dir: Path) -> tuple[SweepConfig, Path]:
    """The edited fields applied to the base config, each through its option's own converter
    (facequant.config.parse_value: what `facequant sweep` accepts, with the same reasons) and
    checked by the config as every sweep is. Raises FacequantError with a one-line reason."""
    from facequant.datasets.lfw import LFW_SPECS
    from facequant.models.sources import split_models

    model = values.model.strip()
    data = values.data.strip()
    if not model:
        raise FacequantError("model: give an ONNX path, 'faceplugin' or an insightface pack name")
    if not data:
        raise FacequantError("dataset: give a folder of identity folders, or 'lfw'")
    if len(split_models(model)) > 1:
        raise FacequantError("model: the TUI runs one model at a time; compare several with "
                             "`facequant sweep --model a.onnx,b.onnx`, then open its results here")
    if data not in LFW_SPECS:  # a clear error now, not after the model is loaded
        data = str(Path(data).expanduser())
        if not Path(data).is_dir():
            raise FacequantError(f"{data}: dataset folder not found")
    distances = values.distances.strip()
    face_px = distances.startswith(FACE_PX_PREFIX)
    form = {"model": model, "data": data, "camera": values.camera.strip(), "backends": values.backends.strip(),
            "face-px" if face_px else "distances": distances.removeprefix(FACE_PX_PREFIX) if face_px else distances}
    table = {o.name: o for o in sweep_options()}
    parsed = {table[name].dest: parse_value(table[name], text, name) for name, text in form.items() if text}
    config = params.build(SweepConfig, parsed, base=values.base)
    if not face_px:  # metres: the form's distances, or the default ones when it is empty
        config = dataclasses.replace(config, face_px=None, distances_m=parsed.get("distances") or DEFAULT_DISTANCES_M)
    out = Path(values.out.strip()) if values.out.strip() else default_out(runs_dir, model)
    return config, out


def default_out(runs_dir: Path, model: str) -> Path:
    """runs/<model file's stem>-<time>, as `facequant sweep` names it and the header names the
    model ('faceplugin' runs go to runs/fr_feature-<time>); a suffix if that second is taken."""
    from facequant.models.sources import results_stem

    return default_results_dir(results_stem(model), runs_dir)


# --------------------------------------------------------------------------- results


@dataclass
class RunData:
    """The tables one results screen shows: the sweep rows, the cliff table, cost, run.json."""

    sweep: pd.DataFrame
    cliff: pd.DataFrame
    cost: pd.DataFrame | None = None
    run: dict[str, object] = field(default_factory=dict)
    path: Path | None = None
    status: str = COMPLETE
    planned: int | None = None  # distances the run set out to do (live and partial runs)
    kind: str = "sweep"  # or "diagnostics" (a `facequant diagnose` directory), "compare" (`facequant compare`'s)
    identification: pd.DataFrame | None = None  # identification.csv, when the run measured 1:N

    @property
    def distances(self) -> list[float]:
        return sorted(pd.unique(self.sweep["distance_m"]).tolist()) if len(self.sweep) else []

    @property
    def backends(self) -> list[str]:
        return [str(b) for b in pd.unique(self.sweep["backend"])] if len(self.sweep) else []

    @property
    def threshold(self) -> float:
        return float(self.sweep["threshold"].iloc[0]) if len(self.sweep) else math.nan

    @property
    def thresholds(self) -> dict[str, float]:
        """Each model's threshold (several models: each set on its own fp32's impostors)."""
        if not len(self.sweep):
            return {}
        if "model" not in self.sweep:
            return {"": self.threshold}
        firsts = self.sweep.groupby("model", sort=False)["threshold"].first()
        return {str(m): float(t) for m, t in firsts.items()}

    @property
    def threshold_text(self) -> str:
        """"thr 0.420", or with several models each one's: "thr fr_feature 0.420, faceres 0.310"."""
        found = {m: t for m, t in self.thresholds.items() if math.isfinite(t)}
        if not found:
            return ""
        if len(found) == 1:
            return f"thr {next(iter(found.values())):.3f}"
        return "thr " + ", ".join(f"{Path(m).stem} {t:.3f}" for m, t in found.items())

    @property
    def model_name(self) -> str:
        """The model (sweep.csv's model column); several models' names joined with '+'."""
        if not len(self.sweep):
            return ""
        return "+".join(str(m) for m in pd.unique(self.sweep["model"])) if "model" in self.sweep else ""

    @property
    def warnings(self) -> list[str]:
        """run.json's warnings (the summary's): none while a sweep runs, they come at its end."""
        return reports.run_warnings(self.run)


def load_run(path: Path) -> RunData:
    """A results directory as it is on disk: nothing recomputed. Partial runs (cancelled in
    the TUI) carry "partial": true in run.json. A `facequant diagnose` directory (layers.csv,
    no sweep.csv) opens too, with only its layer diagnostics."""
    path = Path(path)
    if not (path / reports.SWEEP_CSV).is_file() and is_comparison_dir(path):
        return load_comparison(path)
    if not (path / reports.SWEEP_CSV).is_file() and is_diagnostics_dir(path):
        try:
            run = json.loads((path / reports.RUN_JSON).read_text())
        except (OSError, ValueError):
            run = {}
        return RunData(sweep=empty_sweep(), cliff=live_cliff(empty_sweep()), run=run if isinstance(run, dict) else {},
                       path=path, kind="diagnostics")
    loaded = reports.load_results(path)
    run = loaded["run"]
    assert isinstance(run, dict)
    # the run's protocol: TAR (verification) or TPIR (identification) under the same columns
    sweep, cliff_df, cost = loaded["rates"], loaded["cliff"], loaded["cost"]
    assert isinstance(sweep, pd.DataFrame) and isinstance(cliff_df, pd.DataFrame)
    planned = run.get("distances_planned")
    ident = loaded.get("identification")
    return RunData(sweep=sweep, cliff=cliff_df, cost=cost if isinstance(cost, pd.DataFrame) else None, run=run,
                   path=Path(path), status=PARTIAL if run.get("partial") else COMPLETE,
                   planned=len(planned) if isinstance(planned, list) else None,
                   identification=ident if isinstance(ident, pd.DataFrame) else None)


def _write_csv(table: pd.DataFrame, fh: TextIO) -> None:
    table.to_csv(fh, index=False)


def empty_sweep() -> pd.DataFrame:
    """The sweep table before the first distance: its columns, no rows."""
    return pd.DataFrame(columns=[*metrics.SWEEP_COLUMNS, *metrics.SWEEP_EXTRA_COLUMNS])


def live_cliff(sweep: pd.DataFrame) -> pd.DataFrame:
    """The cliff table of the rows finished so far (facequant.evaluate.cliff.cliff_table without
    comparisons: reliable and cliff distances, no pre-norm fit)."""
    if not len(sweep):
        return pd.DataFrame(columns=[*cliff.CLIFF_COLUMNS, *cliff.CLIFF_EXTRA_COLUMNS])
    return cliff.cliff_table(sweep, _NO_COMPARISONS, str(sweep["model"].iloc[0]))


def tar_band(tar: float, tar_close: float, reliable_tar: float = math.nan) -> str:
    """Which side of the cliff a TAR is on, by the cliff table's own rules: "reliable" at or
    above its reliable bar (cliff.csv's reliable_tar; without one, 90 % of the backend's own
    close-range TAR), "cliff" at or below 50 % of its own close-range TAR, "degraded" between
    ("" when unmeasured)."""
    if not math.isfinite(tar):
        return ""
    settings = cliff.CliffSettings()
    reference = tar_close if math.isfinite(tar_close) and tar_close > 0 else 1.0
    bar = reliable_tar if math.isfinite(reliable_tar) else settings.reliable_fraction * reference
    if tar >= bar:
        return "reliable"
    if tar > settings.cliff_fraction * reference:
        return "degraded"
    return "cliff"


def export_csvs(data: RunData) -> list[Path]:
    """`e`: the shown sweep and cliff tables as CSVs in the run's directory."""
    if data.path is None:
        raise FacequantError("this run has no directory yet")
    if data.kind == "diagnostics":
        raise FacequantError(f"{display_path(data.path)} is a diagnose directory: its layers.csv and summary.csv "
                             "are already there")
    if data.kind == "compare":
        raise FacequantError(f"{display_path(data.path)} is a comparison: compare.csv and compare_tar.csv are "
                             "already there")
    if data.status == RUNNING:
        raise FacequantError("the sweep is still running: export when it finishes, or cancel it (c) first")
    data.path.mkdir(parents=True, exist_ok=True)
    written = [data.path / reports.SWEEP_CSV, data.path / reports.CLIFF_CSV]
    for table, path in zip((data.sweep, data.cliff), written, strict=True):
        output.write_file(path, functools.partial(_write_csv, table))
    output.add_to_marker(data.path, [p.name for p in written])  # a later --force may still replace the run
    return written


def display_path(path: Path) -> str:
    """A path as short as it can be said: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive (Windows)
        return str(path)


# --------------------------------------------------------------------------- running


@dataclass
class RunOutcome:
    status: str  # COMPLETE, PARTIAL or FAILED
    data: RunData | None  # None: failed, or cancelled before any distance finished
    message: str


def run_cancellable(
    config: SweepConfig,
    out: Path,
    cancel: threading.Event,
    progress: Callable[[str, int, int], None] | None = None,
    on_rows: Callable[[RunData], None] | None = None,
) -> RunOutcome:
    """facequant.api.sweep with its cancel event: the results directory `facequant sweep`
    writes, complete or (cancelled after some distance) partial, written by the same writer;
    nothing when cancelled before the first distance finished."""
    target = api.Output(out)
    target.checked(config)  # before any work, as the CLI does: a bad folder is the caller's error

    def on_distance(_distance: float, rows: pd.DataFrame) -> None:
        if on_rows:
            on_rows(RunData(sweep=rows, cliff=live_cliff(rows), path=out, status=RUNNING,
                            run={"config": config.to_dict()}))

    try:
        result = api.sweep(config, target, progress=progress, on_distance=on_distance, cancel=cancel)
    except Cancelled:
        return RunOutcome(PARTIAL, None, "cancelled before any distance finished: nothing to save")
    except FacequantError as exc:
        return RunOutcome(FAILED, None, str(exc))
    done = load_run(out)  # what is on disk is what the screen shows and `e` exports
    if result.partial:
        return RunOutcome(PARTIAL, done, f"{result.run.get('partial_reason')}; saved to {display_path(out)}")
    return RunOutcome(COMPLETE, done, f"complete: saved to {display_path(out)}")

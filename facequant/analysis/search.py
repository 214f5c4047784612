"""Mixed-precision search: which layers to promote to 16 bit, measured rather than guessed.

1. predict: rank layers by the quantization damage each introduces (diagnostics: the SNR the
   signal loses across that layer at far range);
2. confirm: build BASE+16bit:<layer> for the top candidates and measure how much closer each
   brings far-range probes to fp32;
3. greedy: promote the confirmed layers best-first, re-running the sweep after each, until the
   reliable distance is within a tolerance of fp32 (or a target TAR holds at a target distance),
   under a budget of promoted layers;
4. re-measure: the final recipe runs as a real backend through the sweep on an independent draw
   (another seed: calibration subset and sensor noise), with its cost.

`method` "accuracy-control" asks NNCF's quantize_with_accuracy_control instead (which layers to
keep in float, judged by facequant's far-range metric: facequant.analysis.accuracy_control),
"both" runs the two; either way the chosen recipes are re-measured in one sweep side by side
(side_by_side.csv), with NNCF's float layers also on the ONNX Runtime base.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from facequant.analysis.accuracy_control import (
    SEARCH,
    SEARCH_METHODS,
    AccuracyControlResult,
    AccuracyControlSettings,
    ort_counterpart,
    run_accuracy_control,
)
from facequant.backends.quantize.layers import graph_layers
from facequant.backends.quantize.recipes import RECIPES
from facequant.backends.registry import BackendFactory
from facequant.errors import FacequantError
from facequant.evaluate.paired import paired_tar_gain, pooled_tar_gain
from facequant.params import nested, param, validate
from facequant.ranges import COUNT_RANGE, DISTANCE_RANGE, SHARE_RANGE, Range
from facequant.results.directory import plot_paired_gain, write_results
from facequant.results.jsonfile import write_json, write_run_json
from facequant.results.output import inputs_of, staged_output
from facequant.sweep.config import SweepConfig
from facequant.sweep.engine import run_sweep
from facequant.sweep.probes import ProbeSet, prepare_probes
from facequant.sweep.result import SweepResult
from facequant.versions import versions

T = TypeVar("T")

SEARCH_JSON = "search.json"
RUN_JSON = "run.json"
CANDIDATES_CSV = "candidates.csv"
STEPS_CSV = "steps.csv"
PAIRED_CSV = "paired.csv"
PAIRED_PNG = "paired_gain.png"
SIDE_BY_SIDE_CSV = "side_by_side.csv"
MAX_REFINE_POINTS = 16


@dataclass(frozen=True)
class SearchSettings:
    base: str = param("int8-pt", help="the INT8 recipe to improve", group=SEARCH)
    # reliable distance within this of fp32's counts as recovered
    tolerance_m: float = param(0.25, help="reliable distance within this of fp32, metres", group=SEARCH,
                               option="tolerance", range=Range(0.0, 100.0, low_open=True))
    target_tar: float | None = param(None, help="goal instead: this TAR ...", group=SEARCH,  # alternative goal
                                     range=SHARE_RANGE)
    target_distance_m: float | None = param(None, help="... at this distance (metres)", group=SEARCH,
                                            option="target-distance", range=DISTANCE_RANGE)
    budget: int = param(6, help="most layers promoted to 16 bit", group=SEARCH, range=COUNT_RANGE, integer=True)
    # layers confirmed by re-running, from the top of the damage ranking
    candidates: int = param(8, help="layers confirmed by re-running", group=SEARCH, range=COUNT_RANGE, integer=True)
    confirm_distances: tuple[float, ...] | None = None  # default: the three farthest with fp32 TAR > 0
    refine: bool = param(True, help="keep the distance grid as given (default: add points every --tolerance metres "
                         "where the base's and fp32's reliable distances are decided)", group=SEARCH,
                         option="no-refine", flag=True, negate=True)
    method: str = param("own", help="own (this search: layers to 16 bit), accuracy-control (NNCF's "
                        "quantize_with_accuracy_control: layers to float) or both, re-measured side by side",
                        group=SEARCH, choices=SEARCH_METHODS)
    # None: the defaults, when the method asks; built from the options only when the method runs NNCF
    accuracy_control: AccuracyControlSettings | None = nested(
        AccuracyControlSettings, None, when=lambda values: values.get("method", "own") != "own")
    ac_distance_m: float | None = param(None, help="where accuracy control validates, metres (default: fp32's "
                                        "reliable distance)", group=SEARCH, option="ac-distance",
                                        range=DISTANCE_RANGE)

    def __post_init__(self) -> None:  # the CLI checks these where parsed; API callers too
        validate(self, "search")

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @property
    def ac(self) -> AccuracyControlSettings:
        return self.accuracy_control or AccuracyControlSettings()


@dataclass
class SearchResult:
    settings: SearchSettings
    recipe: str
    layers: list[str]
    goal_met: bool
    damage: pd.DataFrame  # layer, depth, damage_db (predicted sensitivity)
    candidates: pd.DataFrame  # layer, damage_db, cos_far, gain (confirmed sensitivity)
    steps: pd.DataFrame  # greedy steps: layers, reliable/cliff distance as searched
    final: SweepResult  # fp32, base, recipe re-measured on another seed
    run: dict[str, object] = field(default_factory=dict)
    accuracy_control: AccuracyControlResult | None = None

    @property
    def base(self) -> str:
        return self.settings.ac.base if self.settings.method == "accuracy-control" else self.settings.base


def _cliff_row(result: SweepResult, backend: str) -> pd.Series:
    return result.cliff.set_index("backend").loc[backend]


def _goal(result: SweepResult, backend: str, s: SearchSettings) -> bool:
    row, ref = _cliff_row(result, backend), _cliff_row(result, "fp32")
    if s.target_tar is not None and s.target_distance_m is not None:
        sweep = result.sweep[result.sweep.backend == backend]
        tar = np.interp(s.target_distance_m, sweep.distance_m, sweep.tar)
        return bool(tar >= s.target_tar)
    return bool(row.reliable_distance_m >= ref.reliable_distance_m - s.tolerance_m)


def refined_distances(result: SweepResult, base: str, step: float) -> tuple[float, ...]:
    """The sweep's distances plus points every `step` metres over the stretch where the base's
    and fp32's reliable distances are decided: from the base's last reliable distance to the
    grid point after fp32's. A reliable distance is read between two grid points on a straight
    line, so on a coarse grid (the default one is 1.3 m apart at 5 m) the curve's shape between
    them, where a tolerance of 0.25 m lies, is not measured."""
    d = np.array(sorted(result.distances_m), dtype=float)
    cliff = result.cliff.set_index("backend")
    lo = float(cliff.loc[base, "reliable_distance_m"])
    if lo == np.inf:  # reliable over the whole sweep: nothing to refine
        return tuple(d.tolist())
    lo = d[0] if np.isnan(lo) else float(d[d <= lo].max(initial=d[0]))  # the grid point before the crossing
    ref = float(cliff.loc["fp32", "reliable_distance_m"])
    after = d[d > max(lo, ref if np.isfinite(ref) else lo)]
    hi = after[0] if after.size else lo
    step = max(float(step), 0.05)
    extra = [x for x in np.arange(lo + step, hi - step / 2, step) if np.min(np.abs(d - x)) > step / 2]
    return tuple(sorted({*d.tolist(), *(round(float(x), 3) for x in extra[:MAX_REFINE_POINTS])}))


def layer_damage(layers: pd.DataFrame, distances: Sequence[float]) -> pd.DataFrame:
    """Per weighted layer, the SNR (dB) the signal loses across it, averaged over `distances`:
    snr(previous reported tensor) - snr(this layer's output). A layer that adds much noise to
    a clean input scores high; one that merely carries earlier noise scores near zero."""
    need = {"distance_m", "layer", "depth", "snr_db", "op_type"}
    if not need <= set(layers.columns):
        raise FacequantError(f"layer table lacks columns {sorted(need - set(layers.columns))}")
    rows = layers[layers.distance_m.isin(distances)].sort_values(["distance_m", "depth"])
    out = []
    for _, per_d in rows.groupby("distance_m"):
        snr = per_d.snr_db.to_numpy(dtype=float)
        prev = np.concatenate([[snr[0] if len(snr) else np.nan], snr[:-1]])
        out.append(per_d.assign(damage_db=np.minimum(prev, 80.0) - np.minimum(snr, 80.0)))
    damage = pd.concat(out).groupby(["layer", "op_type"], as_index=False).agg(
        depth=("depth", "first"), damage_db=("damage_db", "mean"))
    return damage.sort_values("damage_db", ascending=False, ignore_index=True)


def _cos_to(ref: np.ndarray, emb: np.ndarray) -> float:
    return float(np.mean(np.sum(ref * emb, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(emb, axis=1))))


def confirm_candidates(ps: ProbeSet, factory: BackendFactory, base: str, layers: Sequence[str],
                       distances: Sequence[float], progress: Callable[[str, int, int], None] | None = None) -> pd.DataFrame:
    """Measured sensitivity: far-range cosine to fp32 of BASE+16bit:nodes=<layer>, per layer."""
    index = [ps.distances.index(d) for d in distances]
    crops = np.concatenate([ps.probe_crops(i)[0] for i in index])
    fp32 = factory.make("fp32").embed(crops)
    base_cos = _cos_to(fp32, factory.make(base).embed(crops))
    rows = []
    for i, layer in enumerate(layers):
        cos = _cos_to(fp32, factory.make(f"{base}+16bit:nodes={layer}").embed(crops))
        rows.append({"layer": layer, "cos_far": cos, "gain": cos - base_cos, "base_cos_far": base_cos})
        if progress:
            progress("confirm", i + 1, len(layers))
    return pd.DataFrame(rows).sort_values("gain", ascending=False, ignore_index=True)


def search_precision(
    config: SweepConfig,
    settings: SearchSettings,
    layers_table: Callable[[ProbeSet, str, Sequence[float]], pd.DataFrame] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SearchResult:
    """Run the four steps (and / or NNCF's accuracy control, by settings.method).
    `layers_table(ps, backend, distances)` gives diagnostics' per-layer rows (distance_m, layer,
    op_type, depth, snr_db) for the base backend."""
    own = settings.method != "accuracy-control"
    base_ok = settings.base.split("+")[0] in RECIPES and RECIPES[settings.base.split("+")[0]].needs_calibration
    if own and not base_ok:
        raise FacequantError(f"search base '{settings.base}': choose a static recipe (int8-pt, int8-pc, int8-npu, ...)")
    if settings.budget < 1:
        raise FacequantError("search budget must be at least one layer")
    time_final = config.measure_cost  # CPU latency only for the re-measured recipe (and only if asked)
    config = dataclasses.replace(config, backends=("fp32", settings.base if own else settings.ac.base),
                                 measure_cost=False)
    start = _stage(progress, "baseline sweep", lambda: run_sweep(config))
    run: dict[str, object] = {}
    if own and settings.refine and settings.target_tar is None and config.face_px is None:
        grid = refined_distances(start, settings.base, settings.tolerance_m)
        if len(grid) > len(start.distances_m):
            run["refined_distances_m"] = list(grid)
            config = dataclasses.replace(config, distances_m=grid)
            start = _stage(progress, f"refined sweep ({len(grid)} distances)", lambda: run_sweep(config))
    ac = None
    if settings.method != "own":
        ps_ac = prepare_probes(config)
        distance = settings.ac_distance_m or _fp32_reach(start)
        ac = _stage(progress, "accuracy control", lambda: run_accuracy_control(ps_ac, settings.ac, distance,
                                                                                 start.threshold))
    extra = _ac_backends(ac, settings.base if base_ok else None)

    def remeasure(*backends: str) -> SweepResult:
        """Re-measure on an independent draw: another calibration subset and noise seed."""
        names = tuple(dict.fromkeys(("fp32", *backends, *extra)))
        return _stage(progress, "re-measure (seed + 1)", lambda: run_sweep(dataclasses.replace(
            config, backends=names, seed=config.seed + 1, measure_cost=time_final)))

    if not own:
        assert ac is not None
        met = ac.metric["float"] - ac.metric["int8_accuracy_control"] <= settings.ac.max_drop
        return SearchResult(settings, ac.recipe, ac.layers, met, pd.DataFrame(), pd.DataFrame(),
                            pd.DataFrame([_step(start, settings.ac.base, [])]), remeasure(), run, ac)
    if _goal(start, settings.base, settings):
        steps = pd.DataFrame([_step(start, settings.base, [])])
        return SearchResult(settings, settings.base, [], True, pd.DataFrame(), pd.DataFrame(), steps,
                            remeasure(settings.base),
                            {**run, "note": f"{settings.base} already meets the goal: nothing to promote"}, ac)

    ps = prepare_probes(config)
    fp32_rows = start.sweep[start.sweep.backend == "fp32"]
    far = settings.confirm_distances or tuple(fp32_rows[fp32_rows.tar > 0].distance_m.sort_values().iloc[-3:])
    weighted = set(graph_layers(ps.normalized).weighted)
    table = _stage(progress, "diagnose", lambda: (layers_table or diagnostics_layers)(ps, settings.base, far))
    damage = layer_damage(table, far)
    damage = damage[damage.layer.isin(weighted)].reset_index(drop=True)
    factory = BackendFactory(ps.normalized, ps.model_sha, ps.spec, ps.calibration_tensors,
                             config.calibration_method, config.batch_size)
    top = damage.layer.head(settings.candidates).tolist()
    candidates = confirm_candidates(ps, factory, settings.base, top, far, progress)
    candidates = candidates.merge(damage[["layer", "damage_db"]], on="layer")

    chosen: list[str] = []
    steps = [_step(start, settings.base, [])]
    recipe, met = settings.base, False
    for layer in candidates[candidates.gain > 0].layer:
        if len(chosen) >= settings.budget:
            break
        chosen.append(layer)
        recipe = f"{settings.base}+16bit:nodes={';'.join(chosen)}"
        result = run_sweep(dataclasses.replace(config, backends=("fp32", recipe)))
        steps.append(_step(result, recipe, chosen))
        if progress:
            progress("greedy", len(chosen), settings.budget)
        if _goal(result, recipe, settings):
            met = True
            break
    final = remeasure(settings.base, recipe)
    return SearchResult(settings, recipe, chosen, met, damage, candidates, pd.DataFrame(steps), final, run, ac)


def _fp32_reach(result: SweepResult) -> float:
    """Where accuracy control validates by default: fp32's reliable distance (the far edge of
    what the float model holds), else the farthest distance where fp32 still matches."""
    reach = float(_cliff_row(result, "fp32").reliable_distance_m)
    if np.isfinite(reach):
        return reach
    fp32 = result.sweep[(result.sweep.backend == "fp32") & (result.sweep.tar > 0)]
    return float(fp32.distance_m.max()) if len(fp32) else float(min(result.distances_m))


def _ac_backends(ac: AccuracyControlResult | None, ort_base: str | None) -> tuple[str, ...]:
    """What the re-measure adds for accuracy control: its base, its recipe, and the same float
    layers on the ONNX Runtime base (NNCF's choice of layers apart from NNCF's quantizer)."""
    if ac is None:
        return ()
    counterpart = ort_counterpart(ort_base, ac) if ort_base else None
    return tuple(dict.fromkeys([ac.settings.base, ac.recipe, *([ort_base, counterpart] if ort_base and counterpart
                                                                else [])]))


def _stage(progress: Callable[[str, int, int], None] | None, name: str, work: Callable[[], T]) -> T:
    """One long step reported as a task of one unit: started, then done."""
    if progress:
        progress(name, 0, 1)
    out = work()
    if progress:
        progress(name, 1, 1)
    return out


def _step(result: SweepResult, backend: str, layers: list[str]) -> dict[str, object]:
    row = _cliff_row(result, backend)
    return {"layers": ";".join(layers), "n_layers": len(layers), "recipe": backend,
            "reliable_distance_m": row.reliable_distance_m, "cliff_distance_m": row.cliff_distance_m,
            "fp32_reliable_distance_m": _cliff_row(result, "fp32").reliable_distance_m}


def diagnostics_layers(ps: ProbeSet, backend: str, distances: Sequence[float]) -> pd.DataFrame:
    """diagnose's layers.csv rows for one backend at `distances` (the predicted sensitivity)."""
    from facequant.analysis.diagnose.run import DiagnoseConfig, run_diagnose

    sweep = dataclasses.replace(ps.config, backends=(backend,), distances_m=tuple(distances), face_px=None)
    return run_diagnose(DiagnoseConfig(sweep=sweep)).layers


def contested_distances(result: SweepResult, base: str) -> list[float]:
    """Where the comparison matters: from the first distance the base fails its reliable bar
    to fp32's cliff (the farthest swept distance when fp32 never falls off)."""
    cliff = result.cliff.set_index("backend")
    d = np.array(sorted(result.distances_m), dtype=float)
    start = float(cliff.loc[base, "reliable_distance_m"])
    end = float(cliff.loc["fp32", "cliff_distance_m"])
    start = -np.inf if not np.isfinite(start) else start
    end = d[-1] if not np.isfinite(end) else end
    return [float(x) for x in d if start < x <= end]


def paired_gain(result: SearchResult) -> pd.DataFrame:
    """Per distance, re-measured TAR of the recipe minus the base's on the same comparisons."""
    final = result.final
    return paired_tar_gain(final.genuine, final.threshold, result.base, result.recipe, seed=final.config.seed)


def side_by_side(result: SearchResult) -> pd.DataFrame:
    """The searches' recipes as re-measured in one sweep: per recipe, the distance it wins back
    over its own base, per layer changed, and its paired TAR gain over that base (pooled over
    the base's contested distances, bootstrap over identities)."""
    final, settings, ac = result.final, result.settings, result.accuracy_control
    entries = []
    if settings.method != "accuracy-control":
        entries.append(("facequant search", result.recipe, settings.base, result.layers, "16bit"))
    if ac is not None:
        entries.append(("NNCF accuracy control", ac.recipe, ac.settings.base, ac.layers, "float"))
        counterpart = ort_counterpart(settings.base, ac)
        if counterpart is not None and counterpart in set(final.cliff.backend):
            entries.append(("NNCF's layers on ONNX Runtime", counterpart, settings.base, ac.layers, "float"))
    cliff = final.cliff.set_index("backend")
    rows = []
    for method, recipe, base, layers, kind in entries:
        gain = float(cliff.loc[recipe, "reliable_distance_m"] - cliff.loc[base, "reliable_distance_m"])
        distances = contested_distances(final, base)
        tar: tuple[float, float, float] = (np.nan, np.nan, np.nan)
        if recipe != base and distances:
            tar = pooled_tar_gain(final.genuine, final.threshold, base, recipe, distances, seed=final.config.seed)
        rows.append({"method": method, "recipe": recipe, "base": base, "layers_changed": len(layers), "changed_to": kind,
                     "reliable_distance_m": cliff.loc[recipe, "reliable_distance_m"],
                     "base_reliable_distance_m": cliff.loc[base, "reliable_distance_m"],
                     "fp32_reliable_distance_m": cliff.loc["fp32", "reliable_distance_m"],
                     "reliable_gain_m": gain, "gain_per_layer_m": gain / len(layers) if layers else np.nan,
                     "cliff_distance_m": cliff.loc[recipe, "cliff_distance_m"],
                     "base_cliff_distance_m": cliff.loc[base, "cliff_distance_m"],
                     "tar_gain_vs_base": tar[0], "tar_gain_ci_low": tar[1], "tar_gain_ci_high": tar[2],
                     "contested_m": ";".join(f"{d:g}" for d in distances)})
    return pd.DataFrame(rows)


def search_summary(result: SearchResult) -> dict[str, object]:
    final = result.final
    cliff = final.cliff.set_index("backend")
    cost = final.cost.set_index("backend") if final.cost is not None else None
    searched = result.steps.iloc[-1]

    def cost_of(backend: str) -> dict[str, object]:
        if cost is None or backend not in cost.index:
            return {}
        c = cost.loc[backend]
        return {k: (c[k].item() if hasattr(c[k], "item") else c[k]) for k in
                ("file_bytes", "layers_8bit", "layers_16bit", "layers_float", "cpu_latency_p50_ms", "latency_vs_fp32")}

    return {
        "recipe": result.recipe, "layers": result.layers, "goal_met_in_search": result.goal_met,
        "predicted": {"reliable_distance_m": searched.reliable_distance_m, "cliff_distance_m": searched.cliff_distance_m,
                      "seed": final.config.seed - 1},
        "remeasured": {b: {"reliable_distance_m": cliff.loc[b, "reliable_distance_m"],
                           "cliff_distance_m": cliff.loc[b, "cliff_distance_m"]} for b in cliff.index},
        "remeasured_seed": final.config.seed,
        "recipe_vs_base": _pooled(result, result.base),
        "recipe_vs_fp32": _pooled(result, "fp32"),
        "cost": {b: cost_of(b) for b in cliff.index},
        "settings": result.settings.to_dict(),
        **({"accuracy_control": result.accuracy_control.to_dict()} if result.accuracy_control else {}),
        **({"side_by_side": side_by_side(result).to_dict("records")} if result.accuracy_control else {}),
    }


def _pooled(result: SearchResult, against: str) -> dict[str, object]:
    """Re-measured TAR gain of the recipe over `against`, pooled over the contested distances."""
    final = result.final
    distances = contested_distances(final, result.base)
    if result.recipe == against or not distances:
        return {"distances_m": distances, "tar_gain": 0.0 if distances else None, "ci95": None}
    gain, low, high = pooled_tar_gain(final.genuine, final.threshold, against, result.recipe, distances,
                                      seed=final.config.seed)
    return {"distances_m": distances, "tar_gain": gain, "ci95": [low, high],
            "interval": "paired, bootstrap over identities"}


def write_search(result: SearchResult, out: Path, force: bool = False, run: dict[str, object] | None = None) -> Path:
    """Write the search into `out` atomically: a failure midway leaves any old results intact.
    run.json holds `run` (the command's record: config, settings) beside search.json's summary."""
    out = Path(out)
    with staged_output(out, force, inputs_of(result.final.config)) as staging:
        write_results(result.final, staging / "final")
        result.damage.to_csv(staging / "damage.csv", index=False)
        result.candidates.to_csv(staging / CANDIDATES_CSV, index=False)
        result.steps.to_csv(staging / STEPS_CSV, index=False)
        if result.accuracy_control is not None:
            side_by_side(result).to_csv(staging / SIDE_BY_SIDE_CSV, index=False)
        if result.recipe != result.base:
            paired = paired_gain(result)
            paired.to_csv(staging / PAIRED_CSV, index=False)
            plot_paired_gain(paired, result.base, result.recipe, contested_distances(result.final, result.base),
                             staging / PAIRED_PNG)
        summary = {**search_summary(result), **result.run, "versions": versions()}
        write_json(summary, staging / SEARCH_JSON, indent=1)
        record = {**(run or {}), "settings": result.settings.to_dict(), "versions": versions(),
                  "summary": SEARCH_JSON, "final": "final/ (the re-measured sweep)"}
        write_run_json(record, staging / RUN_JSON)
    return out

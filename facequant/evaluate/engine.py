"""The distance sweep: photos -> enrolment and simulated probes per distance -> embeddings per
backend -> scores folded into the tidy tables every output reads.

Memory stays linear in the photo count: crops stream from the crop cache a chunk at a time,
a distance's probe embeddings are dropped once scored, and comparisons are never rows
(facequant.evaluate.scoring) except the genuine ones, which grow with photos per person.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facequant import __version__
from facequant.backends import cost
from facequant.backends.base import Backend
from facequant.backends.cpu import cpu_record
from facequant.backends.registry import BackendFactory
from facequant.errors import FacequantError
from facequant.evaluate import cliff, honesty, identification, metrics, scoring
from facequant.evaluate.comparison_rows import ComparisonRows
from facequant.evaluate.config import Progress, SweepConfig
from facequant.evaluate.degenerate import DEFAULT_DEGENERATE
from facequant.evaluate.embed import Call, Embedder
from facequant.evaluate.embedding_cache import EmbeddingCache
from facequant.evaluate.executors import Executor, LocalExecutor
from facequant.evaluate.probes import ProbeSet, prepare_probes
from facequant.faces.pipeline import FacePipeline
from facequant.models.files import file_sha256
from facequant.models.spec import ModelSpec
from facequant.simulate.camera import CameraProfile

#: Columns of the genuine comparison rows (genuine.parquet; cliff's pre-norm fit reads them).
GENUINE_COLUMNS = ("backend", "distance_m", "face_px", "probe", "gallery", "genuine", "cosine", "probe_prenorm")


@dataclass
class SweepResult:
    config: SweepConfig
    model_name: str
    spec: ModelSpec
    camera: CameraProfile
    distances_m: tuple[float, ...]
    threshold: float
    probes: pd.DataFrame  # one row per backend x distance x photo
    genuine: pd.DataFrame  # one row per genuine comparison (GENUINE_COLUMNS)
    sweep: pd.DataFrame  # verification: one row per backend x distance
    cliff: pd.DataFrame
    run: dict[str, object]
    cost: pd.DataFrame | None = None
    identification: pd.DataFrame | None = None  # one row per backend x distance, when the data allow
    comparisons_file: Path | None = None  # every comparison, with --save-comparisons (a temporary file)

    @property
    def rates(self) -> pd.DataFrame:
        """The table the run's protocol reads: the sweep, or the sweep with identification's rates."""
        if self.config.protocol == "identification" and self.identification is not None:
            return identification.as_rates_view(self.sweep, self.identification)
        return self.sweep


def versions() -> dict[str, str]:
    import cv2
    import onnx
    import onnxruntime
    import sklearn

    out = {"facequant": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "pandas": pd.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
           "scikit-learn": sklearn.__version__, "opencv": cv2.__version__, "platform": platform.platform()}
    from importlib.metadata import version

    for package in ("insightface", "openvino", "nncf"):  # without importing them: they are slow to import
        try:
            out[package] = version(package)
        except Exception:  # noqa: BLE001 - a version we cannot read (not installed) is just not recorded
            pass
    return out


@dataclass
class _Gallery:
    unit: np.ndarray
    prenorm: np.ndarray


@dataclass
class _State:
    """What accumulates over the distances."""

    threshold: float | None
    ident_threshold: float | None
    probe_frames: list[pd.DataFrame] = field(default_factory=list)
    genuine: list[pd.DataFrame] = field(default_factory=list)
    rows: list[dict[str, object]] = field(default_factory=list)
    searches: dict[tuple[str, float], identification.Searches] = field(default_factory=dict)
    close_top: scoring.TopK | None = None
    close_impostors: int = 0


def check_executor(kind: str) -> None:
    """Refuse, before any work, an executor this installation cannot run."""
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError as exc:
            raise FacequantError("--executor ray: Ray is not installed (pip install -e '.[ray]')") from exc
    elif kind != "local":
        raise FacequantError(f"executor '{kind}': choose local or ray")


def make_executor(kind: str, backends: dict[str, Backend], address: str | None = None) -> Executor:
    check_executor(kind)
    if kind == "ray":
        from facequant.evaluate.ray_executor import RayExecutor

        return RayExecutor(backends, address)
    return LocalExecutor(backends)


def checked(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Raw embeddings per backend, refused when any is NaN or infinite (a broken quantization
    or model): nothing is written from such a run."""
    for backend, emb in raw.items():
        bad = ~np.all(np.isfinite(emb), axis=1)
        if bad.any():
            raise FacequantError(f"backend {backend}: {int(bad.sum())} of {len(emb)} embeddings are NaN or infinite "
                                 "(a broken quantization or model); no results were written")
    return raw


def _impostor_count(ps: ProbeSet, simulated: np.ndarray) -> int:
    """How many impostor comparisons a distance will make, before scoring it."""
    if ps.pairs is not None:
        probe, _, genuine = ps.pairs
        return int(np.sum(~genuine & simulated[probe]))
    counts = np.bincount(ps.identity, minlength=len(ps.identity_names))
    return int(np.sum(len(ps.identity) - counts[ps.identity[simulated]]))


def _score(ps: ProbeSet, unit: np.ndarray, rows: np.ndarray, gallery: np.ndarray, threshold: float | None,
           keep_top: int, sink: scoring.BlockSink | None) -> scoring.CellScores:
    if ps.pairs is not None:
        probe, enrolled, genuine = ps.pairs
        by_row = {int(r): unit[i] for i, r in enumerate(rows.tolist())}
        return scoring.score_listed_pairs(by_row, gallery, probe, enrolled, genuine, threshold, keep_top, sink)
    return scoring.score_all_pairs(unit, rows, gallery, ps.identity, ps.config.genuine_mode == "same-photo",
                                   threshold, keep_top, sink)


def _set_threshold(state: _State, config: SweepConfig, cell: scoring.CellScores) -> None:
    """The verification threshold from fp32's close-range impostors (the first cell scored)."""
    assert cell.top is not None
    top, _ = cell.top.sorted_desc()
    state.threshold = scoring.threshold_from_top(top, cell.impostors.n, config.target_far)
    cell.impostors.accepted = int(np.count_nonzero(top >= state.threshold))
    state.close_top, state.close_impostors = cell.top, cell.impostors.n


def run_sweep(
    config: SweepConfig,
    progress: Progress | None = None,
    on_distance: Callable[[float, pd.DataFrame], None] | None = None,
    pipeline: FacePipeline | None = None,
) -> SweepResult:
    """Run the whole sweep. on_distance(distance, sweep_rows_so_far) fires as each distance finishes."""
    profile = cost.load_device_profile(config.device_profile) if config.device_profile else None  # fail early
    check_executor(config.executor)
    ps = prepare_probes(config, progress, pipeline)
    timings = ps.timings
    t0 = time.perf_counter()
    backends = _build_backends(ps, progress)
    timings["backends_s"] = time.perf_counter() - t0
    cache = EmbeddingCache.default(config.embedding_cache)
    executor = make_executor(config.executor, backends, config.ray_address)
    writer = ComparisonRows(ps.keys) if config.save_comparisons else None
    embedder = Embedder(ps, backends, executor, cache)
    try:
        result = _sweep(ps, backends, embedder, writer, profile, progress, on_distance)
        result.run["execution"] = {**executor.describe(), "embedding_cache": cache.stats(),
                                   "chunk_size": config.chunk_size}
        if writer is not None:
            result.comparisons_file = writer.close()
            result.run["comparison_rows"] = writer.rows
        return result
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        embedder.close()
        executor.close()
        cache.close()


def _build_backends(ps: ProbeSet, progress: Progress | None) -> dict[str, Backend]:
    calibration: dict[str, np.ndarray] = {}

    def tensors() -> np.ndarray:
        if "x" not in calibration:
            calibration["x"] = ps.calibration_tensors()
        return calibration["x"]

    config = ps.config
    factory = BackendFactory(ps.normalized, ps.model_sha, ps.spec, tensors, config.calibration_method,
                             config.batch_size)
    backends: dict[str, Backend] = {}
    for i, name in enumerate(config.backends):
        backends[name] = factory.make(name)
        if progress:
            progress("calibration", i + 1, len(config.backends))
    return backends


def _sweep(ps: ProbeSet, backends: dict[str, Backend], embedder: Embedder, writer: ComparisonRows | None,
           profile: dict[str, object] | None, progress: Progress | None,
           on_distance: Callable[[float, pd.DataFrame], None] | None) -> SweepResult:
    config, timings = ps.config, ps.timings
    model_name = Path(ps.model_path).name
    t0 = time.perf_counter()
    everyone = np.arange(len(ps.images))
    enrolling = [n for n in backends if config.gallery != "fp32" or n == "fp32"]
    def call(k: int) -> Call | None:
        """The embed call of distance k (None past the last), for preparing it ahead."""
        if k >= len(ps.distances):
            return None
        return np.flatnonzero(ps.simulable(ps.distances[k])), ps.distances[k], list(backends)

    enrolled = checked(embedder.embed(everyone, None, enrolling, then=call(0)))
    galleries = {n: _Gallery(*scoring.unit_rows(raw, honesty.ZERO_NORM)) for n, raw in enrolled.items()}
    if config.gallery == "fp32":  # a device need not bring back enrolment embeddings then
        galleries = {n: galleries["fp32"] for n in backends}
    del enrolled
    if progress:
        progress("gallery", 1, 1)
    dims = {n: int(g.unit.shape[1]) for n, g in galleries.items()}

    duplicates = honesty.find_duplicates(ps.keys, [img.identity for img in ps.images],
                                         [file_sha256(img.path) for img in ps.images], galleries["fp32"].unit)
    duplicate_pairs = honesty.duplicate_comparisons(duplicates, ps.keys)
    split = identification.split_identities(ps.identity, ps.identity_names, config.seed, config.nonmated_fraction)
    state = _State(threshold=config.threshold, ident_threshold=config.threshold)
    for k, distance in enumerate(ps.distances):
        _one_distance(ps, k, distance, backends, galleries, embedder, writer, split, duplicate_pairs, state,
                      call(k + 1))
        if on_distance:
            on_distance(distance, metrics.table_from_rows(state.rows))
        if progress:
            progress("distances", k + 1, len(ps.distances))
    timings["sweep_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()  # after the sweep, so timing does not compete with it
    costs = cost.cost_table([cost.backend_cost(n, b.model_path, ps.spec, profile, config.measure_cost, b.batch_runner,
                                               str(b.describe().get("runtime", "")), config.batch_size)
                             for n, b in backends.items() if b.model_path is not None])
    timings["cost_s"] = time.perf_counter() - t0
    assert state.threshold is not None
    probes = pd.concat(state.probe_frames, ignore_index=True)
    genuine = (pd.concat(state.genuine, ignore_index=True) if state.genuine
               else pd.DataFrame(columns=list(GENUINE_COLUMNS)))
    sweep = metrics.table_from_rows(state.rows)
    ident_table = _identification_table(model_name, ps, state) if split is not None else None
    result = SweepResult(config, model_name, ps.spec, ps.camera, ps.distances, state.threshold, probes, genuine,
                         sweep, sweep.iloc[0:0], {}, costs, ident_table)
    matches = _matches(result, state)
    result.cliff = cliff.cliff_table(result.rates, matches, model_name, probes=probes, embedding_dims=dims)
    n_embeddings = len(ps.images) * (len(ps.distances) + 1) * len(backends)
    timings["embeddings_per_s"] = n_embeddings / max(timings["sweep_s"], 1e-9)
    timings["embeddings_computed"] = embedder.computed
    result.run = _run_json(ps, backends, result, profile, split, duplicates)
    for message in ps.check.warnings() if ps.check is not None else []:
        honesty.add_warning(result.run, message)
    _add_findings(result.run, ps, result, galleries, state, duplicates, duplicate_pairs)
    return result


def _one_distance(ps: ProbeSet, k: int, distance: float, backends: dict[str, Backend], galleries: dict[str, _Gallery],
                  embedder: Embedder, writer: ComparisonRows | None, split: identification.Split | None,
                  duplicate_pairs: set[tuple[int, int]], state: _State, then: Call | None = None) -> None:
    """Embed, score and fold one distance; its embeddings are dropped on return. `then`: the
    next distance's embed call, prepared while this one's last chunk runs."""
    config = ps.config
    simulated = ps.simulable(distance)
    rows = np.flatnonzero(simulated)
    px = ps.face_px(distance)
    raw = checked(embedder.embed(rows, distance, list(backends), then=then)) if len(rows) else {}
    fp32_unit: np.ndarray | None = None
    for name in backends:
        unit, prenorm = (scoring.unit_rows(raw[name], honesty.ZERO_NORM) if name in raw
                         else (np.zeros((0, 1)), np.zeros(0)))
        fp32_unit = unit if name == "fp32" else fp32_unit
        cos_fp32 = np.einsum("ij,ij->i", unit, fp32_unit) if fp32_unit is not None and len(unit) else np.zeros(0)
        frame = _probe_frame(ps, name, distance, px, rows, prenorm, cos_fp32)
        state.probe_frames.append(frame)
        first = name == "fp32" and k == 0 and state.threshold is None
        keep_top = 0
        if first:
            n_imp = _impostor_count(ps, simulated)
            keep_top = scoring.impostors_allowed(n_imp, config.target_far) + 1 + len(duplicate_pairs)
        prenorm_by_row = np.full(len(ps.images), np.nan)
        prenorm_by_row[rows] = prenorm
        sink = writer.sink(name, distance, px, prenorm_by_row) if writer is not None else None
        cell = _score(ps, unit, rows, galleries[name].unit, state.threshold, keep_top, sink)
        if first:
            _set_threshold(state, config, cell)
        assert state.threshold is not None
        probe, enrolled, cosine = cell.genuine.arrays()
        state.genuine.append(pd.DataFrame({
            "backend": name, "distance_m": distance, "face_px": px, "probe": [ps.keys[i] for i in probe.tolist()],
            "gallery": [ps.keys[i] for i in enrolled.tolist()], "genuine": True, "cosine": cosine,
            "probe_prenorm": prenorm_by_row[probe]}, columns=list(GENUINE_COLUMNS)))
        state.rows.append(metrics.cell_row(
            Path(ps.model_path).name, name, distance, px, frame.loc[frame.simulated], cosine, cell.impostors.n,
            cell.impostors.total, cell.impostors.accepted, state.threshold, int((~simulated).sum())))
        if split is not None:
            by_row = {int(r): unit[i] for i, r in enumerate(rows.tolist())}
            searches = identification.search(split, by_row, galleries[name].unit[split.gallery_rows], ps.identity)
            searches.extra["prenorm"] = prenorm_by_row[searches.mated_rows]
            state.searches[(name, distance)] = searches
            if state.ident_threshold is None and name == "fp32" and k == 0:
                state.ident_threshold = _ident_threshold(searches, config.target_fpir)


def _probe_frame(ps: ProbeSet, name: str, distance: float, px: float, rows: np.ndarray, prenorm: np.ndarray,
                 cos_fp32: np.ndarray) -> pd.DataFrame:
    """One row per photo; a photo that cannot be simulated here was not embedded (NaN)."""
    n = len(ps.images)
    pre, cos = np.full(n, np.nan), np.full(n, np.nan)
    pre[rows], cos[rows] = prenorm, cos_fp32
    simulated = np.zeros(n, bool)
    simulated[rows] = True
    return pd.DataFrame({"model": Path(ps.model_path).name, "backend": name, "distance_m": distance, "face_px": px,
                         "image": ps.keys, "identity": [img.identity for img in ps.images], "prenorm": pre,
                         "cos_to_fp32": cos, "simulated": simulated})


def _ident_threshold(searches: identification.Searches, target_fpir: float) -> float | None:
    n = len(searches.nonmated_top)
    if not n or scoring.impostors_allowed(n, target_fpir) + 1 > n:
        return None
    return scoring.threshold_from_top(np.sort(searches.nonmated_top)[::-1], n, target_fpir)


def _identification_table(model: str, ps: ProbeSet, state: _State) -> pd.DataFrame | None:
    threshold = state.ident_threshold
    if threshold is None:
        return None
    rows = [identification.identification_row(model, name, d, ps.face_px(d), s, threshold)
            for (name, d), s in state.searches.items()]
    return identification.identification_table(rows)


def _matches(result: SweepResult, state: _State) -> pd.DataFrame:
    """The comparisons the pre-norm cliff is fitted on: genuine ones (verification), or mated
    searches (identification: matched = right person first and above the threshold)."""
    if result.config.protocol != "identification" or result.identification is None:
        return result.genuine
    threshold = float(result.identification["threshold"].iloc[0])
    frames = [pd.DataFrame({"backend": name, "distance_m": d, "genuine": True, "cosine": s.mated_top,
                            "probe_prenorm": s.extra["prenorm"], "matched": s.matched(threshold)})
              for (name, d), s in state.searches.items()]
    return pd.concat(frames, ignore_index=True)


def _run_json(ps: ProbeSet, backends: dict[str, Backend], result: SweepResult, profile: dict[str, object] | None,
              split: identification.Split | None, duplicates: list[dict[str, object]]) -> dict[str, object]:
    config, distances = ps.config, ps.distances
    n_genuine = int(result.sweep["n_genuine"].iloc[0]) if len(result.sweep) else 0
    multi = [{"image": img.key, "faces": ps.faces[img.key].n_faces, "used": "most confident face"}
             for img in ps.images if ps.faces[img.key].n_faces > 1]
    ident: dict[str, object] = {"available": result.identification is not None}
    if split is not None:
        ident.update(split.to_dict(ps.keys))
    if result.identification is not None:
        ident["threshold"] = float(result.identification["threshold"].iloc[0])
        ident["threshold_set_on"] = ("given" if config.threshold is not None else
                                     f"fp32 non-mated probes at {distances[0]} m, target FPIR {config.target_fpir}")
    return {
        "config": config.to_dict(),
        "protocol": config.protocol,
        "model": {"path": str(ps.model_path), "sha256": ps.model_sha, "normalized": str(ps.normalized),
                  "spec": ps.spec.to_dict()},
        "camera": ps.camera.to_dict(),
        "distances_m": list(distances),
        "threshold": {"value": result.threshold, "set_on": "given" if config.threshold is not None else
                      f"fp32 impostors at {distances[0]} m, target FAR {config.target_far}"},
        "dataset": {"root": str(ps.dataset.root), "images": len(ps.dataset.images), "usable": len(ps.images),
                    "identities": len(ps.dataset.identities),
                    "comparisons_at_closest": n_genuine + (int(result.sweep["n_impostor"].iloc[0])
                                                           if len(result.sweep) else 0),
                    "genuine": n_genuine,
                    "impostor": int(result.sweep["n_impostor"].iloc[0]) if len(result.sweep) else 0,
                    "notes": ps.dataset.notes},
        "identification": ident,
        "skipped_images": ps.skipped,
        "excluded_files": ps.dataset.excluded,
        "multi_face_images": multi,
        "calibration": {"images": list(ps.calibration_faces), "source": config.calibration_data or "evaluation photos",
                        "distances_m": list(ps.calibration_distances()),
                        "method": config.calibration_method or "per recipe"},
        "backends": {name: b.describe() for name, b in backends.items()},
        "versions": versions(),
        "cpu": cpu_record({str(b.describe().get("runtime", "")) for b in backends.values()}),
        "timings": ps.timings,
        "degenerate": {r.backend: r.degenerate for r in result.cliff.itertuples() if r.degenerate},
        "cost": {"device_profile": profile and {k: profile[k] for k in ("path", "device", "source")},
                 "cpu_latency": cost.CPU_LATENCY_SOURCE},
        "duplicates": duplicates,
        "warnings": [],
        **(ps.check.run_entries() if ps.check is not None else {}),  # preprocessing, graph, alignment
    }


def _add_findings(run: dict[str, object], ps: ProbeSet, result: SweepResult, galleries: dict[str, _Gallery],
                  state: _State, duplicates: list[dict[str, object]], duplicate_pairs: set[tuple[int, int]]) -> None:
    """What the data cannot support, and which photos are suspect: run.json's threshold
    resolution, duplicates and pairs, and a sentence for each in run.json's warnings."""
    from facequant.datasets.folders import pairs_summary

    config, close_d = ps.config, ps.distances[0]
    sweep = result.sweep
    close = sweep.loc[(sweep.backend == "fp32") & (sweep.distance_m == close_d)]
    n_imp = int(close["n_impostor"].iloc[0]) if len(close) else 0
    set_by_far = config.threshold is None
    threshold = run["threshold"]
    assert isinstance(threshold, dict)
    threshold.update(honesty.far_resolution(n_imp, config.target_far))
    degenerate = {str(r.backend): str(r.degenerate) for r in result.cliff.itertuples() if r.degenerate}
    for backend, reason in degenerate.items():
        if backend == "fp32" and ps.check is not None:  # name the preprocessing check's verdict
            reason = f"{reason} ({ps.check.preprocessing.phrase()})"
        honesty.add_warning(run, f"{backend} is degenerate: {reason}")
    honesty.add_warning(run, honesty.far_resolution_warning(result.threshold, config.target_far, n_imp, close_d,
                                                            given=not set_by_far))
    if set_by_far and state.close_top is not None and duplicate_pairs:
        top, pairs = state.close_top.sorted_desc()
        simulated = ps.simulable(close_d)
        in_set = (lambda p, g: True) if ps.pairs is None else _listed(ps)
        n_dup = sum(1 for p, g in duplicate_pairs if simulated[p] and in_set(p, g))
        effect, without = honesty.duplicate_threshold_effect(top, pairs, state.close_impostors, duplicate_pairs,
                                                             n_dup, result.threshold, config.target_far)
        if without is not None:
            threshold["without_duplicates"] = without
    else:
        effect = ""
    for message in honesty.duplicate_warnings(duplicates, effect):
        honesty.add_warning(run, message)
    honesty.add_warning(run, honesty.thin_tar_warning(sweep))
    for backend in pd.unique(sweep.backend):
        honesty.add_warning(run, honesty.far_excess_warning(sweep, str(backend), config.target_far))
    pairs = pairs_summary(ps.dataset, set(ps.keys))
    if pairs is not None:
        run["pairs"] = pairs[0]
        for message in pairs[1]:
            honesty.add_warning(run, message)
    for message in honesty.zero_embedding_warnings(result.probes, {n: g.prenorm for n, g in galleries.items()},
                                                   DEFAULT_DEGENERATE.zero_prenorm):
        honesty.add_warning(run, message)
    _identification_findings(run, result, state)


def _listed(ps: ProbeSet) -> Callable[[int, int], bool]:
    assert ps.pairs is not None
    listed = {(int(p), int(g)) for p, g, gen in zip(*ps.pairs, strict=True) if not gen}
    return lambda p, g: (p, g) in listed


def _identification_findings(run: dict[str, object], result: SweepResult, state: _State) -> None:
    config, ident = result.config, result.identification
    if ident is None:
        honesty.add_warning(run, "identification not measured: it needs at least two people and a second photo of "
                                 "someone enrolled" + ("" if config.protocol == "verification" else
                                                      "; the cliff and the recommendation read verification"))
        return
    n = int(ident["n_nonmated"].iloc[0])
    floor = honesty.min_resolvable_far(n)
    info = run["identification"]
    assert isinstance(info, dict)
    info.update({"n_nonmated_at_closest": n, "min_resolvable_fpir": floor, "fpir_resolved": config.target_fpir >= floor})
    # Said as a warning when identification is what the run reads; run.json records it always.
    if config.target_fpir < floor and config.threshold is None and config.protocol == "identification":
        honesty.add_warning(run, f"identification threshold {state.ident_threshold:.3f} is set at FPIR "
                                 f"{config.target_fpir:g} on {n} non-mated probes, which resolve FPIR only down to "
                                 f"~{floor:.2g} (rule of three, 95 %); use a set with more people left out "
                                 f"(--nonmated-fraction) or more people")

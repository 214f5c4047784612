"""The distance sweep: photos -> enrolment and simulated probes per distance -> embeddings per
backend -> scores folded into the tidy tables every output reads.

Memory stays linear in the photo count: crops stream from the crop cache a chunk at a time,
a distance's probe embeddings are dropped once scored, and comparisons are never rows
(facequant.evaluate.scoring) except the genuine ones, which grow with photos per person.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facequant.backends import cost
from facequant.backends.base import Backend
from facequant.backends.registry import BackendFactory
from facequant.errors import FacequantError, check_cancel
from facequant.evaluate import cliff, honesty, identification, metrics, people, scoring, verdicts
from facequant.evaluate.degenerate import DEFAULT_DEGENERATE
from facequant.faces.pipeline import FacePipeline
from facequant.models.files import file_sha256
from facequant.sweep.comparison_rows import ComparisonRows
from facequant.sweep.config import Progress, SweepConfig
from facequant.sweep.embed import Call, Embedder
from facequant.sweep.embedding_cache import EmbeddingCache
from facequant.sweep.executors import Executor, LocalExecutor
from facequant.sweep.probes import ProbeSet, prepare_probes
from facequant.sweep.record import run_record
from facequant.sweep.result import GENUINE_COLUMNS, SweepResult
from facequant.sweep.score_cache import ScoreCache, cell_key


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
    close_auc: float = float("nan")  # fp32's at the closest distance


def check_executor(kind: str, address: str | None = None, timeout_s: float = 30.0) -> None:
    """Refuse, before any work, an executor this installation cannot run, or a Ray cluster
    that does not answer within timeout_s (joined here, once per process)."""
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError as exc:
            raise FacequantError("--executor ray: Ray is not installed (pip install -e '.[ray]')") from exc
        from facequant.sweep.ray_executor import connect

        connect(address, timeout_s)
    elif kind != "local":
        raise FacequantError(f"executor '{kind}': choose local or ray")


def make_executor(kind: str, backends: dict[str, Backend], address: str | None = None,
                  timeout_s: float = 30.0) -> Executor:
    check_executor(kind, address, timeout_s)
    if kind == "ray":
        from facequant.sweep.ray_executor import RayExecutor

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
           keep_top: int, sink: scoring.BlockSink | None, histogram: bool, scores: ScoreCache) -> scoring.CellScores:
    """One cell's scores: from the score cache when these exact inputs were scored before
    (never with a sink: its rows are written as they are scored), else scored and stored."""
    if sink is not None:
        return _score_now(ps, unit, rows, gallery, threshold, keep_top, sink, histogram)
    rule = "listed" if ps.pairs is not None else ("all", ps.config.genuine_mode == "same-photo")
    key = cell_key(unit, rows, gallery, ps.identity, rule, threshold, keep_top, histogram, ps.pairs)
    cell = scores.get(key)
    if cell is None:
        cell = _score_now(ps, unit, rows, gallery, threshold, keep_top, None, histogram)
        scores.put(key, cell)
    return cell


def _score_now(ps: ProbeSet, unit: np.ndarray, rows: np.ndarray, gallery: np.ndarray, threshold: float | None,
               keep_top: int, sink: scoring.BlockSink | None, histogram: bool) -> scoring.CellScores:
    if ps.pairs is not None:
        probe, enrolled, genuine = ps.pairs
        by_row = {int(r): unit[i] for i, r in enumerate(rows.tolist())}
        return scoring.score_listed_pairs(by_row, gallery, probe, enrolled, genuine, threshold, keep_top, sink,
                                          histogram)
    return scoring.score_all_pairs(unit, rows, gallery, ps.identity, ps.config.genuine_mode == "same-photo",
                                   threshold, keep_top, sink, histogram)


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
    cancel: threading.Event | None = None,
) -> SweepResult:
    """Run the whole sweep. on_distance(distance, sweep_rows_so_far) fires as each distance finishes.

    Once `cancel` is set the sweep stops at the next step: before any distance has finished it
    raises facequant.errors.Cancelled (nothing to keep); after, it finishes the distance it is
    on and returns a partial result over the distances done (result.partial; run.json says
    "partial": true, why, and the distances planned), written like any other."""
    profile = cost.load_device_profile(config.device_profile) if config.device_profile else None  # fail early
    check_executor(config.executor, config.ray_address, config.ray_timeout_s)  # a cluster that does not answer: now
    ps = prepare_probes(config, progress, pipeline, cancel)
    timings = ps.timings
    t0 = time.perf_counter()
    backends = _build_backends(ps, progress, cancel)
    timings["backends_s"] = time.perf_counter() - t0
    cache = EmbeddingCache.default(config.embedding_cache)
    scores = ScoreCache.default(config.embedding_cache)  # the embeddings' cache and theirs go together
    executor = make_executor(config.executor, backends, config.ray_address, config.ray_timeout_s)
    writer = ComparisonRows(ps.keys) if config.save_comparisons else None
    embedder = Embedder(ps, backends, executor, cache)
    try:
        result = _sweep(ps, backends, embedder, scores, writer, profile, progress, on_distance, cancel)
        result.run["execution"] = {**executor.describe(), "embedding_cache": cache.stats(),
                                   "score_cache": scores.stats(),
                                   "chunk_size": config.chunk_size,
                                   **(ps.crops.describe() if ps.crops is not None else {})}
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
        scores.close()


def _build_backends(ps: ProbeSet, progress: Progress | None, cancel: threading.Event | None = None
                    ) -> dict[str, Backend]:
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
        check_cancel(cancel, "calibration")
        backends[name] = factory.make(name)
        if progress:
            progress("calibration", i + 1, len(config.backends))
    return backends


def _sweep(ps: ProbeSet, backends: dict[str, Backend], embedder: Embedder, scores: ScoreCache,
           writer: ComparisonRows | None,
           profile: dict[str, object] | None, progress: Progress | None,
           on_distance: Callable[[float, pd.DataFrame], None] | None,
           cancel: threading.Event | None = None) -> SweepResult:
    config, timings = ps.config, ps.timings
    planned = ps.distances
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
    check_cancel(cancel, "gallery")
    for k, distance in enumerate(planned):
        _one_distance(ps, k, distance, backends, galleries, embedder, scores, writer, split, duplicate_pairs,
                      state, call(k + 1))
        if on_distance:
            on_distance(distance, metrics.table_from_rows(state.rows))
        if progress:
            progress("distances", k + 1, len(planned))
        if cancel is not None and cancel.is_set() and k + 1 < len(planned):
            ps = dataclasses.replace(ps, distances=planned[: k + 1])  # what follows reads the distances done
            break
    timings["sweep_s"] = time.perf_counter() - t0
    partial = len(ps.distances) < len(planned)

    t0 = time.perf_counter()  # after the sweep, so timing does not compete with it
    timed = cost.cpu_latencies(backends, config.batch_size) if config.measure_cost and not partial else {}
    costs = cost.cost_table([cost.backend_cost(n, b.model_path, ps.spec, profile, timed.get(n),
                                               str(b.describe().get("runtime", "onnxruntime")))
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
    matches = _matches(result, state, ps.keys)
    result.cliff = cliff.cliff_table(result.rates, matches, model_name, probes=probes, embedding_dims=dims)
    identifying = result.rates is not result.sweep  # per-person counts: the intervals' and verdicts' unit
    counts = people.person_counts(people.outcomes(matches, float(result.rates.threshold.iloc[0])), dict(zip(
        ps.keys, (img.identity for img in ps.images), strict=True)), list(backends), ps.distances)
    result.cliff, judged = verdicts.judge(result.cliff, result.rates, counts, config.target_fpir if identifying else
                                          config.target_far, verdicts.VerdictSettings(seed=config.seed),
                                          identification=identifying)
    n_embeddings = len(ps.images) * (len(ps.distances) + 1) * len(backends)
    timings["embeddings_per_s"] = n_embeddings / max(timings["sweep_s"], 1e-9)
    timings["embeddings_computed"] = embedder.computed
    result.run = run_record(ps, backends, result, profile, split, duplicates)
    result.run["verdicts"] = judged
    for message in ps.check.warnings() if ps.check is not None else []:
        honesty.add_warning(result.run, message)
    _add_findings(result.run, ps, result, galleries, state, duplicates, duplicate_pairs)
    if partial:
        result.run.update({"partial": True, "distances_planned": list(planned),
                           "partial_reason": f"cancelled after {len(ps.distances)} of {len(planned)} distances"})
    return result


def _one_distance(ps: ProbeSet, k: int, distance: float, backends: dict[str, Backend], galleries: dict[str, _Gallery],
                  embedder: Embedder, scores: ScoreCache, writer: ComparisonRows | None,
                  split: identification.Split | None,
                  duplicate_pairs: set[tuple[int, int]], state: _State, then: Call | None = None) -> None:
    """Embed, score and fold one distance; its embeddings are dropped on return. `then`: the
    next distance's embed call, prepared while this one's last chunk runs."""
    config = ps.config
    simulated = ps.simulable(distance)
    rows = np.flatnonzero(simulated)
    px = ps.face_px(distance)
    image_keys = np.asarray(ps.keys, dtype=object)  # once: ps.keys builds its list at every call
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
        reference_close = name == "fp32" and k == 0  # its AUC says how good the reference is
        cell = _score(ps, unit, rows, galleries[name].unit, state.threshold, keep_top, sink, reference_close,
                      scores)
        if first:
            _set_threshold(state, config, cell)
        assert state.threshold is not None
        probe, enrolled, cosine = cell.genuine.arrays()
        if reference_close and cell.impostors.histogram is not None:
            state.close_auc = scoring.auc_from_histogram(cosine, cell.impostors.histogram)
        state.genuine.append(pd.DataFrame({
            "backend": name, "distance_m": distance, "face_px": px, "probe": image_keys[probe].tolist(),
            "gallery": image_keys[enrolled].tolist(), "genuine": True, "cosine": cosine,
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


def _matches(result: SweepResult, state: _State, keys: list[str]) -> pd.DataFrame:
    """The comparisons the pre-norm cliff is fitted on: genuine ones (verification), or mated
    searches (identification: matched = right person first and above the threshold)."""
    if result.config.protocol != "identification" or result.identification is None:
        return result.genuine
    threshold = float(result.identification["threshold"].iloc[0])
    frames = [pd.DataFrame({"backend": name, "distance_m": d, "probe": [keys[r] for r in s.mated_rows.tolist()],
                            "genuine": True, "cosine": s.mated_top,
                            "probe_prenorm": s.extra["prenorm"], "matched": s.matched(threshold)})
              for (name, d), s in state.searches.items()]
    return pd.concat(frames, ignore_index=True)


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
    pairs_record = pairs_summary(ps.dataset, set(ps.keys))
    if pairs_record is not None:
        run["pairs"] = pairs_record[0]
        for message in pairs_record[1]:
            honesty.add_warning(run, message)
    for message in honesty.zero_embedding_warnings(result.probes, {n: g.prenorm for n, g in galleries.items()},
                                                   DEFAULT_DEGENERATE.zero_prenorm):
        honesty.add_warning(run, message)
    ident, info = result.identification, run["identification"]
    assert isinstance(info, dict)
    honesty.add_warning(run, honesty.identification_findings(
        info, None if ident is None else int(ident["n_nonmated"].iloc[0]), config.target_fpir,
        config.protocol, state.ident_threshold if set_by_far else None, close_d))
    run["reference"] = reference = honesty.reference_quality(
        float(close["tar"].iloc[0]) if len(close) else float("nan"), state.close_auc, broken="fp32" in degenerate)
    honesty.add_warning(run, str(reference["warning"]))


def _listed(ps: ProbeSet) -> Callable[[int, int], bool]:
    assert ps.pairs is not None
    listed = {(int(p), int(g)) for p, g, gen in zip(*ps.pairs, strict=True) if not gen}
    return lambda p, g: (p, g) in listed

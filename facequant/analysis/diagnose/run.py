"""The diagnose run: configuration, probes, graphs per backend, one pass per distance, the tables."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
from onnxruntime.quantization.qdq_loss_debug import (
    modify_model_output_intermediate_tensors,
)

from facequant import settings

#: progress(stage, done, total): stages "faces", "calibration" (building backends), "diagnose".
from facequant.analysis.diagnose.measure import (
    FloatTaps,
    LevelHistogram,
    QuantTaps,
    TensorSums,
    collect_stats,
    float_stats,
    psnr_db,
    quant_stats,
    snr_db,
)
from facequant.analysis.diagnose.taps import (
    FLAT_SUFFIX,
    Tap,
    float_layers,
    float_weight_table,
    link_into,
    match_taps,
    quantized_weight_table,
)
from facequant.backends.base import EXTERNAL_PREFIX, FLOAT_BACKENDS, preprocess
from facequant.backends.quantize.layers import graph_layers
from facequant.backends.quantize.recipes import RECIPES, split_recipe_name
from facequant.backends.registry import BackendFactory, check_backend_name
from facequant.backends.runtime import OrtBackend
from facequant.backends.runtimes import is_runtime_name
from facequant.errors import FacequantError
from facequant.params import nested, param, validate
from facequant.ranges import COUNT_RANGE, Range, require
from facequant.sweep.config import SweepConfig
from facequant.sweep.probes import ProbeSet, prepare_probes
from facequant.versions import versions

Progress = Callable[[str, int, int], None]
#: The fixed columns of layers.csv, in order; more follow them.
LAYER_COLUMNS = ("backend", "distance_m", "layer", "op_type", "depth", "snr_db", "psnr_db", "act_bins_used",
                 "act_bin_utilization", "weight_range", "weight_asymmetry", "channel_range_ratio")
EXTRA_LAYER_COLUMNS = ("face_px", "n_probes", "tensor", "quant_tensor", "act_bits", "act_scale", "act_zero_point",
                       "act_at_rails", "mse", "peak_abs", "weight_snr_db", "weight_bits", "weighted", "head",
                       "is_output")
SUMMARY_COLUMNS = ("backend", "distance_m", "face_px", "n_probes", "n_layers", "min_snr_db", "min_snr_layer",
                   "mean_snr_db", "layers_below_threshold", "first_below_depth", "first_below_layer",
                   "head_mean_snr_db", "backbone_mean_snr_db", "output_snr_db", "output_psnr_db", "worst10")
#: Weighted layers (before the output) counted as the head, with the output itself.
HEAD_WEIGHTED_LAYERS = 3
STATIC_BACKENDS_HELP = (", ".join(n for n, r in RECIPES.items() if r.method == "static")
                        + ", or BASE+16bit:SEL / BASE+float:SEL on one of them")
_SUBSET_STREAM = 0xD1A6  # the probe subset's random stream, apart from the calibration subset's
# --- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DiagnoseConfig:
    """Everything that determines a diagnosis; saved in run.json. `sweep` carries the model,
    photos, camera, distances, degradation, calibration and seed exactly as a sweep takes them;
    its `backends` are the quantized backends to diagnose (fp32 is the reference, always)."""

    sweep: SweepConfig = nested(SweepConfig, help={"backends": (
        f"comma-separated static QDQ backends ({STATIC_BACKENDS_HELP}); fp32 is the reference and is skipped; fp16, "
        "int8-dyn and external backends are refused")})
    # a seeded subset of the photos; None: all of them
    max_probes: int | None = param(None, help="diagnose a seeded subset of this many photos (default: all)",
                                   group="diagnose", range=COUNT_RANGE, integer=True)
    # the layer whose level histogram is plotted; None: the worst at the farthest distance
    layer: str | None = param(None, help="layer for the activation histogram (default: the worst quantized layer at "
                              "the farthest distance)", group="diagnose")
    snr_threshold_db: float = param(10.0, help="SNR line in dB for the summary", group="diagnose",  # 000_'s 8-bit line
                                    option="snr-threshold", range=Range(-100.0, 200.0))
    memory_mb: int = 1024  # bound on the float tensors + integer codes one batch holds

    def __post_init__(self) -> None:  # the CLI checks these where parsed; API callers too
        validate(self, "diagnose")
        require("diagnose: memory_mb", self.memory_mb, COUNT_RANGE, integer=True)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_qdq_backend(name: str) -> None:
    """Raise a one-line FacequantError unless `name` is a static QDQ backend: diagnose compares
    QuantizeLinear/DequantizeLinear tensors, which fp16, dynamic and external backends lack."""
    if name in FLOAT_BACKENDS or name.startswith(EXTERNAL_PREFIX):
        raise FacequantError(f"backend '{name}': not a static QDQ backend, nothing to diagnose "
                             f"(diagnose takes {STATIC_BACKENDS_HELP})")
    check_backend_name(name)  # unknown names get the sweep's message
    if is_runtime_name(name):
        raise FacequantError(f"backend '{name}': an OpenVINO / NNCF backend; diagnose reads ONNX Runtime's QDQ "
                             f"graphs and takes {STATIC_BACKENDS_HELP}")
    base, _ = split_recipe_name(name)
    if RECIPES[base].method != "static":
        raise FacequantError(f"backend '{name}': not a static QDQ backend ({RECIPES[base].description}); "
                             f"diagnose takes {STATIC_BACKENDS_HELP}")


def diagnose_backends(names: tuple[str, ...] | list[str]) -> list[str]:
    """The backends to diagnose: fp32 dropped (it is the reference every tensor is compared
    with), every other name checked to be a static QDQ backend, duplicates removed."""
    chosen = [n for n in dict.fromkeys(names) if n != "fp32"]
    if not chosen:
        raise FacequantError(f"no quantized backend to diagnose; choose from {STATIC_BACKENDS_HELP}")
    for name in chosen:
        check_qdq_backend(name)
    return chosen


# --- the run -------------------------------------------------------------------------------

@dataclass
class DiagnoseResult:
    config: DiagnoseConfig
    model_name: str
    distances_m: tuple[float, ...]
    backends: list[str]
    layers: pd.DataFrame
    summary: pd.DataFrame
    histograms: dict[str, LevelHistogram]
    run: dict[str, object]
    head_layers: dict[str, list[str]] = field(default_factory=dict)


def probe_subset(n_images: int, max_probes: int | None, seed: int) -> np.ndarray:
    """Indices of the photos diagnosed: all, or a seeded subset. Its own random stream: the
    calibration subset is permutation(seed)[:size], and reusing it would diagnose exactly the
    photos the backends were calibrated on."""
    if max_probes is None or max_probes >= n_images:
        return np.arange(n_images)
    if max_probes < 1:
        raise FacequantError(f"--max-probes {max_probes}: need at least 1 photo")
    return np.sort(np.random.default_rng([seed, _SUBSET_STREAM]).permutation(n_images)[:max_probes])


def _batch_size(taps: list[Tap], float_model: onnx.ModelProto, config: DiagnoseConfig) -> tuple[int, int]:
    """(probes per batch, float elements per probe): the float tensors one probe exposes (4 bytes
    each) plus their integer codes must fit the memory bound with room for ORT's own copies."""
    inferred = onnx.shape_inference.infer_shapes(float_model)
    shapes = {v.name: v.type.tensor_type.shape for v in
              [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    per_probe = 0
    for tap in {t.tensor: t for t in taps}.values():
        shape = shapes.get(tap.tensor)
        dims = [d.dim_value for d in shape.dim[1:]] if shape is not None else []
        if not dims or any(d <= 0 for d in dims):
            return min(8, config.sweep.batch_size), 0  # unknown sizes: a small, safe batch
        per_probe += int(np.prod(dims))
    # float tensors (4 bytes), one backend's dequantized tensors (4) and codes (<= 2), the previous
    # backend's while its statistics finish, and ORT's own copies: about 16 bytes an element
    bytes_per_probe = per_probe * 16
    return max(1, min(config.sweep.batch_size, (config.memory_mb << 20) // max(bytes_per_probe, 1))), per_probe


@dataclass
class _Graphs:
    """Everything built once per run: the augmented sessions, which tensors each backend reports,
    and the weight statistics that do not depend on the probes."""

    float_taps: FloatTaps
    quant_taps: dict[str, QuantTaps]
    unmatched: dict[str, list[str]]
    weights: dict[str, dict[str, object]]  # float node -> weight statistics
    quant_weights: dict[str, dict[str, dict[str, float]]]  # backend -> weight name -> SNR, bits
    head: dict[str, list[str]]  # backend -> head layers
    outputs: set[str]  # graph output tensors
    elements_per_probe: int
    batch: int


def _build_graphs(ps: ProbeSet, built: dict[str, OrtBackend], config: DiagnoseConfig) -> _Graphs:
    float_model = onnx.load(str(ps.normalized))
    weighted = list(graph_layers(ps.normalized).weighted)
    outputs = {o.name for o in float_model.graph.output}
    with tempfile.TemporaryDirectory(prefix="facequant-diagnose-") as tmp_dir:  # sessions keep their graphs
        tmp = Path(tmp_dir)
        augmented = tmp / "float_augmented.onnx"
        modify_model_output_intermediate_tensors(str(link_into(ps.normalized, tmp)), str(augmented))
        saved = {o.name[: -len(FLAT_SUFFIX)] for o in onnx.load(str(augmented), load_external_data=False).graph.output
                 if o.name.endswith(FLAT_SUFFIX)}
        layers = float_layers(float_model, saved - {ps.spec.input_name})
        taps: dict[str, list[Tap]] = {}
        unmatched: dict[str, list[str]] = {}
        quant_weights: dict[str, dict[str, dict[str, float]]] = {}
        for name, b in built.items():
            taps[name], unmatched[name] = match_taps(layers, onnx.load(str(b.model_path)))
            if not taps[name]:
                raise FacequantError(f"backend '{name}': no tensor of the float graph found in {b.model_path}")
            quant_weights[name] = quantized_weight_table(ps.normalized, b.model_path, tmp)
        if config.layer is not None and not any(t.layer == config.layer for ts in taps.values() for t in ts):
            names = [t.layer for t in next(iter(taps.values()))]
            raise FacequantError(f"--layer '{config.layer}': not a reported layer of {ps.model_path.name}; "
                                 f"valid names include {', '.join(names[:3] + ['...'] + names[-3:])}")
        needed = sorted({t.tensor for ts in taps.values() for t in ts})
        float_taps = FloatTaps.build(augmented, ps.spec.input_name, needed)
        quant_taps = {name: QuantTaps.build(name, b.model_path, ps.spec.input_name, ps.spec.output_name, taps[name], tmp)
                      for name, b in built.items()}
    head = {name: [t.layer for t in ts if t.node in weighted[-HEAD_WEIGHTED_LAYERS:] or t.tensor in outputs]
            for name, ts in taps.items()}
    batch, per_probe = _batch_size([t for ts in taps.values() for t in ts], float_model, config)
    return _Graphs(float_taps, quant_taps, unmatched, float_weight_table(ps.normalized, float_model), quant_weights,
                   head, outputs, per_probe, batch)


@dataclass
class _Distance:
    """What one distance leaves: running sums per float tensor and per backend x tensor."""

    floats: dict[str, TensorSums]
    quants: dict[str, dict[str, TensorSums]]
    n_probes: int
    face_px: float


def _measure(x_all: np.ndarray, graphs: _Graphs, built: dict[str, OrtBackend], pool: ThreadPoolExecutor,
             full_counts: bool, checks: dict[str, dict[str, object]], step: Callable[[], None]) -> tuple[
                 dict[str, TensorSums], dict[str, dict[str, TensorSums]]]:
    """One pass over a distance's probes, batch by batch: the float graph once per batch, then each
    backend's graph, while the pool reduces the previous backend's tensors to sums and levels."""
    floats = {t: TensorSums() for t in graphs.float_taps.tensors}
    quants = {name: {t.tensor: TensorSums() for t in qt.taps} for name, qt in graphs.quant_taps.items()}
    for start in range(0, len(x_all), graphs.batch):
        x = x_all[start : start + graphs.batch]
        tensors = graphs.float_taps.run(x)
        float_jobs = {t: pool.submit(float_stats, tensors[t]) for t in graphs.float_taps.tensors}
        pending: list[tuple[str, Tap, Future[float]]] = []
        for name, qt in graphs.quant_taps.items():
            out = qt.run(x)
            if name not in checks:  # the diagnosed graph must compute what the backend computes, bit for bit
                deployed = built[name].run(x)
                checks[name] = {"probes": len(x), "max_abs_diff_vs_backend":
                                float(np.max(np.abs(out[qt.output_name].reshape(len(x), -1) - deployed)))}
            jobs = [(name, tap, pool.submit(quant_stats, tensors[tap.tensor], out[f"{tap.tensor}::q"],
                                            out[tap.codes] if tap.codes else None, tap, quants[name][tap.tensor],
                                            full_counts)) for tap in qt.taps]
            collect_stats(pending, quants)  # the previous backend's statistics ran beside this backend's graph
            pending = jobs
        collect_stats(pending, quants)
        for t, job in float_jobs.items():
            sumsq, peak, n = job.result()
            floats[t].sumsq += sumsq
            floats[t].peak = max(floats[t].peak, peak)
            floats[t].n += n
        step()
    return floats, quants


def _layer_rows(name: str, distance: float, measured: _Distance, graphs: _Graphs) -> list[dict[str, object]]:
    """layers.csv rows of one backend at one distance."""
    rows: list[dict[str, object]] = []
    for depth, tap in enumerate(graphs.quant_taps[name].taps):
        fa, qa = measured.floats[tap.tensor], measured.quants[name][tap.tensor]
        used = int(np.count_nonzero(qa.seen)) if qa.seen is not None else None
        w = graphs.weights.get(tap.node)
        qw = graphs.quant_weights[name].get(str(w["weight"])) if w else None
        nan = math.nan
        rows.append({
            "backend": name, "distance_m": distance, "layer": tap.layer, "op_type": tap.op_type, "depth": depth,
            "snr_db": snr_db(fa.sumsq, qa.sse) if fa.n else nan,
            "psnr_db": psnr_db(fa.peak, qa.sse, fa.n) if fa.n else nan,
            "act_bins_used": used if used is not None else nan,
            "act_bin_utilization": used / tap.levels if used is not None else nan,
            "weight_range": w["weight_range"] if w else nan,
            "weight_asymmetry": w["weight_asymmetry"] if w else nan,
            "channel_range_ratio": w["channel_range_ratio"] if w else nan,
            "face_px": measured.face_px, "n_probes": measured.n_probes, "tensor": tap.tensor,
            "quant_tensor": tap.quant_tensor, "act_bits": tap.bits or nan, "act_scale": tap.scale if tap.bits else nan,
            "act_zero_point": tap.zero_point if tap.bits else nan,
            "act_at_rails": qa.rails / fa.n if tap.bits and fa.n else nan,
            "mse": qa.sse / fa.n if fa.n else nan, "peak_abs": fa.peak if fa.n else nan,
            "weight_snr_db": qw["weight_snr_db"] if qw else nan, "weight_bits": qw["weight_bits"] if qw else nan,
            "weighted": bool(w), "head": tap.layer in graphs.head[name], "is_output": tap.tensor in graphs.outputs,
        })
    return rows


def run_diagnose(config: DiagnoseConfig, progress: Progress | None = None,
                 probes: ProbeSet | None = None) -> DiagnoseResult:
    """Diagnose every reported layer of each backend at each distance. `probes` reuses a ProbeSet
    prepared from the same sweep config; otherwise it is prepared here."""
    backends = diagnose_backends(config.sweep.backends)  # refuse before any work
    timings: dict[str, float] = {}
    ps = probes or prepare_probes(config.sweep, progress)
    timings.update(ps.timings)

    t0 = time.perf_counter()
    calibration_cache: dict[str, np.ndarray] = {}

    def calibration() -> np.ndarray:
        if "x" not in calibration_cache:
            calibration_cache["x"] = ps.calibration_tensors()
        return calibration_cache["x"]

    factory = BackendFactory(ps.normalized, ps.model_sha, ps.spec, calibration, config.sweep.calibration_method,
                             config.sweep.batch_size)
    built: dict[str, OrtBackend] = {}
    for i, name in enumerate(backends):
        if progress:  # one step per backend built: "building backends 1/3", not 1/1 for all
            progress("calibration", i, len(backends))
        b = factory.make(name)
        assert isinstance(b, OrtBackend)  # every static recipe is
        if not any(n.op_type == "QuantizeLinear" for n in onnx.load(str(b.model_path), load_external_data=False).graph.node):
            raise FacequantError(f"backend '{name}': its model {b.model_path} holds no QuantizeLinear node")
        built[name] = b
    if progress:
        progress("calibration", len(backends), len(backends))
    timings["backends_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    graphs = _build_graphs(ps, built, config)  # once per backend; the sessions serve every distance
    timings["augment_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    chosen = probe_subset(len(ps.images), config.max_probes, config.sweep.seed)
    hist_distance = ps.distances[-1]
    checks: dict[str, dict[str, object]] = {}
    rows: list[dict[str, object]] = []
    counts: dict[tuple[str, str], np.ndarray] = {}
    probes_used: dict[str, int] = {}
    per_distance = max(1, math.ceil(len(chosen) / graphs.batch))  # progress steps: batches of the photos chosen
    total = per_distance * len(ps.distances)
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress:
            progress("diagnose", min(done[0], total), total)

    # NumPy's ufuncs, dot and (mostly) bincount release the GIL: a pool of one thread per core
    # computes the statistics of several tensors at once, and of one backend while the next runs.
    pool = ThreadPoolExecutor(max_workers=settings.ort_threads(), thread_name_prefix="facequant-stats")
    try:
        for d_index, distance in enumerate(ps.distances):
            crops, ok, px = ps.probe_crops(d_index)
            idx = chosen[ok[chosen]]  # a photo that cannot be simulated here is left out, as in the sweep
            probes_used[f"{distance:g}"] = len(idx)
            x_all = preprocess(crops[idx], ps.spec) if len(idx) else np.zeros((0, 3, *ps.spec.input_size), np.float32)
            floats, quants = _measure(x_all, graphs, built, pool, distance == hist_distance, checks, step)
            done[0] = (d_index + 1) * per_distance  # fewer batches where some photos cannot be simulated
            if progress:
                progress("diagnose", done[0], total)
            measured = _Distance(floats, quants, len(idx), px)
            for name in backends:
                rows.extend(_layer_rows(name, distance, measured, graphs))
                if distance == hist_distance:  # counted in full there, for the histogram plot
                    counts.update({(name, layer): acc.counts for layer, acc in
                                   ((t.layer, quants[name][t.tensor]) for t in graphs.quant_taps[name].taps)
                                   if acc.counts is not None})
    finally:
        pool.shutdown(cancel_futures=True)
    timings["diagnose_s"] = time.perf_counter() - t0

    table = pd.DataFrame(rows, columns=[*LAYER_COLUMNS, *EXTRA_LAYER_COLUMNS])
    summary = summary_table(table, config.snr_threshold_db)
    histograms: dict[str, LevelHistogram] = {}
    for name in backends:
        wanted = config.layer or _worst_quantized_layer(table, name, hist_distance)
        tap = next((t for t in graphs.quant_taps[name].taps if t.layer == wanted), None)
        if tap is not None and (name, tap.layer) in counts:
            histograms[name] = LevelHistogram(name, tap.layer, hist_distance, tap, counts[(name, tap.layer)])
    n_elements = graphs.elements_per_probe * sum(probes_used.values()) * (1 + len(backends))
    timings["elements_per_s"] = n_elements / max(timings["diagnose_s"], 1e-9)
    run: dict[str, object] = {
        "kind": "diagnose",
        "config": config.to_dict(),
        "model": {"path": str(ps.model_path), "sha256": ps.model_sha, "normalized": str(ps.normalized),
                  "spec": ps.spec.to_dict()},
        "camera": ps.camera.to_dict(),
        "distances_m": list(ps.distances),
        "seeds": {"seed": config.sweep.seed, "probe_subset_stream": [config.sweep.seed, _SUBSET_STREAM],
                  "probe_noise": "per photo and distance, as the sweep (ProbeSet.probe_crops)"},
        "probes": {"images": [ps.images[i].key for i in chosen], "per_distance": probes_used,
                   "batch": graphs.batch, "float_elements_per_probe": graphs.elements_per_probe},
        "skipped_images": ps.skipped,
        "excluded_files": ps.dataset.excluded,
        "calibration": {"images": list(ps.calibration_faces), "distances_m": list(ps.calibration_distances()),
                        "method": config.sweep.calibration_method or "per recipe"},
        "backends": {name: b.describe() for name, b in built.items()},
        "layers": {name: {"reported": len(qt.taps), "quantized": sum(1 for t in qt.taps if t.codes),
                          "unmatched_float_tensors": graphs.unmatched[name], "head": graphs.head[name]}
                   for name, qt in graphs.quant_taps.items()},
        "checks": checks,
        "histograms": {name: {"layer": h.layer, "distance_m": h.distance_m} for name, h in histograms.items()},
        "definitions": {
            "snr_db": "10 log10(sum f^2 / sum (f - q)^2) over all probes at the distance; q after its Q/DQ pair",
            "psnr_db": "10 log10(max|f|^2 / mean (f - q)^2), peak from the float tensor",
            "act_bins_used": "distinct integer codes of the tensor's QuantizeLinear on these probes",
            "act_at_rails": "share of codes at the lowest or highest level: values at or beyond the calibrated "
                            "range (saturation)",
            "weight_asymmetry": "|max + min| / (max - min) of the float weights",
            "channel_range_ratio": "max / min over output channels of (max - min) of the float weights; "
                                   "channels narrower than 1e-6 of the widest left out",
            "head": f"the last {HEAD_WEIGHTED_LAYERS} weighted layers and the output; backbone: the rest",
            "snr_threshold_db": config.snr_threshold_db,
        },
        "versions": versions(),
        "timings": timings,
    }
    return DiagnoseResult(config, ps.model_path.name, ps.distances, backends, table, summary, histograms, run,
                          graphs.head)


def _worst_quantized_layer(table: pd.DataFrame, backend: str, distance: float) -> str | None:
    rows = table[(table.backend == backend) & (table.distance_m == distance) & table.act_bins_used.notna()]
    rows = rows[np.isfinite(rows.snr_db)]
    return None if rows.empty else str(rows.loc[rows.snr_db.idxmin(), "layer"])


def summary_table(layers: pd.DataFrame, threshold_db: float = 10.0) -> pd.DataFrame:
    """One row per backend x distance: min and mean SNR, layers below the threshold, the first
    depth below it, head vs backbone mean SNR, the embedding output's SNR, the worst ten layers.
    Means are over finite SNRs (an identical tensor's +inf would swamp them)."""
    out: list[dict[str, object]] = []
    for (backend, distance), rows in layers.groupby(["backend", "distance_m"], sort=False):
        rows = rows.sort_values("depth")
        finite = rows[np.isfinite(rows.snr_db)]
        below = rows[rows.snr_db < threshold_db]
        worst = finite.nsmallest(10, "snr_db")
        head = finite[finite["head"].astype(bool)]
        back = finite[~finite["head"].astype(bool)]
        output = rows[rows.is_output.astype(bool)].tail(1)
        out.append({
            "backend": backend, "distance_m": distance, "face_px": rows.face_px.iloc[0], "n_probes": rows.n_probes.iloc[0],
            "n_layers": len(rows),
            "min_snr_db": finite.snr_db.min() if len(finite) else math.nan,
            "min_snr_layer": worst.layer.iloc[0] if len(worst) else "",
            "mean_snr_db": finite.snr_db.mean() if len(finite) else math.nan,
            "layers_below_threshold": len(below),
            "first_below_depth": int(below.depth.iloc[0]) if len(below) else math.nan,
            "first_below_layer": below.layer.iloc[0] if len(below) else "",
            "head_mean_snr_db": head.snr_db.mean() if len(head) else math.nan,
            "backbone_mean_snr_db": back.snr_db.mean() if len(back) else math.nan,
            "output_snr_db": output.snr_db.iloc[0] if len(output) else math.nan,
            "output_psnr_db": output.psnr_db.iloc[0] if len(output) else math.nan,
            "worst10": ";".join(worst.layer.astype(str)),
        })
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))



"""Layer diagnostics: where in the graph quantization noise enters, and how it grows with distance.

For each static QDQ backend and each distance, every intermediate tensor of the float graph is
compared with its counterpart in the quantized graph on the same simulated probes the sweep
uses (``ProbeSet.probe_crops``). One row per backend x distance x layer (``layers.csv``):

- ``snr_db`` = 10 log10(sum f^2 / sum (f - q)^2) over every element of the tensor on every probe
  at that distance (f float, q the quantized graph's tensor after its Q/DQ pair, i.e. what the
  next layer sees). ORT's ``compute_signal_to_quantization_noice_ratio`` is the same ratio; we
  accumulate the two sums batch by batch instead of holding every tensor, and write +inf when
  the tensors are identical where ORT floors both norms at machine epsilon.
- ``psnr_db`` = 10 log10(peak^2 / MSE), peak = max |f| over the float tensor (003_'s
  definition takes the peak from the float tensor; its formula images are not in the report,
  so "max absolute value" is our reading), MSE = sum (f - q)^2 / number of elements.
- ``act_bins_used``: how many of the 2^bits levels of the tensor's QuantizeLinear (its scale,
  zero point and integer type) the quantized activation occupies on these probes;
  ``act_bin_utilization`` = bins used / 2^bits; ``act_at_rails`` the share of codes on the lowest
  or highest level (saturation: values at or beyond the calibrated range).
- ``weight_range`` = max - min of the float weights; ``weight_asymmetry`` = |max + min| /
  (max - min): 000_ gives a 0-1 scale (0 symmetric, 1 fully one-sided) but no formula, and this
  is the formula with exactly those end points; ``channel_range_ratio`` = largest per-output-
  channel range / smallest live one (a single per-tensor scale must cover the widest channel,
  so the narrowest gets range_ratio times fewer levels); dead channels (range below 1e-6 of the
  widest: MobileFaceNet has many all-zero ones) are left out.

How the comparison runs, and why it costs about a sweep rather than one pass per layer: every
graph is augmented once and its session serves every distance. The float graph goes through
ORT's ``modify_model_output_intermediate_tensors`` (every float tensor exposed, flattened),
pruned to the tensors reported; it runs once per batch, shared by all backends. Each quantized
graph exposes, per reported tensor, its dequantized value and its QuantizeLinear's integer codes,
and never the tensor before quantization: that would stop ORT fusing DQ -> op -> Q into its
integer kernels, so the embedding here is bit-identical to the sweep's backend (run.json
records the check). Tensors are paired by ORT's ``create_activation_matching`` (its QDQ naming)
and weights by ``create_weight_matching``. Statistics are reduced batch by batch to running sums
and level sets on a thread pool (NumPy releases the GIL), the previous backend's while the next
one's graph runs, and the augmented sessions do not spin, which would starve that pool. Measured
reasons for each choice are in the comments where they are made.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.qdq_loss_debug import (
    compute_signal_to_quantization_noice_ratio,
    create_activation_matching,
    create_weight_matching,
    modify_model_output_intermediate_tensors,
)

from facequant import settings
from facequant.backends import (
    EXTERNAL_PREFIX,
    FLOAT_BACKENDS,
    BackendFactory,
    OrtBackend,
    check_backend_name,
    preprocess,
    session_options,
)
from facequant.errors import FacequantError
from facequant.names import display
from facequant.quantization import RECIPES, graph_layers, split_recipe_name
from facequant.ranges import COUNT_RANGE, Range, require
from facequant.reports import pyplot, save_figure, staged_output
from facequant.sweep import ProbeSet, SweepConfig, prepare_probes, versions

#: progress(stage, done, total): stages "faces", "calibration" (building backends), "diagnose".
Progress = Callable[[str, int, int], None]

LAYERS_CSV = "layers.csv"
SUMMARY_CSV = "summary.csv"
RUN_JSON = "run.json"
OUTPUT_SNR_PLOT = "output_snr_vs_distance.png"

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

_FLAT_SUFFIX = "_ReshapedSavedOutput"  # what modify_model_output_intermediate_tensors appends
_BITS = {TensorProto.UINT8: 8, TensorProto.INT8: 8, TensorProto.UINT16: 16, TensorProto.INT16: 16}
_SIGNED = {TensorProto.INT8, TensorProto.INT16}
_DEAD_CHANNEL = 1e-6  # relative range below which a weight channel counts as dead
_PLOT_GROUPS = 256  # bars in a level histogram; 16-bit levels are grouped to fit
_SUBSET_STREAM = 0xD1A6  # the probe subset's random stream, apart from the calibration subset's
_OCCUPANCY_SAMPLE = 16  # every 16th code proves the dense middle of an 8-bit distribution occupied


# --- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DiagnoseConfig:
    """Everything that determines a diagnosis; saved in run.json. `sweep` carries the model,
    photos, camera, distances, degradation, calibration and seed exactly as a sweep takes them;
    its `backends` are the quantized backends to diagnose (fp32 is the reference, always)."""

    sweep: SweepConfig
    max_probes: int | None = None  # a seeded subset of the photos; None: all of them
    layer: str | None = None  # the layer whose level histogram is plotted; None: the worst at the farthest distance
    snr_threshold_db: float = 10.0  # 000_'s line for 8-bit layers
    memory_mb: int = 1024  # bound on the float tensors + integer codes one batch holds

    def __post_init__(self) -> None:  # the CLI checks these where parsed; API callers too
        if self.max_probes is not None:
            require("diagnose: max_probes", self.max_probes, COUNT_RANGE, integer=True)
        require("diagnose: snr_threshold_db", self.snr_threshold_db, Range(-100.0, 200.0))
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


# --- which tensors are compared ----------------------------------------------------------------

@dataclass(frozen=True)
class Tap:
    """One reported layer: a float-graph tensor and its counterpart in one quantized graph."""

    layer: str  # the float node's name; the graph output's name for the embedding itself
    node: str
    op_type: str
    tensor: str  # in the float graph
    quant_tensor: str  # in the quantized graph, after its Q/DQ pair (what consumers see)
    codes: str | None = None  # the QuantizeLinear output (integer codes); None: the tensor stays float
    bits: int = 0
    signed: bool = False
    scale: float = math.nan
    zero_point: int = 0

    @property
    def levels(self) -> int:
        return 1 << self.bits if self.bits else 0

    @property
    def qmin(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    def level_values(self) -> np.ndarray:
        """The real value of every level, lowest code first."""
        return (self.qmin + np.arange(self.levels) - self.zero_point) * self.scale


@dataclass(frozen=True)
class FloatLayer:
    node: str
    op_type: str
    tensor: str
    layer: str


def float_layers(model: onnx.ModelProto, saved: set[str]) -> list[FloatLayer]:
    """Every float node output the augmentation exposes, in graph order (ONNX requires nodes to be
    topologically sorted, so that order is the depth). A graph output is named after itself, so
    the embedding row reads 'output' rather than the Reshape that produces it."""
    outputs = {o.name for o in model.graph.output}
    out: list[FloatLayer] = []
    for i, node in enumerate(model.graph.node):
        if node.op_type == "Constant":  # a value, not a layer: nothing is computed to compare
            continue
        name = node.name or f"{node.op_type}_{i}"
        tensors = [t for t in node.output if t in saved]
        for k, t in enumerate(tensors):
            layer = t if t in outputs else (name if len(tensors) == 1 else f"{name}:{k}")
            out.append(FloatLayer(name, node.op_type, t, layer))
    return out


def match_taps(layers: list[FloatLayer], qmodel: onnx.ModelProto) -> tuple[list[Tap], list[str]]:
    """(taps, unmatched float tensors). Names are matched with ORT's create_activation_matching,
    fed tensor names instead of tensors: it pairs X with X_DequantizeLinear_Output (or, for a
    graph output, X_QuantizeLinear_Input with X) the way ORT's QDQ quantizer names them."""
    graph = qmodel.graph
    names = {t: t for n in graph.node for t in n.output if t} | {i.name: i.name for i in graph.input}
    matching = create_activation_matching(names, {fl.tensor: fl.tensor for fl in layers})
    inits = {t.name: t for t in graph.initializer}
    quantizer_of = {n.input[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    taps: list[Tap] = []
    unmatched: list[str] = []
    for fl in layers:
        pair = matching.get(fl.tensor)
        if pair is None:
            if fl.tensor in names:  # left float in this backend (+float:SEL): compared as is
                taps.append(Tap(fl.layer, fl.node, fl.op_type, fl.tensor, fl.tensor))
            else:
                unmatched.append(fl.tensor)
            continue
        post, pre = str(pair["post_qdq"]), str(pair["pre_qdq"])
        q = quantizer_of.get(pre)
        tap = Tap(fl.layer, fl.node, fl.op_type, fl.tensor, post)
        if q is not None and q.input[1] in inits:
            scale = numpy_helper.to_array(inits[q.input[1]])
            zp_init = inits.get(q.input[2]) if len(q.input) > 2 and q.input[2] else None
            dtype = zp_init.data_type if zp_init is not None else next(
                (a.i for a in q.attribute if a.name == "output_dtype"), TensorProto.UINT8) or TensorProto.UINT8
            zp = int(numpy_helper.to_array(zp_init).ravel()[0]) if zp_init is not None else 0
            if scale.size == 1 and dtype in _BITS:  # per-tensor 8/16-bit codes: the levels are countable
                tap = Tap(fl.layer, fl.node, fl.op_type, fl.tensor, post, q.output[0], _BITS[dtype],
                          dtype in _SIGNED, float(scale.ravel()[0]), zp)
        taps.append(tap)
    return taps, unmatched


# --- weights -------------------------------------------------------------------------------

def weight_stats(weights: np.ndarray, axis: int) -> dict[str, float]:
    """weight_range, weight_asymmetry and channel_range_ratio of one float weight tensor."""
    w = np.asarray(weights, dtype=np.float64)
    lo, hi = float(w.min()), float(w.max())
    span = hi - lo
    channels = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    ranges = channels.max(axis=1) - channels.min(axis=1)
    # Dead channels (all zero, or 1e-30-sized leftovers of training) carry nothing to lose and
    # would put astronomic numbers in the ratio: channels narrower than 1e-6 of the widest are left out.
    live = ranges[ranges > _DEAD_CHANNEL * ranges.max()]
    return {"weight_range": span,
            "weight_asymmetry": abs(hi + lo) / span if span > 0 else 0.0,
            "channel_range_ratio": float(live.max() / live.min()) if live.size else math.nan}


def float_weight_table(model_path: Path, model: onnx.ModelProto) -> dict[str, dict[str, object]]:
    """node name -> weight statistics (and the weight's name), for Conv/Gemm/MatMul layers."""
    layers = graph_layers(model_path)
    inits = {t.name: t for t in model.graph.initializer}
    out: dict[str, dict[str, object]] = {}
    for node, (name, axis) in layers.weights.items():
        out[node] = {"weight": name, **weight_stats(numpy_helper.to_array(inits[name]), axis)}
    return out


def _link(model: Path, tmp: Path) -> Path:
    """`model` seen from our temporary folder. ORT's helpers run shape inference through a file
    written beside the model they are given ('<name>-inferred.onnx', then deleted): beside a
    cached model, two runs at once would trip over each other's file."""
    link = tmp / Path(model).name
    if not link.is_symlink():
        link.symlink_to(Path(model).resolve())
    return link


def quantized_weight_table(float_model: Path, quant_model: Path, tmp: Path) -> dict[str, dict[str, float]]:
    """weight name -> SNR of its dequantized weights (dB) and their bit width, by ORT's
    create_weight_matching. Its shape inference writes a file beside each model: symlinks in
    our temporary folder keep that out of the shared cache."""
    matched = create_weight_matching(str(_link(float_model, tmp)), str(_link(quant_model, tmp)))
    qmodel = onnx.load(str(quant_model), load_external_data=False)
    bits: dict[str, int] = {}
    inits = {t.name: t for t in qmodel.graph.initializer}
    for n in qmodel.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.input[0].endswith("_quantized"):
            bits[n.input[0][: -len("_quantized")]] = _BITS.get(inits[n.input[0]].data_type, 32)
    return {name: {"weight_snr_db": compute_signal_to_quantization_noice_ratio(m["float"], m["dequantized"]),
                   "weight_bits": bits.get(name, 0)} for name, m in matched.items()}


# --- augmented graphs ------------------------------------------------------------------------

def _session(path: Path) -> ort.InferenceSession:
    """A session for an augmented graph. Its intra-op threads do not spin between operators:
    spinning threads would take the cores from the statistics pool that runs beside them (on
    2 cores, spinning made a diagnosis 1.7 times slower)."""
    options = session_options()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _prune_saved_outputs(model: onnx.ModelProto, keep: set[str]) -> None:
    """Drop the augmentation's outputs (and their Reshape nodes) for tensors not reported."""
    graph = model.graph
    drop = [o for o in graph.output if o.name.endswith(_FLAT_SUFFIX) and o.name[: -len(_FLAT_SUFFIX)] not in keep]
    for o in drop:
        graph.output.remove(o)
    dropped = {o.name for o in drop}
    for n in [n for n in graph.node if n.output and n.output[0] in dropped]:
        graph.node.remove(n)


@dataclass
class FloatTaps:
    """The float graph, augmented once by ORT's modify_model_output_intermediate_tensors and
    pruned to the reported tensors (each exposed flattened)."""

    session: ort.InferenceSession
    input_name: str
    tensors: list[str]  # reported float tensors

    @classmethod
    def build(cls, augmented: Path, input_name: str, tensors: list[str]) -> FloatTaps:
        """`augmented`: the float model through modify_model_output_intermediate_tensors."""
        model = onnx.load(str(augmented))
        _prune_saved_outputs(model, set(tensors))
        path = augmented.with_name("float_taps.onnx")
        onnx.save(model, str(path))
        return cls(_session(path), input_name, tensors)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        names = [f"{t}{_FLAT_SUFFIX}" for t in self.tensors]
        return dict(zip(self.tensors, self.session.run(names, {self.input_name: x}), strict=True))


@dataclass
class QuantTaps:
    """One quantized graph, augmented once per backend: each reported tensor's dequantized value
    (flattened) and its QuantizeLinear's integer codes become outputs. The tensors before
    quantization are not exposed: that would stop ORT fusing DQ -> op -> Q into its integer
    kernels, and the graph diagnosed would no longer compute what the backend computes."""

    backend: str
    session: ort.InferenceSession
    input_name: str
    output_name: str
    taps: list[Tap]

    @classmethod
    def build(cls, backend: str, quant_path: Path, input_name: str, output_name: str, taps: list[Tap],
              tmp: Path) -> QuantTaps:
        model = onnx.load(str(quant_path))
        graph = model.graph
        flat = "facequant_flat_shape"
        graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), flat))
        existing = {o.name for o in graph.output}
        for tap in taps:
            out = f"{tap.tensor}::q"
            graph.node.append(helper.make_node("Reshape", [tap.quant_tensor, flat], [out], name=out))
            graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None]))
            if tap.codes and tap.codes not in existing:
                elem = {(8, False): TensorProto.UINT8, (8, True): TensorProto.INT8,
                        (16, False): TensorProto.UINT16, (16, True): TensorProto.INT16}[(tap.bits, tap.signed)]
                graph.output.append(helper.make_tensor_value_info(tap.codes, elem, None))
                existing.add(tap.codes)
        path = tmp / f"quant_taps_{re.sub(r'[^A-Za-z0-9._-]+', '_', backend)}.onnx"
        onnx.save(model, str(path))
        try:
            session = _session(path)
        except Exception as exc:
            raise FacequantError(f"{quant_path}: the augmented quantized graph does not load ({exc})") from exc
        return cls(backend, session, input_name, output_name, taps)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        names = [self.output_name] + [f"{t.tensor}::q" for t in self.taps] + \
            list(dict.fromkeys(t.codes for t in self.taps if t.codes))
        return dict(zip(names, self.session.run(names, {self.input_name: x}), strict=True))


# --- level histograms ------------------------------------------------------------------------

def code_counts(codes: np.ndarray, bits: int) -> np.ndarray:
    """Occurrences of each code, indexed by the code's unsigned bit pattern (2^bits entries).
    np.bincount: exact int64 counts, and on real 16-bit activation codes 3.4 times faster than
    OpenCV's calcHist (9.9 vs 33 ms a probe for a16w8 on MobileFaceNet)."""
    if bits not in (8, 16):
        raise ValueError(f"{bits}-bit codes are not counted")
    flat = np.ascontiguousarray(codes).reshape(-1).view(np.uint8 if bits == 8 else np.uint16)
    return np.bincount(flat, minlength=1 << bits)


def level_counts(codes_by_pattern: np.ndarray, tap: Tap) -> np.ndarray:
    """Counts per level, lowest code first (a signed type's patterns rotated into order)."""
    return np.roll(codes_by_pattern, -tap.qmin) if tap.signed else codes_by_pattern


def _longest_run(seen: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of True (seen must hold at least one)."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], seen.view(np.int8), [0]))))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k]) - 1


def add_occupancy(seen: np.ndarray, codes: np.ndarray, tap: Tap) -> None:
    """Mark in `seen` (per level, lowest first) every level `codes` occupies: exact, without
    counting every 8-bit code. Any level found in a sample of the codes is occupied; the longest
    run of levels known occupied (the dense middle of the distribution) cannot gain anything, so
    only the codes outside it (about 1 % on these models) are counted. 16-bit codes are counted
    in full: their occupied levels are too fragmented for a run to cover most codes."""
    if tap.bits != 8:
        seen |= level_counts(code_counts(codes, tap.bits), tap) > 0
        return
    u = np.ascontiguousarray(codes).reshape(-1).view(np.uint8)
    seen |= level_counts(code_counts(u[::_OCCUPANCY_SAMPLE], 8), tap) > 0
    first, last = _longest_run(seen)
    # The run's codes, by bit pattern, are one modular interval: one subtraction and one
    # comparison find the codes outside it, signed or not.
    start = np.array(first + tap.qmin).astype(np.int64).astype(np.uint8)
    outside = u[(u - start) > np.uint8(last - first)]
    if outside.size:
        seen |= level_counts(code_counts(outside, 8), tap) > 0


@dataclass
class LevelHistogram:
    """Occupancy of one activation's levels, for the histogram plot."""

    backend: str
    layer: str
    distance_m: float
    tap: Tap
    counts: np.ndarray  # per level, lowest first


# --- accumulation ----------------------------------------------------------------------------

@dataclass
class _Acc:
    """Running sums for one tensor at one distance: what SNR, PSNR and bins need, not the tensor."""

    sumsq: float = 0.0
    sse: float = 0.0
    peak: float = 0.0
    n: int = 0
    rails: int = 0  # codes at the lowest or highest level
    seen: np.ndarray | None = None  # per level: occupied on some probe so far
    counts: np.ndarray | None = None  # per level, only where the histogram is plotted


def snr_db(signal: float, noise: float) -> float:
    """10 log10(signal / noise): +inf for identical tensors, -inf for a zero float tensor."""
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def psnr_db(peak: float, noise: float, n: int) -> float:
    """10 log10(peak^2 / MSE), peak from the float tensor."""
    if noise <= 0 or n == 0:
        return math.inf
    if peak <= 0:
        return -math.inf
    return 10.0 * math.log10(peak * peak / (noise / n))


def _float_stats(f: np.ndarray) -> tuple[float, float, int]:
    """(sum of squares, peak |f|, elements) of one flat float tensor."""
    if not f.size:
        return 0.0, 0.0, 0
    return float(np.dot(f, f)), max(float(f.max()), -float(f.min())), int(f.size)


def _quant_stats(f: np.ndarray, q: np.ndarray, codes: np.ndarray | None, tap: Tap, acc: _Acc,
                 full_counts: bool) -> float:
    """sum (f - q)^2 of one tensor on one batch; the codes' levels are added to acc (the only job
    touching that accumulator until the batch is collected). q is this batch's own copy of the
    dequantized tensor, so it holds the difference: no new giant array per tensor."""
    np.subtract(f, q, out=q)
    if codes is not None:
        lo, hi = int(codes.min()), int(codes.max())  # cheap; the equality passes run only when needed
        top = tap.qmin + tap.levels - 1
        acc.rails += (int(np.count_nonzero(codes == lo)) if lo == tap.qmin else 0) + \
            (int(np.count_nonzero(codes == hi)) if hi == top else 0)
        if acc.seen is None:
            acc.seen = np.zeros(tap.levels, bool)
        if full_counts:  # the histogram plot wants counts, not just occupancy
            counts = level_counts(code_counts(codes, tap.bits), tap)
            acc.counts = counts if acc.counts is None else acc.counts + counts
            acc.seen |= counts > 0
        else:
            add_occupancy(acc.seen, codes, tap)
    return float(np.dot(q, q))


def _collect(jobs: list[tuple[str, Tap, Future[float]]], acc: dict[str, dict[str, _Acc]]) -> None:
    for name, tap, job in jobs:
        acc[name][tap.tensor].sse += job.result()


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
        modify_model_output_intermediate_tensors(str(_link(ps.normalized, tmp)), str(augmented))
        saved = {o.name[: -len(_FLAT_SUFFIX)] for o in onnx.load(str(augmented), load_external_data=False).graph.output
                 if o.name.endswith(_FLAT_SUFFIX)}
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

    floats: dict[str, _Acc]
    quants: dict[str, dict[str, _Acc]]
    n_probes: int
    face_px: float


def _measure(x_all: np.ndarray, graphs: _Graphs, built: dict[str, OrtBackend], pool: ThreadPoolExecutor,
             full_counts: bool, checks: dict[str, dict[str, object]], step: Callable[[], None]) -> tuple[
                 dict[str, _Acc], dict[str, dict[str, _Acc]]]:
    """One pass over a distance's probes, batch by batch: the float graph once per batch, then each
    backend's graph, while the pool reduces the previous backend's tensors to sums and levels."""
    floats = {t: _Acc() for t in graphs.float_taps.tensors}
    quants = {name: {t.tensor: _Acc() for t in qt.taps} for name, qt in graphs.quant_taps.items()}
    for start in range(0, len(x_all), graphs.batch):
        x = x_all[start : start + graphs.batch]
        tensors = graphs.float_taps.run(x)
        float_jobs = {t: pool.submit(_float_stats, tensors[t]) for t in graphs.float_taps.tensors}
        pending: list[tuple[str, Tap, Future[float]]] = []
        for name, qt in graphs.quant_taps.items():
            out = qt.run(x)
            if name not in checks:  # the diagnosed graph must compute what the backend computes, bit for bit
                deployed = built[name].run(x)
                checks[name] = {"probes": len(x), "max_abs_diff_vs_backend":
                                float(np.max(np.abs(out[qt.output_name].reshape(len(x), -1) - deployed)))}
            jobs = [(name, tap, pool.submit(_quant_stats, tensors[tap.tensor], out[f"{tap.tensor}::q"],
                                            out[tap.codes] if tap.codes else None, tap, quants[name][tap.tensor],
                                            full_counts)) for tap in qt.taps]
            _collect(pending, quants)  # the previous backend's statistics ran beside this backend's graph
            pending = jobs
        _collect(pending, quants)
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
    for name in backends:
        b = factory.make(name)
        assert isinstance(b, OrtBackend)  # every static recipe is
        if not any(n.op_type == "QuantizeLinear" for n in onnx.load(str(b.model_path), load_external_data=False).graph.node):
            raise FacequantError(f"backend '{name}': its model {b.model_path} holds no QuantizeLinear node")
        built[name] = b
    if progress:
        progress("calibration", 1, 1)
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
    run = {
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


# --- results directory -------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def heartbeat_path(backend: str) -> str:
    return f"heartbeat_{_safe(backend)}.png"


def histogram_path(backend: str) -> str:
    return f"histogram_{_safe(backend)}.png"


def _json_ready(obj: object) -> object:
    """JSON has no inf/nan and no numpy scalars: strings and Python numbers instead."""
    if isinstance(obj, dict):
        return {display(str(k)): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, str | Path):
        return display(obj)  # undecodable bytes as \\xNN, as in every output
    return obj


def write_diagnosis(result: DiagnoseResult, out: Path, force: bool = False) -> Path:
    """Write layers.csv, summary.csv, run.json and the plots into `out`, atomically: a failure
    midway leaves any old results intact."""
    out = Path(out)
    with staged_output(out, force) as staging:
        t0 = time.perf_counter()
        result.layers.to_csv(staging / LAYERS_CSV, index=False)
        result.summary.to_csv(staging / SUMMARY_CSV, index=False)
        for backend in result.backends:
            plot_heartbeat(result.layers, backend, result.config.snr_threshold_db, staging / heartbeat_path(backend))
        for backend, hist in result.histograms.items():
            plot_histogram(hist, staging / histogram_path(backend))
        plot_output_snr(result.summary, staging / OUTPUT_SNR_PLOT)
        run = dict(result.run)
        run["timings"] = {**result.run["timings"], "write_s": time.perf_counter() - t0}  # type: ignore[dict-item]
        run["files"] = sorted(p.name for p in staging.iterdir()) + [RUN_JSON]
        (staging / RUN_JSON).write_text(json.dumps(_json_ready(run), indent=2))
    return out


def plot_heartbeat(layers: pd.DataFrame, backend: str, threshold_db: float, path: Path) -> None:
    """SNR against depth, one line per distance (000_'s 'heartbeat'), head layers shaded."""
    plt = pyplot()
    rows = layers[layers.backend == backend]
    distances = sorted(rows.distance_m.unique())
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    for i, d in enumerate(distances):
        r = rows[rows.distance_m == d].sort_values("depth")
        snr = r.snr_db.where(np.isfinite(r.snr_db))
        ax.plot(r.depth, snr, color=cmap(i / max(len(distances) - 1, 1)), lw=1.2, label=f"{d:g} m")
    first = rows[rows.distance_m == distances[0]].sort_values("depth") if distances else rows
    head = first[first["head"].astype(bool)]
    if len(head):
        ax.axvspan(head.depth.min() - 0.5, head.depth.max() + 0.5, color="0.9", zorder=0, label="head")
    ax.axhline(threshold_db, color="crimson", ls="--", lw=1, label=f"{threshold_db:g} dB")
    weighted = first[first.weighted.astype(bool)]
    step = max(1, len(weighted) // 12)
    ax.set_xticks(weighted.depth.iloc[::step], weighted.layer.iloc[::step], rotation=60, fontsize=7)
    ax.set(xlabel="depth (weighted layers labelled)", ylabel="SNR vs float (dB)",
           title=f"{backend}: per-layer SNR by distance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    save_figure(fig, path)


def plot_histogram(hist: LevelHistogram, path: Path) -> None:
    """Occupancy of one activation's quantization levels (000_'s 'wasted bits' figure). 16-bit
    levels are drawn in groups of consecutive levels, with the share of each group's levels
    occupied on a second axis: 65536 bars cannot be read."""
    plt = pyplot()
    values, counts, scale = hist.tap.level_values(), hist.counts, hist.tap.scale
    used = int(np.count_nonzero(counts))
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    group = max(1, len(counts) // _PLOT_GROUPS)
    grouped = counts.reshape(-1, group).sum(axis=1)
    edges = np.append(values[::group], values[-1] + scale) - scale / 2
    label = "codes on these probes" + (f" (per {group} levels)" if group > 1 else "")
    ax.stairs(grouped, edges, fill=True, color="tab:blue", alpha=0.8, label=label)
    occupied = values[counts > 0]
    if occupied.size:
        ax.axvspan(occupied.min(), occupied.max(), color="tab:green", alpha=0.08, label="occupied span")
    ax.set_yscale("symlog", linthresh=1)
    ax.set(xlabel=f"activation value ({hist.tap.bits}-bit levels, scale {scale:.3g}, zero point {hist.tap.zero_point})",
           ylabel="count", title=f"{hist.backend}: {hist.layer} at {hist.distance_m:g} m: {used} of {hist.tap.levels} "
                                 f"levels used ({used / hist.tap.levels:.1%})")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if group > 1:
        share = ax.twinx()
        line, = share.plot((edges[:-1] + edges[1:]) / 2, 100 * (counts > 0).reshape(-1, group).mean(axis=1),
                           color="tab:orange", lw=1, label="levels occupied in the group (%)")
        share.set(ylabel="levels occupied (%)", ylim=(0, 105))
        handles.append(line)
        labels.append(line.get_label())
    ax.legend(handles, labels, fontsize=8, loc="upper left")
    save_figure(fig, path)


def plot_output_snr(summary: pd.DataFrame, path: Path) -> None:
    """SNR of the embedding output against distance, one line per backend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for backend, rows in summary.groupby("backend", sort=False):
        ax.plot(rows.distance_m, rows.output_snr_db, marker="o", label=str(backend))
    ax.set(xlabel="distance (m)", ylabel="embedding output SNR vs float (dB)",
           title="Quantization noise on the embedding, by distance")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def _db(value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    return "-" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.1f}")


def print_diagnosis(result: DiagnoseResult, out: Path | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    threshold = result.config.snr_threshold_db
    table = Table(title=f"{result.model_name}: layer SNR vs float ({len(result.layers.layer.unique())} layers)")
    for col in ("backend", "dist", "mean", "min (layer)", f"<{threshold:g}dB", "first<", "head/back", "output"):
        table.add_column(col, no_wrap=True, justify="left" if col in ("backend", "min (layer)") else "right")
    for r in result.summary.itertuples():
        first = "-" if math.isnan(float(r.first_below_depth)) else str(int(r.first_below_depth))
        table.add_row(str(r.backend), f"{r.distance_m:g} m", _db(r.mean_snr_db), f"{_db(r.min_snr_db)} {r.min_snr_layer}",
                      f"{r.layers_below_threshold}/{r.n_layers}", first,
                      f"{_db(r.head_mean_snr_db)}/{_db(r.backbone_mean_snr_db)}", _db(r.output_snr_db))
    console = Console()
    console.print(table)
    console.print("SNR in dB over the probes at each distance; first<: depth where SNR first drops below "
                  f"{threshold:g} dB; head: the last {HEAD_WEIGHTED_LAYERS} weighted layers + output", style="dim")
    far = max(result.distances_m)
    for backend in result.backends:
        rows = result.summary[(result.summary.backend == backend) & (result.summary.distance_m == far)]
        if len(rows):
            console.print(f"{backend} worst at {far:g} m: {rows.worst10.iloc[0].replace(';', ', ')}")
    for name, check in (result.run.get("checks") or {}).items():  # type: ignore[union-attr]
        if float(check["max_abs_diff_vs_backend"]) > 1e-5:
            console.print(f"{name}: the diagnosed graph's embedding differs from the backend's by "
                          f"{check['max_abs_diff_vs_backend']:.3g} (run.json checks)", style="yellow")
    if out is not None:
        console.print(f"results in {out}")

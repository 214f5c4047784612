"""Measuring tensors: augmented float and quantized graphs, level histograms, SNR accumulation."""

from __future__ import annotations

import math
import re
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

#: progress(stage, done, total): stages "faces", "calibration" (building backends), "diagnose".
from facequant.analysis.diagnose.taps import FLAT_SUFFIX, Tap
from facequant.backends.base import session_options
from facequant.errors import FacequantError

_OCCUPANCY_SAMPLE = 16  # every 16th code proves the dense middle of an 8-bit distribution occupied
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
    drop = [o for o in graph.output if o.name.endswith(FLAT_SUFFIX) and o.name[: -len(FLAT_SUFFIX)] not in keep]
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
        names = [f"{t}{FLAT_SUFFIX}" for t in self.tensors]
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
class TensorSums:
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


def float_stats(f: np.ndarray) -> tuple[float, float, int]:
    """(sum of squares, peak |f|, elements) of one flat float tensor."""
    if not f.size:
        return 0.0, 0.0, 0
    return float(np.dot(f, f)), max(float(f.max()), -float(f.min())), int(f.size)


def quant_stats(f: np.ndarray, q: np.ndarray, codes: np.ndarray | None, tap: Tap, acc: TensorSums,
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


def collect_stats(jobs: list[tuple[str, Tap, Future[float]]], acc: dict[str, dict[str, TensorSums]]) -> None:
    for name, tap, job in jobs:
        acc[name][tap.tensor].sse += job.result()



"""Which tensors are compared: float layers matched to their quantized taps, and weight statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnxruntime.quantization.qdq_loss_debug import (
    compute_signal_to_quantization_noice_ratio,
    create_activation_matching,
    create_weight_matching,
)

from facequant.backends.quantize.layers import graph_layers

#: progress(stage, done, total): stages "faces", "calibration" (building backends), "diagnose".


FLAT_SUFFIX = "_ReshapedSavedOutput"  # what modify_model_output_intermediate_tensors appends
_BITS = {TensorProto.UINT8: 8, TensorProto.INT8: 8, TensorProto.UINT16: 16, TensorProto.INT16: 16}
_SIGNED = {TensorProto.INT8, TensorProto.INT16}
_DEAD_CHANNEL = 1e-6  # relative range below which a weight channel counts as dead
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


def link_into(model: Path, tmp: Path) -> Path:
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
    matched = create_weight_matching(str(link_into(float_model, tmp)), str(link_into(quant_model, tmp)))
    qmodel = onnx.load(str(quant_model), load_external_data=False)
    bits: dict[str, int] = {}
    inits = {t.name: t for t in qmodel.graph.initializer}
    for n in qmodel.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.input[0].endswith("_quantized"):
            bits[n.input[0][: -len("_quantized")]] = _BITS.get(inits[n.input[0]].data_type, 32)
    return {name: {"weight_snr_db": compute_signal_to_quantization_noice_ratio(m["float"], m["dequantized"]),
                   "weight_bits": bits.get(name, 0)} for name, m in matched.items()}



"""NPU constraints: the power-of-two scale rewrite (activation scales to the nearest power of
two, weight scales to the one that re-quantizes the weights with less error) and its summary."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from facequant.errors import FacequantError
from facequant.values import as_float

# --- power-of-two scales ---------------------------------------------------------------------

def _nearest_pow2(scale: np.ndarray) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise FacequantError(f"power-of-two rewrite: scale {s.ravel()[:4]} is not positive and finite")
    return np.exp2(np.round(np.log2(s)))


def _axis_shape(dq: onnx.NodeProto, q: np.ndarray, scale: np.ndarray) -> list[int]:
    """The shape that broadcasts a DequantizeLinear's scale over its constant (per-axis or not)."""
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[next((a.i for a in dq.attribute if a.name == "axis"), 1)] = -1
    return shape


def _per_axis(zp: np.ndarray, dq: onnx.NodeProto, q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return zp.reshape(_axis_shape(dq, q, scale)) if zp.size > 1 else zp


def _best_pow2_for_constant(q: np.ndarray, zp: np.ndarray, s_old: np.ndarray, axis_shape: list[int]
                            ) -> np.ndarray:
    """For a quantized constant, per scale element: the power of two just below or just above
    the old scale, whichever re-quantizes the values with the smaller squared error. Nearest in
    log2 alone can round down by up to 1/sqrt(2) and clip a tensor's largest weights (a 16-bit
    layer's especially: its scale has no slack); weights are known, so the choice can be
    measured, as fixed-point toolchains do when they pick a tensor's fractional bits."""
    real = (q.astype(np.float64) - zp) * s_old.reshape(axis_shape)
    lo, hi = _qrange(q.dtype)
    reduce_axes = tuple(i for i, n in enumerate(axis_shape) if n == 1) if s_old.size > 1 else None

    def error(cand: np.ndarray) -> np.ndarray:
        c = cand.reshape(axis_shape)
        deq = (np.clip(np.round(real / c) + zp, lo, hi) - zp) * c
        return np.asarray(np.sum((deq - real) ** 2, axis=reduce_axes)).reshape(s_old.shape)

    below, above = np.exp2(np.floor(np.log2(s_old))), np.exp2(np.ceil(np.log2(s_old)))
    # ties keep the lower power of two, as before
    return np.where(error(above) < error(below), above, below)


def _qrange(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _scalar_or_list(a: np.ndarray) -> float | list[float]:
    return float(a.ravel()[0]) if a.size == 1 else [float(v) for v in a.ravel()]


def rewrite_pow2_scales(model: onnx.ModelProto) -> list[dict[str, object]]:
    """Round every QuantizeLinear / DequantizeLinear scale of a QDQ model to a power of two, in
    place, keeping the quantized model consistent:

    - activation scales go to the nearest power of two in log2 (the calibrated range is itself
      an estimate; nearest keeps its expected resolution);
    - weight scales go to the power of two just below or above, whichever re-quantizes the
      weights with the smaller squared error (_best_pow2_for_constant);

    - activation Q/DQ pairs share their scale initializer, so replacing its value moves both;
    - constant weights behind a DequantizeLinear are re-quantized with the new scale,
      q' = clip(round((q - zp) * s_old / s_new) + zp);
    - int32 biases (scale s_in * s_w) get the scale s_in' * s_w' of their (rewritten) input
      and weight, itself a power of two, and are re-quantized to it.

    Returns one record per scale tensor: tensor, kind (activation / weight / bias), old and new
    scale, log2(new / old), and for constants how many values clipped."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    arrays: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(inits[name])
        return arrays[name]

    def store(name: str, array: np.ndarray) -> None:
        array = array.astype(value(name).dtype)  # scales stay float32, weights their integer type
        arrays[name] = array
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in qdq:
        if len(n.input) < 2 or n.input[1] not in inits:
            raise FacequantError(f"power-of-two rewrite: {n.name} has no constant scale")
    # Classify each scale initializer by what it quantizes.
    kind: dict[str, str] = {}
    constant_of: dict[str, onnx.NodeProto] = {}  # scale name -> the DequantizeLinear of a constant
    for n in qdq:
        s = n.input[1]
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            kind[s] = "bias" if inits[n.input[0]].data_type == onnx.TensorProto.INT32 else "weight"
            constant_of[s] = n
        else:
            kind.setdefault(s, "activation")
    old = {s: value(s).astype(np.float64) for s in kind}
    moves: list[dict[str, object]] = []
    new: dict[str, np.ndarray] = {}
    for s, k in kind.items():
        if k == "activation":
            new[s] = _nearest_pow2(old[s])
        elif k == "weight":
            _nearest_pow2(old[s])  # the same check for a bad scale
            dq = constant_of[s]
            q = value(dq.input[0])
            zp = value(dq.input[2]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else np.zeros(1)
            new[s] = _best_pow2_for_constant(q, _per_axis(zp, dq, q, old[s]), old[s], _axis_shape(dq, q, old[s]))
    # Bias scales follow from the rewritten input and weight scales of the node they feed.
    dq_out_scale = {n.output[0]: n.input[1] for n in qdq if n.op_type == "DequantizeLinear"}
    bias_of = {n.output[0]: n.input[1] for n in qdq if kind.get(n.input[1]) == "bias"}
    for node in graph.node:
        if len(node.input) > 2 and node.input[2] in bias_of:
            s_in, s_w = dq_out_scale.get(node.input[0]), dq_out_scale.get(node.input[1])
            if s_in in new and s_w in new:
                new[bias_of[node.input[2]]] = new[s_in] * new[s_w]
    for s in kind:
        if s not in new:  # a bias whose input or weight scale is not known: round it like the rest
            new[s] = _nearest_pow2(old[s])
    for s, k in kind.items():
        record: dict[str, object] = {"tensor": s, "kind": k, "old": _scalar_or_list(old[s]),
                                     "new": _scalar_or_list(new[s]),
                                     "log2_ratio": _scalar_or_list(np.log2(new[s] / old[s]))}
        if s in constant_of:
            dq = constant_of[s]
            q = value(dq.input[0])
            zp = value(dq.input[2]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else np.zeros(1)
            shape = _axis_shape(dq, q, old[s])
            s_old, s_new = old[s].reshape(shape), new[s].reshape(shape)
            zp = _per_axis(zp, dq, q, old[s])
            real = (q.astype(np.float64) - zp) * s_old
            lo, hi = _qrange(q.dtype)
            unclipped = np.round(real / s_new) + zp
            record["clipped"] = int(np.sum((unclipped < lo) | (unclipped > hi)))
            store(dq.input[0], np.clip(unclipped, lo, hi).astype(q.dtype))
        store(s, new[s].reshape(old[s].shape))
        moves.append(record)
    return moves


def pow2_summary(moves: Sequence[dict[str, object]]) -> dict[str, object]:
    """count, max and median |log2(new/old)| over the rounded scales (activations, weights);
    bias scales are products of those and are counted apart."""
    rounded = [m for m in moves if m["kind"] != "bias"]
    ratios = np.abs(np.concatenate([np.ravel(np.asarray(m["log2_ratio"], dtype=np.float64)) for m in rounded])) \
        if rounded else np.zeros(0)
    return {"scales": len(rounded), "bias_scales": len(moves) - len(rounded),
            "max_abs_log2_ratio": float(ratios.max()) if ratios.size else 0.0,
            "median_abs_log2_ratio": float(np.median(ratios)) if ratios.size else 0.0,
            "clipped_values": int(sum(as_float(m.get("clipped", 0)) for m in moves))}

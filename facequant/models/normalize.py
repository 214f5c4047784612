"""normalize_model: a cached copy with opset >= 13, a dynamic batch and any output L2 normalization cut off, proved to compute the same embeddings as the original."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facequant import cache as cache_entry
from facequant import settings
from facequant.errors import BadModelError
from facequant.models.files import (
    BATCH_PARAM,
    META_L2_CUT,
    META_PREPROCESS,
    META_SOURCE_SHA,
    META_VERSION,
    load_onnx,
    model_sha256,
    one_line,
)
from facequant.models.graph import L2Tail, cut_l2, l2_tail
from facequant.models.spec import (
    Channels,
    ModelSpec,
    inferred_preprocessing,
    inspect_model,
    real_inputs,
    value_dims,
)

#: Bump whenever normalize_model's rewrite changes: the cache file name carries it, so old
#: rewrites are never reused by new code. 3: an output L2 normalization is cut off.
NORMALIZE_VERSION = 3
#: Lowest opset normalize_model produces: per-channel QDQ quantization needs >= 13.
MIN_OPSET = 13
#: Batch size the normalized copy is verified at (anything > 1 exposes a hard-coded batch).
VERIFY_BATCH = 3
# --------------------------------------------------------------------------- normalize


def normalize_model(path: str | Path, cache: Path | None = None, atol: float = 1e-5) -> Path:
    """A verified copy of the model with opset >= 13, a dynamic batch and, when the graph
    L2-normalizes its output, the raw embedding before that normalization as its output (same
    name and shape), in one file (external data included), cached by the sha256 of every byte
    the source reads; the cached copy is checked against its recorded hash on every use."""
    src = Path(path).expanduser()
    spec = inspect_model(src)  # fail early, with a clear reason, on files that are no use
    sha = model_sha256(src)  # a missing external-data file fails here, warm cache or not
    cache_root = Path(cache) if cache is not None else settings.cache_dir() / "models"
    target = cache_root / f"{sha[:32]}.norm-v{NORMALIZE_VERSION}.onnx"
    key = {"source_sha256": sha, "normalize_version": NORMALIZE_VERSION}
    if cache_entry.verified(target, key, "normalized model"):
        return target

    original = load_onnx(src, external_data=True)
    tail = l2_tail(original)
    model = _rewrite(src, cut_l2(original, tail) if tail else original, spec)
    meta = {m.key: m.value for m in model.metadata_props}
    meta.setdefault(META_SOURCE_SHA, sha)  # a re-normalized copy keeps the first source
    meta[META_VERSION] = str(NORMALIZE_VERSION)
    source_why = inferred_preprocessing(src, original)[3]
    meta[META_PREPROCESS] = json.dumps({"mean": _json_channels(spec.mean), "std": _json_channels(spec.std),
                                         "channel_order": spec.channel_order, "why": source_why})
    if tail is not None:
        meta[META_L2_CUT] = json.dumps(tail.to_dict())
    helper.set_model_props(model, meta)
    data = model.SerializeToString()
    _verify(src, data, spec, atol, unit_reference=tail is not None)

    cache_root.mkdir(parents=True, exist_ok=True)
    # Temp file in the same folder, then os.replace: readers never see a half-written model.
    fd, tmp = tempfile.mkstemp(dir=cache_root, prefix=".tmp-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        cache_entry.commit(Path(tmp), target, key)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _json_channels(value: Channels) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


def l2_cut(path: str | Path) -> L2Tail | None:
    """The output L2 normalization normalize_model cut off this model (read from a normalized
    copy's metadata, or found in a source file's graph), or None."""
    p = Path(path).expanduser()
    model = load_onnx(p, external_data=False)
    meta = {m.key: m.value for m in model.metadata_props}
    if META_VERSION in meta:
        if META_L2_CUT not in meta:
            return None
        d = json.loads(meta[META_L2_CUT])
        return L2Tail(raw=d["raw_tensor"], output=d["output"], pattern=d["pattern"], nodes=tuple(d["nodes"]))
    return l2_tail(model)


def _rewrite(src: Path, original: onnx.ModelProto, spec: ModelSpec) -> onnx.ModelProto:
    """Raise the opset, make batch symbolic, un-hard-code batch in constant Reshapes."""
    model = onnx.ModelProto()
    model.CopyFrom(original)
    if spec.opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:
            raise BadModelError(
                src, f"cannot convert opset {spec.opset} to {MIN_OPSET}: {one_line(e)}"
            ) from e

    graph = model.graph
    # Shapes of the original at its own batch tell which Reshapes act on a batch-1 tensor.
    shapes = _inferred_dims(original)

    for value in (real_inputs(graph)[0], graph.output[0]):
        dim0 = value.type.tensor_type.shape.dim[0]
        dim0.Clear()
        dim0.dim_param = BATCH_PARAM

    consts = _constant_shapes(graph)
    taken = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        target = consts[node.input[1]]
        data_dims = shapes.get(node.input[0])
        data_batch = data_dims[0] if data_dims else None
        # A leading 1 on a tensor whose dim 0 is 1 (or unknown) is the hard-coded batch:
        # 0 copies dim 0 from the input instead, which is identical at batch 1.
        if target.ndim != 1 or target.size == 0 or target[0] != 1 or data_batch not in (1, None):
            continue
        fixed = target.copy()
        fixed[0] = 0
        # A new initializer, not an in-place edit: the old constant may feed other nodes.
        name = _fresh(f"{node.input[1]}_batch0", taken)
        graph.initializer.append(numpy_helper.from_array(fixed.astype(np.int64), name))
        node.input[1] = name
        for attr in node.attribute:
            if attr.name == "allowzero":  # opset >= 14: 0 must mean "copy", not "zero"
                attr.i = 0

    # Constants no node reads any more (the replaced shapes) would make ORT warn on every load.
    used = {name for n in graph.node for name in n.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
        stale_inputs = [i for i in graph.input if i.name == init.name]
        for i in stale_inputs:
            graph.input.remove(i)

    # value_info holds shapes for batch 1: stale now, so drop it and infer again.
    del graph.value_info[:]
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as e:
        raise BadModelError(
            src, f"shape inference failed on the rewritten model: {one_line(e)}"
        ) from e
    return model


def _inferred_dims(model: onnx.ModelProto) -> dict[str, list[str | int]]:
    """Every value's shape, from shape inference on the (unchanged) model."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model  # no shapes: Reshapes are then judged by their constant alone
    g = inferred.graph
    out: dict[str, list[str | int]] = {}
    for v in [*g.input, *g.value_info, *g.output]:
        dims = value_dims(v)
        if dims is not None:
            out[v.name] = dims
    return out


def _constant_shapes(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """int64 values of initializers and Constant nodes (candidate Reshape shapes)."""
    consts: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        if init.data_type == TensorProto.INT64:
            consts[init.name] = numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type != "Constant":
            continue
        for attr in node.attribute:
            if attr.name == "value" and attr.t.data_type == TensorProto.INT64:
                consts[node.output[0]] = numpy_helper.to_array(attr.t)
            elif attr.name == "value_ints":
                consts[node.output[0]] = np.array(list(attr.ints), dtype=np.int64)
    return consts


def _fresh(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _session(model: str | bytes) -> Any:
    import onnxruntime as ort  # heavy import, only needed here

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.ort_threads()
    opts.log_severity_level = 3  # shape-mismatch warnings on fixed-batch models are expected
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _nchw(value: Channels) -> float | np.ndarray:
    return np.asarray(value, dtype=np.float32).reshape(1, 3, 1, 1) if isinstance(value, tuple) else value


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _verify(src: Path, rewritten: bytes, spec: ModelSpec, atol: float, unit_reference: bool = False) -> None:
    """The rewrite must run at batch > 1 and match the original sample by sample. With
    unit_reference (the output L2 normalization cut off), the rewrite's raw embeddings,
    L2-normalized, must match the original's output: the cut tensor is exactly the one the
    original normalized."""
    h, w = spec.input_size
    rng = np.random.default_rng(0)
    # Preprocessed random pixels: the value range the model sees in real use.
    pixels = rng.uniform(0, 255, size=(VERIFY_BATCH, 3, h, w)).astype(np.float32)
    x = ((pixels - _nchw(spec.mean)) / _nchw(spec.std)).astype(np.float32)
    try:
        orig = _session(str(src))
    except Exception as e:
        raise BadModelError(src, f"onnxruntime cannot load the model: {one_line(e)}") from e
    ref = []
    for i in range(VERIFY_BATCH):
        try:
            (y,) = orig.run([spec.output_name], {spec.input_name: x[i : i + 1]})
        except Exception as e:
            raise BadModelError(
                src, f"onnxruntime cannot run the model at batch 1: {one_line(e)}"
            ) from e
        if np.isnan(y).any():
            raise BadModelError(src, "model produces NaN on a test input")
        if not np.isfinite(y).all():
            raise BadModelError(src, "model produces inf on a test input")
        if y.shape != (1, spec.embedding_dim):
            raise BadModelError(
                src,
                f"model output has shape {list(y.shape)} for one input: expected [1, {spec.embedding_dim}]",
            )
        ref.append(y)
    expected = np.concatenate(ref, axis=0)

    hint = "something in the graph still hard-codes batch 1"
    try:
        new = _session(rewritten)
        (got,) = new.run([spec.output_name], {spec.input_name: x})
    except Exception as e:
        raise BadModelError(
            src, f"normalized model fails at batch {VERIFY_BATCH} ({hint}): {one_line(e)}"
        ) from e
    if got.shape != expected.shape:
        raise BadModelError(
            src,
            f"normalized model gives shape {list(got.shape)} at batch {VERIFY_BATCH}, "
            f"expected {list(expected.shape)} ({hint})",
        )
    if unit_reference:
        got = _unit(got.astype(np.float64))
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if not diff <= atol:  # `not <=` so that a NaN diff fails too
        raise BadModelError(
            src,
            f"normalized model differs from the original by {diff:.3g} (max abs) > atol {atol:g}"
            + (" (after cutting its output L2 normalization)" if unit_reference else ""),
        )



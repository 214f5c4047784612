"""Find, inspect and normalize ArcFace-style face-embedding ONNX models.

`inspect_model` reads a model file and infers how to feed it (a `ModelSpec`), the way
insightface's `ArcFaceONNX` does, with overrides from a config file. `normalize_model`
writes a cached copy that quantizers and batched runs can use (opset >= 13, dynamic batch)
and proves it computes the same embeddings. `resolve_model` turns what a user types
(a path, `faceplugin`, an insightface pack name) into a model file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facequant import cache as cache_entry
from facequant import settings
from facequant.errors import BadModelError, FacequantError
from facequant.models.graph import L2Tail, cut_l2, input_normalization, l2_tail

#: sha256 of each file in faceplugin-face-recognition-js@0.0.1 package/model/ (SOURCE.md).
FACEPLUGIN_SHA256: dict[str, str] = {
    "fr_feature.onnx": "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
    "fr_detect.onnx": "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
    "fr_landmark.onnx": "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
}
#: The npm package that ships the faceplugin models, and the sha256 of its tarball.
FACEPLUGIN_NPM_SPEC = "faceplugin-face-recognition-js@0.0.1"
FACEPLUGIN_TGZ_SHA256 = "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba"

#: insightface model packs that hold an ArcFace recognition model.
INSIGHTFACE_PACKS: tuple[str, ...] = ("buffalo_l", "buffalo_s", "antelopev2")

#: Bump whenever normalize_model's rewrite changes: the cache file name carries it, so old
#: rewrites are never reused by new code. 3: an output L2 normalization is cut off.
NORMALIZE_VERSION = 3
#: Lowest opset normalize_model produces: per-channel QDQ quantization needs >= 13.
MIN_OPSET = 13
#: Name of the symbolic batch dimension in normalized models.
BATCH_PARAM = "batch"
#: Batch size the normalized copy is verified at (anything > 1 exposes a hard-coded batch).
VERIFY_BATCH = 3

# Keys normalize_model writes into metadata_props, so that inspecting the normalized copy
# gives the same preprocessing as the source (its sha256 and node names changed).
_META_SOURCE_SHA = "facequant.source_sha256"
_META_PREPROCESS = "facequant.preprocess"
_META_VERSION = "facequant.normalize_version"
_META_L2_CUT = "facequant.l2_cut"

_NPM_TIMEOUT_S = 180
_PROBE_TIMEOUT_S = 5.0


#: A preprocessing constant: one number for every channel, or one per channel.
Channels = float | tuple[float, float, float]


def channel_values(value: object) -> Channels:
    """A mean or std as ModelSpec holds it: a float, or a 3-tuple when the channels differ.
    Takes a number, a sequence of 1 or 3 numbers, or text "a,b,c"; ValueError otherwise."""
    if isinstance(value, str):
        items: list[object] = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple | np.ndarray):
        items = list(np.asarray(value, dtype=object).ravel())
    else:
        items = [value]
    if len(items) not in (1, 3):
        raise ValueError("one number or three (one per channel)")
    numbers = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float | str | np.number):
            raise ValueError("numbers")
        try:
            numbers.append(float(item))  # type: ignore[arg-type]
        except ValueError:
            raise ValueError("numbers") from None
    if not all(np.isfinite(numbers)):
        raise ValueError("finite numbers")
    if len(set(numbers)) == 1:
        return numbers[0]  # the same for every channel: a scalar, as before per-channel values
    return (numbers[0], numbers[1], numbers[2])


def format_channels(value: Channels) -> str:
    """127.5, or 103.939,116.779,123.68 (the --model-override syntax)."""
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"


@dataclass(frozen=True)
class ModelSpec:
    """How to feed one embedding model: names, input size, preprocessing, output size."""

    path: str  # file the spec was read from
    input_name: str
    output_name: str
    input_size: tuple[int, int]  # (height, width)
    # preprocessing: (pixel - mean) / std, one number or one per channel in channel_order's order
    mean: Channels
    std: Channels
    channel_order: str  # "RGB" or "BGR": the order the model expects
    embedding_dim: int
    opset: int
    batch_dim: str | int  # 'batch' (symbolic) or the fixed int

    def to_dict(self) -> dict:
        """A JSON-ready dict (input_size and per-channel mean/std as lists)."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        for key in ("mean", "std"):
            d[key] = list(d[key]) if isinstance(d[key], tuple) else d[key]
        return d


_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModelSpec))


#: A file changed this recently is hashed afresh: a rewrite within the file system's clock
#: resolution keeps size and times, so the memo could not tell (git's "racy clean" rule).
_RACY_NS = 2_000_000_000


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):  # models can be hundreds of MB
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _file_sha256_cached(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    return _sha256(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's content, memoised on (path, size, mtime, ctime, inode): models
    are hashed once. Any rewrite changes ctime (which no one can set back) or the inode, and
    a file changed in the last 2 s is always read again."""
    st = os.stat(path)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
        return _sha256(os.fspath(path))
    return _file_sha256_cached(os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def model_files(path: str | os.PathLike[str]) -> list[Path]:
    """The model file and every external-data file it references: every byte the model reads.
    A missing external file is a one-line error naming it."""
    from onnx import external_data_helper

    path = Path(path).expanduser()
    model = _load(path, external_data=False)
    files = [path]
    # onnx's own walk over initializers, Constant attributes and subgraphs
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            location = path.parent / external_data_helper.ExternalDataInfo(tensor).location
            if location not in files:
                files.append(location)
    for file in files[1:]:
        if not file.is_file():
            raise BadModelError(file, f"external data file of {path.name} not found")
    return files


def model_sha256(path: str | os.PathLike[str]) -> str:
    """Identity of a model for caches and run.json: the file's sha256 when it holds all its
    weights (so it matches published checksums), else a sha256 over the file's and each
    external-data file's hash."""
    files = model_files(path)
    if len(files) == 1:
        return file_sha256(files[0])
    h = hashlib.sha256()
    for file in files:
        h.update(f"{file.relative_to(files[0].parent).as_posix()}\0{file_sha256(file)}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- inspect


def load_graph(path: str | Path) -> onnx.ModelProto:
    """A model file's graph without its external data (structure and small constants), with
    facequant's errors for a missing or invalid file."""
    return _load(Path(path).expanduser(), external_data=False)


def _load(path: Path, external_data: bool) -> onnx.ModelProto:
    """onnx.load with facequant errors: missing file, not an ONNX protobuf."""
    if not path.is_file():
        raise BadModelError(path, "model file not found")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as e:  # protobuf DecodeError, external-data errors, ...
        raise BadModelError(path, f"not a valid ONNX protobuf ({_one_line(e)})") from e
    # Arbitrary bytes sometimes decode as an (almost) empty ModelProto: treat that as invalid.
    if model.ir_version <= 0 or not model.HasField("graph") or len(model.graph.node) == 0:
        raise BadModelError(path, "not a valid ONNX protobuf (no graph)")
    return model


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dims(value: onnx.ValueInfoProto) -> list[str | int] | None:
    """A value's shape as ints and symbol names ('?' for unknown), or None if rank is unknown."""
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: list[str | int] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or "?")
    return out


def _fmt_shape(dims: list[str | int] | None) -> str:
    return "[?]" if dims is None else "[" + ", ".join(str(d) for d in dims) + "]"


def _real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    # Old exporters (IR < 4, e.g. mxnet ArcFace) also list every initializer as an input.
    inits = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in inits]


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


#: Where an inferred spec's preprocessing came from (models check and run.json say which).
PREPROCESS_GRAPH = "the graph normalizes its own input: raw pixels"
PREPROCESS_KNOWN = "faceplugin's model card: (pixel - 127) / 128, RGB"
PREPROCESS_DEFAULT = "insightface's ArcFace default: (pixel - 127.5) / 127.5, RGB"
PREPROCESS_SOURCE = "the source model's (a normalized copy)"


def _inferred_preprocessing(path: Path, model: onnx.ModelProto) -> tuple[Channels, Channels, str, str]:
    """(mean, std, channel_order, why) for a model file, from its graph's ops, never node names:
    a graph that normalizes its own input takes raw pixels; else the ArcFace convention."""
    meta = {m.key: m.value for m in model.metadata_props}
    if _META_PREPROCESS in meta:
        # A normalize_model copy: keep the preprocessing inferred from its source file.
        pre = json.loads(meta[_META_PREPROCESS])
        return (channel_values(pre["mean"]), channel_values(pre["std"]), str(pre["channel_order"]),
                str(pre.get("why", PREPROCESS_SOURCE)))
    if file_sha256(path) == FACEPLUGIN_SHA256["fr_feature.onnx"]:
        # faceplugin's MobileFaceNet was trained on (pixel - 127) / 128, RGB (SOURCE.md).
        return 127.0, 128.0, "RGB", PREPROCESS_KNOWN
    if input_normalization(model) is not None:
        return 0.0, 1.0, "RGB", PREPROCESS_GRAPH
    # ArcFaceONNX feeds blobFromImages(..., swapRB=True) of BGR images: RGB, 127.5 / 127.5.
    return 127.5, 127.5, "RGB", PREPROCESS_DEFAULT


def inferred_preprocessing_source(path: str | Path) -> str:
    """Why inspect_model chose the preprocessing it did for this file (before overrides)."""
    p = Path(path).expanduser()
    return _inferred_preprocessing(p, _load(p, external_data=False))[3]


def inspect_model(path: str | Path, overrides: Mapping[str, object] | None = None) -> ModelSpec:
    """Read an embedding model's spec from the file; `overrides` replace inferred fields."""
    p = Path(path).expanduser()
    model = _load(p, external_data=False)
    graph = model.graph

    inputs = _real_inputs(graph)
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise BadModelError(
            p, f"model has {len(inputs)} inputs ({names}): expected exactly 1 image input"
        )
    inp = inputs[0]
    in_dims = _dims(inp)
    if in_dims is None or len(in_dims) != 4 or in_dims[1] != 3:
        raise BadModelError(
            p,
            f"model input has shape {_fmt_shape(in_dims)}: expected [batch, 3, H, W] (NCHW, 3 channels)",
        )
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(inp.type.tensor_type.elem_type)
        raise BadModelError(p, f"model input is {kind}: expected FLOAT (float32)")

    if len(graph.output) != 1:
        names = ", ".join(o.name for o in graph.output)
        raise BadModelError(
            p, f"model has {len(graph.output)} outputs ({names}): expected exactly 1 embedding"
        )
    out = graph.output[0]
    out_dims = _dims(out)
    if out_dims is None or len(out_dims) != 2:
        raise BadModelError(
            p, f"model output has shape {_fmt_shape(out_dims)}: expected [batch, D] embedding"
        )

    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise FacequantError(
            f"unknown model override {', '.join(repr(k) for k in unknown)} for {p}: "
            f"expected one of {', '.join(_FIELDS)}"
        )

    # Spatial size and embedding size must be fixed unless the config supplies them.
    h, w = in_dims[2], in_dims[3]
    if not (isinstance(h, int) and isinstance(w, int)) and "input_size" not in overrides:
        raise BadModelError(
            p,
            f"model input has shape {_fmt_shape(in_dims)}: height and width must be fixed (or set input_size)",
        )
    dim = out_dims[1]
    if not isinstance(dim, int) and "embedding_dim" not in overrides:
        raise BadModelError(
            p,
            f"model output has shape {_fmt_shape(out_dims)}: embedding size must be fixed (or set embedding_dim)",
        )

    mean, std, channel_order, _ = _inferred_preprocessing(p, model)

    batch = in_dims[0]
    spec = ModelSpec(
        path=str(p),
        input_name=inp.name,
        output_name=out.name,
        input_size=(h, w) if isinstance(h, int) and isinstance(w, int) else (0, 0),
        mean=mean,
        std=std,
        channel_order=channel_order,
        embedding_dim=dim if isinstance(dim, int) else 0,
        opset=_default_opset(model),
        # Any symbol (or unknown dim) means "any batch": one name for it keeps callers simple.
        batch_dim=batch if isinstance(batch, int) and batch > 0 else BATCH_PARAM,
    )
    if not overrides:
        return spec
    checked = {
        k: check_override(p, k, v, inputs=[inp.name], outputs=[out.name])
        for k, v in overrides.items()
    }
    return dataclasses.replace(spec, **checked)


def check_override(where: object | None, key: str, value: object, inputs: list[str] | None = None,
                   outputs: list[str] | None = None) -> Any:
    """Validate and coerce one override value (config files give lists, strings, numbers).
    `where` names the model file or the option in messages; input and output names are
    checked only when the model's names are given."""

    def bad(expected: str) -> FacequantError:
        return FacequantError(f"model override {key}={value!r}{f' for {where}' if where else ''}: expected {expected}")

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if key not in _FIELDS:
        raise FacequantError(f"unknown model override {key!r}{f' for {where}' if where else ''}: "
                             f"expected one of {', '.join(_FIELDS)}")
    if key == "path":
        if not isinstance(value, str | os.PathLike):
            raise bad("a path")
        return str(value)
    if key in ("input_name", "output_name"):
        names = inputs if key == "input_name" else outputs
        if not isinstance(value, str) or (names is not None and value not in names):
            raise bad(f"one of the model's names: {', '.join(names or [])}" if names is not None else "a name")
        return value
    if key == "input_size":
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(is_int(v) and 0 < v <= 100_000 for v in value)
        ):
            raise bad("[height, width] as two positive integers")
        return (int(value[0]), int(value[1]))
    if key in ("mean", "std"):
        try:
            channels = channel_values(value)
        except ValueError:
            raise bad("a finite number, or three (one per channel, e.g. 103.939,116.779,123.68)") from None
        if key == "std" and 0.0 in (channels if isinstance(channels, tuple) else (channels,)):
            raise bad("non-zero numbers")
        return channels
    if key == "channel_order":
        if not isinstance(value, str) or value.upper() not in ("RGB", "BGR"):
            raise bad("'RGB' or 'BGR'")
        return value.upper()
    if key in ("embedding_dim", "opset"):
        if not is_int(value) or value <= 0:
            raise bad("a positive integer")
        return value
    # batch_dim
    if is_int(value) and value > 0:
        return value
    if isinstance(value, str) and value:
        return value
    raise bad(f"a positive integer or '{BATCH_PARAM}'")


def describe(spec: ModelSpec) -> str:
    """A human-readable multi-line summary (for `facequant models inspect`)."""
    h, w = spec.input_size
    fixed = isinstance(spec.batch_dim, int)  # the shapes say what the file says: [1, ...] next to "batch 1"
    n = str(spec.batch_dim) if fixed else "N"
    batch = (f"{spec.batch_dim} (fixed in the file; facequant evaluates a dynamic-batch copy)" if fixed
             else f"{spec.batch_dim} (any)")
    mean = format_channels(spec.mean)
    std = format_channels(spec.std)
    lines = [
        f"model          {spec.path}",
        f"input          {spec.input_name}  [{n}, 3, {h}, {w}]  {spec.channel_order}",
        f"preprocessing  (pixel - {mean}) / {std}",
        f"output         {spec.output_name}  [{n}, {spec.embedding_dim}]  embedding",
        f"batch          {batch}",
        f"opset          {spec.opset}",
    ]
    return "\n".join(lines)


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

    original = _load(src, external_data=True)
    tail = l2_tail(original)
    model = _rewrite(src, cut_l2(original, tail) if tail else original, spec)
    meta = {m.key: m.value for m in model.metadata_props}
    meta.setdefault(_META_SOURCE_SHA, sha)  # a re-normalized copy keeps the first source
    meta[_META_VERSION] = str(NORMALIZE_VERSION)
    source_why = _inferred_preprocessing(src, original)[3]
    meta[_META_PREPROCESS] = json.dumps({"mean": _json_channels(spec.mean), "std": _json_channels(spec.std),
                                         "channel_order": spec.channel_order, "why": source_why})
    if tail is not None:
        meta[_META_L2_CUT] = json.dumps(tail.to_dict())
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
    model = _load(p, external_data=False)
    meta = {m.key: m.value for m in model.metadata_props}
    if _META_VERSION in meta:
        if _META_L2_CUT not in meta:
            return None
        d = json.loads(meta[_META_L2_CUT])
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
                src, f"cannot convert opset {spec.opset} to {MIN_OPSET}: {_one_line(e)}"
            ) from e

    graph = model.graph
    # Shapes of the original at its own batch tell which Reshapes act on a batch-1 tensor.
    shapes = _inferred_dims(original)

    for value in (_real_inputs(graph)[0], graph.output[0]):
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
            src, f"shape inference failed on the rewritten model: {_one_line(e)}"
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
        dims = _dims(v)
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
        raise BadModelError(src, f"onnxruntime cannot load the model: {_one_line(e)}") from e
    ref = []
    for i in range(VERIFY_BATCH):
        try:
            (y,) = orig.run([spec.output_name], {spec.input_name: x[i : i + 1]})
        except Exception as e:
            raise BadModelError(
                src, f"onnxruntime cannot run the model at batch 1: {_one_line(e)}"
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
            src, f"normalized model fails at batch {VERIFY_BATCH} ({hint}): {_one_line(e)}"
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


# --------------------------------------------------------------------------- resolve


def resolve_model(name_or_path: str, insightface_root: str | Path = "~/.insightface") -> Path:
    """A model file from a path, `faceplugin`, or an insightface pack name."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        return _recognition_model(p)  # e.g. ~/.insightface/models/buffalo_l itself

    name = name_or_path.strip().lower()
    if name == "faceplugin":
        return faceplugin_file("fr_feature.onnx")
    if name in INSIGHTFACE_PACKS:
        return _insightface_pack(name, Path(insightface_root).expanduser())

    known = ", ".join(("faceplugin", *INSIGHTFACE_PACKS))
    raise FacequantError(f"model '{name_or_path}' is neither a file nor a known name ({known})")


def _insightface_pack(pack: str, root: Path) -> Path:
    """The recognition model of an insightface pack, downloaded by insightface if missing."""
    pack_dir = root / "models" / pack
    if not pack_dir.is_dir():
        _download_pack(pack, root, pack_dir)
    return _recognition_model(pack_dir)


def _download_pack(pack: str, root: Path, pack_dir: Path) -> None:
    from insightface.utils import storage

    advice = (
        f"could not download insightface pack '{pack}' (no network?): "
        f"put it in {pack_dir} or pass a path"
    )
    # insightface's downloader calls requests.get without a timeout, so it can hang on a
    # network that drops packets: probe the host with a short timeout first.
    base = getattr(storage, "MODEL_ZOO_RELEASE_DOWNLOAD_URL", "https://github.com/")
    host = urlparse(base).hostname or "github.com"
    try:
        socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise FacequantError(f"{advice} [{_one_line(e, 120)}]") from e
    try:
        storage.ensure_available("models", pack, root=str(root))
    except (OSError, RuntimeError, zipfile.BadZipFile) as e:  # requests errors are OSErrors
        # insightface creates the folder before extracting: an empty one would make
        # later calls think the pack is installed.
        if pack_dir.is_dir() and not any(pack_dir.iterdir()):
            pack_dir.rmdir()
        raise FacequantError(f"{advice} [{_one_line(e, 120)}]") from e


def _recognition_model(folder: Path) -> Path:
    """The ArcFace model in a pack folder: 112x112 input and a [batch, D] output."""
    # rglob: antelopev2.zip extracts into a nested antelopev2/ folder.
    found = []
    for f in sorted(folder.rglob("*.onnx")):
        try:
            spec = inspect_model(f)
        except FacequantError:
            continue  # detector (many outputs) and the like
        # Landmark / attribute models also have rank-2 outputs, but 192x192 or 96x96 inputs.
        if spec.input_size == (112, 112):
            found.append(f)
    if not found:
        raise FacequantError(
            f"no recognition model (112x112 input, [batch, D] output) in {folder}: pass a model path"
        )
    return found[0]


# --------------------------------------------------------------------------- faceplugin


def faceplugin_file(name: str) -> Path:
    """One of the faceplugin models: from the shared folder when present, else the verified
    copy in the cache, else pulled with npm now."""
    if name not in FACEPLUGIN_SHA256:
        raise FacequantError(f"'{name}' is not a faceplugin model ({', '.join(FACEPLUGIN_SHA256)})")
    shared = settings.default_model_path().parent / name
    if shared.is_file():
        return shared
    dest = faceplugin_cache()
    cached = dest / name
    if not (cached.is_file() and file_sha256(cached) == FACEPLUGIN_SHA256[name]):
        pull_faceplugin(dest)
    return cached


def faceplugin_cache() -> Path:
    """The cache's copy of the faceplugin models, with any file that fails its sha256 removed
    (with a warning) so that it is fetched again."""
    dest = settings.cache_dir() / "faceplugin"
    for fname, sha in FACEPLUGIN_SHA256.items():
        if (dest / fname).is_file() and file_sha256(dest / fname) != sha:
            cache_entry.warn(f"{dest / fname}: cached faceplugin model does not match its sha256; fetching it again")
            (dest / fname).unlink()
    return dest


def pull_faceplugin(dest: Path) -> Path:
    """Fetch the faceplugin models with `npm pack`, verify sha256, return fr_feature.onnx.
    Refuses, before fetching, a `dest` holding another file under one of the three names."""
    dest = Path(dest).expanduser()
    for fname, sha in FACEPLUGIN_SHA256.items():
        existing = dest / fname
        if os.path.lexists(existing) and not (existing.is_file() and file_sha256(existing) == sha):
            raise FacequantError(f"{existing}: exists and is not faceplugin's {fname}; refusing to overwrite it "
                                 "(choose another --dest)")
    npm = shutil.which("npm")
    if npm is None:
        raise FacequantError(
            f"npm not found: install Node.js to fetch {FACEPLUGIN_NPM_SPEC}, "
            "or pass the path of an ArcFace-style ONNX model"
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=dest) as tmp_s:
        tmp = Path(tmp_s)
        cmd = [npm, "pack", FACEPLUGIN_NPM_SPEC, "--pack-destination", str(tmp)]
        try:
            proc = subprocess.run(
                cmd, cwd=tmp, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise FacequantError(
                f"npm pack {FACEPLUGIN_NPM_SPEC} timed out after {_NPM_TIMEOUT_S} s"
            ) from e
        tgzs = sorted(tmp.glob("*.tgz"))
        if proc.returncode != 0 or len(tgzs) != 1:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            last = err[-1] if err else f"exit code {proc.returncode}"
            raise FacequantError(f"npm pack {FACEPLUGIN_NPM_SPEC} failed: {last}")
        tgz = tgzs[0]
        got = file_sha256(tgz)
        if got != FACEPLUGIN_TGZ_SHA256:
            raise FacequantError(
                f"{tgz.name}: sha256 {got} does not match the expected {FACEPLUGIN_TGZ_SHA256}"
            )

        staged = tmp / "model"
        staged.mkdir()
        _extract_members(tgz, staged, FACEPLUGIN_SHA256)
        # All three verified: only now move them in, so dest never holds a bad file.
        for fname in FACEPLUGIN_SHA256:
            os.replace(staged / fname, dest / fname)
    return dest / "fr_feature.onnx"


def _extract_members(tgz: Path, out: Path, expected: Mapping[str, str]) -> None:
    """Copy package/model/<name> for each expected name out of the tarball, checking sha256.

    Safe extraction: only the named regular-file members are read, and written under names
    chosen here, so member paths and links in the archive can't escape `out`.
    """
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for fname, sha in expected.items():
                member_name = f"package/model/{fname}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise FacequantError(f"{tgz.name}: {member_name} is missing") from None
                if not member.isfile():
                    raise FacequantError(f"{tgz.name}: {member_name} is not a regular file")
                src = tar.extractfile(member)
                if src is None:
                    raise FacequantError(f"{tgz.name}: cannot read {member_name}")
                h = hashlib.sha256()
                with src, open(out / fname, "wb") as dst:
                    for chunk in _chunks(src):
                        h.update(chunk)
                        dst.write(chunk)
                if h.hexdigest() != sha:
                    raise FacequantError(
                        f"{fname}: sha256 {h.hexdigest()} does not match the expected {sha}"
                    )
    except (tarfile.TarError, OSError) as e:
        raise FacequantError(f"{tgz.name}: cannot extract ({_one_line(e)})") from e


def _chunks(f: Any, size: int = 1 << 20) -> Iterable[bytes]:
    return iter(lambda: f.read(size), b"")

"""How to feed an embedding model (ModelSpec): inspect_model reads a model file and infers its
input, output, size and preprocessing from the graph's ops, with overrides; describe prints it."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import onnx
from onnx import TensorProto

from facequant.errors import BadModelError, FacequantError
from facequant.models.budget import check_input
from facequant.models.channels import Channels, channel_values, format_channels
from facequant.models.files import (
    BATCH_PARAM,
    FACEPLUGIN_SHA256,
    META_PREPROCESS,
    file_sha256,
    load_onnx,
)
from facequant.models.graph import input_normalization
from facequant.yamlfiles import excerpt


#: A preprocessing constant: one number for every channel, or one per channel.
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
def value_dims(value: onnx.ValueInfoProto) -> list[str | int] | None:
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


def real_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
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


def inferred_preprocessing(path: Path, model: onnx.ModelProto) -> tuple[Channels, Channels, str, str]:
    """(mean, std, channel_order, why) for a model file, from its graph's ops, never node names:
    a graph that normalizes its own input takes raw pixels; else the ArcFace convention."""
    meta = {m.key: m.value for m in model.metadata_props}
    if META_PREPROCESS in meta:
        # A normalize_model copy: keep the preprocessing inferred from its source file.
        pre = json.loads(meta[META_PREPROCESS])
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
    return inferred_preprocessing(p, load_onnx(p, external_data=False))[3]


def inspect_model(path: str | Path, overrides: Mapping[str, object] | None = None) -> ModelSpec:
    """Read an embedding model's spec from the file; `overrides` replace inferred fields."""
    p = Path(path).expanduser()
    model = load_onnx(p, external_data=False)
    graph = model.graph

    inputs = real_inputs(graph)
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise BadModelError(
            p, f"model has {len(inputs)} inputs ({names}): expected exactly 1 image input"
        )
    inp = inputs[0]
    in_dims = value_dims(inp)
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
    out_dims = value_dims(out)
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
    check_input(p, h, w)  # before anything is sized from it
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

    mean, std, channel_order, _ = inferred_preprocessing(p, model)

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
    spec = dataclasses.replace(spec, **checked)
    check_input(p, *spec.input_size)
    return spec


def check_override(where: object | None, key: str, value: object, inputs: list[str] | None = None,
                   outputs: list[str] | None = None) -> Any:
    """Validate and coerce one override value (config files give lists, strings, numbers).
    `where` names the model file or the option in messages; input and output names are
    checked only when the model's names are given."""

    def bad(expected: str) -> FacequantError:
        return FacequantError(f"model override {key}={excerpt(value)}{f' for {where}' if where else ''}: expected {expected}")

    def is_int(v: object) -> TypeGuard[int]:
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



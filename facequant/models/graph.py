"""What an embedding model's graph does at its two ends, read from its ops (never node names).

* `input_normalization`: a chain of Sub / Mul / Div / Add with constant operands between the
  image input and the first real layer means the graph normalizes its own input (feed it raw
  pixels). Exporters name these nodes as they like ("Sub", "_minus", "sub"): only the ops and
  their constants count.
* `l2_tail`: an output that is an L2 normalization of an earlier tensor (LpNormalization,
  x / ReduceL2(x), x / Sqrt(ReduceSum(x * x)), x * Reciprocal(...), with eps guards) hides the
  pre-norm; `cut_l2` rewires the graph so that the tensor before it is the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Ops passed through on the input path: they change neither values nor channels.
_PASS_OPS = ("Identity", "Cast")
#: Affine elementwise ops an exporter uses to normalize pixels.
_AFFINE_OPS = ("Sub", "Mul", "Div", "Add")
#: Ops that may sit between a norm and the Div / Mul that applies it: eps guards and broadcasts.
_GUARD_OPS = ("Clip", "Max", "Add", "Expand", "Unsqueeze", "Reshape", "Identity", "Cast", "Tile")


@dataclass(frozen=True)
class InputNormalization:
    """The graph computes x * scale + offset (per channel or scalar) on its input."""

    nodes: tuple[str, ...]  # node names (or op#index when unnamed), input to output
    ops: tuple[str, ...]
    scale: tuple[float, ...]  # one value, or one per input channel
    offset: tuple[float, ...]

    @property
    def mean(self) -> tuple[float, ...]:
        """The equivalent (pixel - mean) / std: mean = -offset / scale."""
        return tuple(float(-o / s) for o, s in zip(self.offset, self.scale, strict=True))

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(float(1.0 / s) for s in self.scale)

    def describe(self) -> str:
        return (f"the graph normalizes its own input ({' -> '.join(self.ops)}: (pixel - {_values(self.mean)}) / "
                f"{_values(self.std)}): feed raw pixels")

    def to_dict(self) -> dict[str, object]:
        return {"nodes": list(self.nodes), "ops": list(self.ops), "mean": _scalar_or_list(self.mean),
                "std": _scalar_or_list(self.std)}


@dataclass(frozen=True)
class L2Tail:
    """The output is the L2 normalization of `raw`; `nodes` compute it (removed by cut_l2)."""

    raw: str  # the tensor before the normalization: the raw embedding
    output: str
    pattern: str  # e.g. "LpNormalization", "Div(x, ReduceL2(x))"
    nodes: tuple[str, ...]

    def describe(self) -> str:
        return (f"the graph L2-normalizes its output ({self.pattern}); the raw embedding is tensor "
                f"'{self.raw}' before it")

    def to_dict(self) -> dict[str, object]:
        return {"raw_tensor": self.raw, "output": self.output, "pattern": self.pattern, "nodes": list(self.nodes)}


def _values(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _scalar_or_list(values: tuple[float, ...]) -> float | list[float]:
    return values[0] if len(values) == 1 else list(values)


def _name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


class _Graph:
    """Producers, consumers and constant values of one graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producer: dict[str, tuple[int, onnx.NodeProto]] = {}
        self.consumers: dict[str, list[tuple[int, onnx.NodeProto]]] = {}
        for i, node in enumerate(graph.node):
            for out in node.output:
                self.producer[out] = (i, node)
            for inp in node.input:
                self.consumers.setdefault(inp, []).append((i, node))
        self.initializers = {init.name: init for init in graph.initializer}

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node, else None."""
        if name in self.initializers:
            try:
                return numpy_helper.to_array(self.initializers[name])
            except Exception:  # external data not loaded: not a small normalization constant
                return None
        found = self.producer.get(name)
        if found is None or found[1].op_type != "Constant":
            return None
        for attr in found[1].attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
            if attr.name in ("value_float", "value_floats"):
                return np.asarray(helper.get_attribute_value(attr), dtype=np.float32)
        return None

    def node_of(self, name: str) -> tuple[int, onnx.NodeProto] | None:
        return self.producer.get(name)


def _per_channel(value: np.ndarray, channels: int) -> np.ndarray | None:
    """A constant that broadcasts over NCHW as a scalar or one value per channel, as (1,) or
    (channels,); None for anything else (a spatial map is not a pixel normalization)."""
    v = np.asarray(value, dtype=np.float64)
    if v.size == 1:
        return v.reshape(1)
    if v.size == channels and v.ndim >= 1:
        shape = v.shape
        # [C], [C,1,1] or [1,C,1,1]: the channel axis must be the one holding C values.
        if shape in ((channels,), (channels, 1, 1), (1, channels, 1, 1)):
            return v.reshape(channels)
    return None


def input_normalization(model: onnx.ModelProto, channels: int = 3) -> InputNormalization | None:
    """The affine normalization the graph applies to its first input before any real layer,
    or None. Follows the single chain of Sub / Mul / Div / Add (constant other operand),
    Identity and Cast from the input to the first other op (the first Conv, typically)."""
    g = _Graph(model.graph)
    inits = set(g.initializers)
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if not inputs:
        return None
    tensor = inputs[0]
    scale, offset = np.ones(1), np.zeros(1)
    nodes: list[str] = []
    ops: list[str] = []
    while True:
        users = g.consumers.get(tensor, [])
        if len(users) != 1:  # a fork (or the output): the normalization chain ends here
            break
        index, node = users[0]
        if node.op_type in _PASS_OPS:
            tensor = node.output[0]
            continue
        if node.op_type not in _AFFINE_OPS or len(node.input) != 2:
            break
        left = node.input[0] == tensor
        other = node.input[1] if left else node.input[0]
        const = g.constant(other)
        c = None if const is None else _per_channel(const, channels)
        if c is None:
            break
        if node.op_type == "Add":
            offset = offset + c
        elif node.op_type == "Mul":
            scale, offset = scale * c, offset * c
        elif node.op_type == "Sub":
            scale, offset = (scale, offset - c) if left else (-scale, c - offset)
        elif left and np.all(c != 0):  # Div(x, c); Div(c, x) is not affine
            scale, offset = scale / c, offset / c
        else:
            break
        nodes.append(_name(node, index))
        ops.append(node.op_type)
        tensor = node.output[0]
    if not ops or np.any(scale == 0):
        return None
    scale, offset = np.broadcast_arrays(scale, offset)
    return InputNormalization(tuple(nodes), tuple(ops), tuple(float(s) for s in scale), tuple(float(o) for o in offset))


# --------------------------------------------------------------------------- L2 tail


def _strip(g: _Graph, name: str, used: list[int]) -> str:
    """Follow eps guards and broadcasts back from a norm tensor (their other operands must be
    constants, except Expand/Reshape/Tile/Unsqueeze shape inputs)."""
    while True:
        found = g.node_of(name)
        if found is None or found[1].op_type not in _GUARD_OPS:
            return name
        index, node = found
        data = node.input[0]
        if node.op_type in ("Max", "Add"):
            others = [i for i in node.input if i != data]
            if len(node.input) != 2 or any(g.constant(i) is None for i in others):
                # Max(eps, x) puts the constant first
                if len(node.input) == 2 and g.constant(node.input[0]) is not None:
                    data = node.input[1]
                else:
                    return name
        used.append(index)
        name = data


def _axes(g: _Graph, node: onnx.NodeProto) -> list[int] | None:
    """A Reduce* node's axes (attribute before opset 18, input after); None = all axes."""
    for attr in node.attribute:
        if attr.name == "axes":
            return list(attr.ints)
    if len(node.input) > 1 and node.input[1]:
        value = g.constant(node.input[1])
        return None if value is None else [int(v) for v in np.asarray(value).ravel()]
    return None


def _feature_axis(axes: list[int] | None, rank: int | None) -> bool:
    """Reduction over the embedding axis only: [1] or [-1] of a [N, D] tensor."""
    if axes is None:
        return False
    return axes in ([1], [-1]) if rank in (2, None) else axes in ([rank - 1], [-1])


def _squares_of(g: _Graph, name: str, x: str, used: list[int]) -> bool:
    """name == x * x (Mul(x, x) or Pow(x, 2))."""
    found = g.node_of(name)
    if found is None:
        return False
    index, node = found
    if node.op_type == "Mul" and list(node.input) == [x, x]:
        used.append(index)
        return True
    if node.op_type == "Pow" and node.input[0] == x:
        exponent = g.constant(node.input[1])
        if exponent is not None and np.allclose(exponent, 2.0):
            used.append(index)
            return True
    return False


def _is_norm_of(g: _Graph, name: str, x: str, rank: int | None, used: list[int]) -> str | None:
    """The pattern's name when `name` is the L2 norm of x over its feature axis, else None."""
    name = _strip(g, name, used)
    found = g.node_of(name)
    if found is None:
        return None
    index, node = found
    if node.op_type == "ReduceL2" and node.input[0] == x and _feature_axis(_axes(g, node), rank):
        used.append(index)
        return "ReduceL2"
    if node.op_type != "Sqrt":
        return None
    used.append(index)
    inner = _strip(g, node.input[0], used)
    found = g.node_of(inner)
    if found is None:
        return None
    index, node = found
    if node.op_type == "ReduceSumSquare" and node.input[0] == x and _feature_axis(_axes(g, node), rank):
        used.append(index)
        return "Sqrt(ReduceSumSquare)"
    if node.op_type == "ReduceSum" and _feature_axis(_axes(g, node), rank) and _squares_of(g, node.input[0], x, used):
        used.append(index)
        return "Sqrt(ReduceSum(x^2))"
    return None


def _rank(model: onnx.ModelProto, name: str) -> int | None:
    for value in [*model.graph.value_info, *model.graph.output, *model.graph.input]:
        if value.name == name and value.type.tensor_type.HasField("shape"):
            return len(value.type.tensor_type.shape.dim)
    return None


def l2_tail(model: onnx.ModelProto) -> L2Tail | None:
    """The L2 normalization that produces the model's (single) output, or None."""
    if len(model.graph.output) != 1:
        return None
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # no shapes: axes are then judged without the rank
        inferred = model
    g = _Graph(model.graph)
    output = model.graph.output[0].name
    used: list[int] = []
    name = output
    while (found := g.node_of(name)) is not None and found[1].op_type == "Identity":
        used.append(found[0])
        name = found[1].input[0]
    found = g.node_of(name)
    if found is None:
        return None
    index, node = found
    used.append(index)
    pattern, raw = None, None
    if node.op_type == "LpNormalization":
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        rank = _rank(inferred, node.input[0])
        if attrs.get("p", 2) == 2 and _feature_axis([int(attrs.get("axis", -1))], rank):
            pattern, raw = "LpNormalization(p=2)", node.input[0]
    elif node.op_type == "Div" and len(node.input) == 2:
        x = node.input[0]
        kind = _is_norm_of(g, node.input[1], x, _rank(inferred, x), used)
        pattern, raw = (f"Div(x, {kind}(x))", x) if kind else (None, None)
    elif node.op_type == "Mul" and len(node.input) == 2:
        pattern, raw = _mul_by_inverse_norm(g, inferred, node, used)
    if raw is None or pattern is None or _rank(inferred, raw) not in (2, None):
        return None  # the cut tensor becomes the [N, D] output: nothing else can take its place
    names = tuple(_name(model.graph.node[i], i) for i in sorted(set(used)))
    return L2Tail(raw=raw, output=output, pattern=pattern, nodes=names)


def _mul_by_inverse_norm(g: _Graph, inferred: onnx.ModelProto, node: onnx.NodeProto,
                         used: list[int]) -> tuple[str | None, str | None]:
    """x * Reciprocal(norm(x)) or x * (1 / norm(x)), either operand order (TensorFlow's
    l2_normalize exports this way)."""
    for x, inv in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        trial: list[int] = []
        found = g.node_of(_strip(g, inv, trial))
        if found is None:
            continue
        index, inv_node = found
        if inv_node.op_type == "Reciprocal":
            norm = inv_node.input[0]
        elif inv_node.op_type == "Div" and (one := g.constant(inv_node.input[0])) is not None and np.allclose(one, 1.0):
            norm = inv_node.input[1]
        else:
            continue
        trial.append(index)
        kind = _is_norm_of(g, norm, x, _rank(inferred, x), trial)
        if kind:
            used.extend(trial)
            return f"Mul(x, 1 / {kind}(x))", x
    return None, None


def cut_l2(model: onnx.ModelProto, tail: L2Tail) -> onnx.ModelProto:
    """A copy whose output (same name, same shape) is the raw tensor before the L2
    normalization: the normalization's nodes are removed, an Identity feeds the output."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    keep = [n for i, n in enumerate(graph.node) if _name(n, i) not in set(tail.nodes)]
    del graph.node[:]
    graph.node.extend(keep)
    graph.node.append(helper.make_node("Identity", [tail.raw], [tail.output], name="facequant_raw_embedding"))
    _prune(graph)
    return out


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nothing reads any more (the norm's own helpers), repeatedly."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)

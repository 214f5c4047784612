"""A model's layers for selectors (lastN, firstN, dw, nodes=, file=) and a recipe name resolved
to node names against a model."""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import onnx

from facequant.backends.quantize.recipes import (
    COUNT_SELECTOR,
    LAYER_KINDS,
    RECIPES,
    SELECTOR_HELP,
    WEIGHTED_OPS,
    QuantRecipe,
    split_recipe_name,
)
from facequant.errors import FacequantError

# --- the model's layers --------------------------------------------------------------------

@dataclass(frozen=True)
class GraphLayers:
    """Node names of a model, for selectors: all nodes and the weighted layers (Conv, Gemm,
    MatMul with an initializer weight) that feed the outputs, in topological order."""

    nodes: tuple[str, ...]
    weighted: tuple[str, ...]
    depthwise: tuple[str, ...]
    activations: dict[str, tuple[str, ...]]  # node -> its non-initializer input and output tensors
    weights: dict[str, tuple[str, int]]  # weighted node -> (weight initializer, per-channel axis)


def _topological(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Kahn's algorithm, ties broken by file order (ONNX files are usually sorted already)."""
    produced_by = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    deps = [{produced_by[t] for t in n.input if t in produced_by} for n in graph.node]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    return [graph.node[i] for i in order]


@lru_cache(maxsize=8)
def _graph_layers_cached(path: str, mtime_ns: int) -> GraphLayers:
    model = onnx.load(path, load_external_data=False)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = _topological(graph)
    # Ancestors of the graph outputs: the layers "before the embedding output".
    producer = {o: n for n in nodes for o in n.output if o}
    needed: set[int] = set()
    stack = [o.name for o in graph.output]
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or id(n) in needed:
            continue
        needed.add(id(n))
        stack.extend(n.input)
    weighted, depthwise = [], []
    weights: dict[str, tuple[str, int]] = {}
    for pos, n in enumerate(nodes):
        if n.op_type not in WEIGHTED_OPS or len(n.input) < 2 or n.input[1] not in inits or id(n) not in needed:
            continue
        if not n.name:
            raise FacequantError(f"{path}: weighted node #{pos} ({n.op_type}) has no name; layer selectors need names")
        weighted.append(n.name)
        w = inits[n.input[1]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Conv":
            axis = 0
            group = int(attrs.get("group", 1))
            if group > 1 and len(w.dims) > 1 and w.dims[1] == 1:  # group == input channels
                depthwise.append(n.name)
        elif n.op_type == "Gemm":
            axis = 0 if attrs.get("transB", 0) else 1
        else:
            axis = 1  # ORT's default channel axis for MatMul weights
        weights[n.name] = (n.input[1], axis)
    activations = {n.name: tuple(t for t in [*n.input, *n.output] if t and t not in inits) for n in nodes if n.name}
    return GraphLayers(tuple(n.name for n in nodes if n.name), tuple(weighted), tuple(depthwise), activations, weights)


def graph_layers(model: Path) -> GraphLayers:
    model = Path(model)
    return _graph_layers_cached(str(model.resolve()), model.stat().st_mtime_ns)


def _read_layer_file(name: str, path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FacequantError(f"backend '{name}': layer file {path} cannot be read ({exc.strerror})") from exc
    out = [line.split("#", 1)[0].strip() for line in lines]
    out = [n for n in out if n]
    if not out:
        raise FacequantError(f"backend '{name}': layer file {path} names no node (one node name per line)")
    return out


def select_layers(layers: GraphLayers, selector: str, name: str = "") -> list[str]:
    """The node names a selector chooses on a model, in topological order."""
    name = name or selector
    if m := COUNT_SELECTOR.fullmatch(selector):
        n = int(m.group(2))
        if n > len(layers.weighted):
            raise FacequantError(f"backend '{name}': selector '{selector}' asks for {n} layers; "
                                 f"the model has {len(layers.weighted)} weighted layers")
        return list(layers.weighted[-n:] if m.group(1) == "last" else layers.weighted[:n])
    if selector == "dw":
        if not layers.depthwise:
            raise FacequantError(f"backend '{name}': selector 'dw': the model has no depthwise convolution")
        return list(layers.depthwise)
    if selector.startswith("nodes="):
        chosen = [n.strip() for n in selector[len("nodes="):].split(";") if n.strip()]
    elif selector.startswith("file="):
        chosen = _read_layer_file(name, Path(selector[len("file="):]).expanduser())
    else:
        raise FacequantError(f"backend '{name}': selector '{selector}' not understood; use {SELECTOR_HELP}")
    known = set(layers.nodes)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        sample = [*layers.weighted[:3], "...", *layers.weighted[-3:]] if len(layers.weighted) > 6 else list(layers.weighted)
        raise FacequantError(f"backend '{name}': node(s) {', '.join(unknown)} not in the model; "
                             f"valid names include {', '.join(sample)}")
    order = {n: i for i, n in enumerate(layers.nodes)}
    return sorted(dict.fromkeys(chosen), key=order.__getitem__)


def resolve_recipe(name: str, model: Path) -> QuantRecipe:
    """The recipe a backend name stands for, with selectors resolved to node names on `model`."""
    if name in RECIPES:
        return RECIPES[name]
    base_name, parts = split_recipe_name(name)
    base = RECIPES[base_name]
    if not parts:
        return base
    layers = graph_layers(model)
    chosen: dict[str, list[str]] = {kind: [] for kind in LAYER_KINDS}
    for kind, selector in parts:
        chosen[kind].extend(select_layers(layers, selector, name))
    order = {n: i for i, n in enumerate(layers.nodes)}
    floats = sorted(set(chosen["float"]), key=order.__getitem__)
    sixteen = sorted(set(chosen["16bit"]) - set(floats), key=order.__getitem__)
    act16 = "int16" if base.activation_type.startswith("int") else "uint16"
    label = base.precision + (f"+16bit:{len(sixteen)}" if sixteen else "") + (f"+float:{len(floats)}" if floats else "")
    desc = base.description
    if sixteen:
        desc += f"; 16-bit ({act16} activations, int16 weights): {', '.join(sixteen)}"
    if floats:
        desc += f"; left in float: {', '.join(floats)}"
    return dataclasses.replace(
        base, name=name, base=base_name, selectors=tuple(f"{k}:{s}" for k, s in parts),
        layers_16bit=tuple(sixteen), layers_float=tuple(floats), precision=label, description=desc,
        activation_type_16bit=act16 if sixteen else "", weight_type_16bit="int16" if sixteen else "")



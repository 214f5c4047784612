"""Quantization recipes as data, built with onnxruntime.quantization and cached.

A recipe is a preset (``int8-pt``, ``fp16``, ``int8-npu`` ...) or a static preset with
mixed-precision layer selectors, written the way users type backends::

    BASE(+16bit:SELECTOR | +float:SELECTOR)*
    SELECTOR = lastN | firstN | dw | nodes=A;B;C | file=PATH

``+16bit:`` keeps the chosen layers' input, weight and output tensors at 16 bit inside the
INT8 model (ORT TensorQuantOverrides); ``+float:`` leaves them unquantized (nodes_to_exclude).
Selectors resolve to node names against the model, and the names are part of the recipe,
so run.json and the cache key record exactly which layers were chosen.

The package, by step: recipes (the names users type, as data), layers (selectors resolved
against a model), build (onnxruntime.quantization, the cache), npu (power-of-two scales).
"""

from facequant.backends.quantize.build import (
    ENTROPY_BINS,
    ENTROPY_QUANTIZED_BINS,
    build_quantized,
    calibration_hash,
    entropy_ranges,
    pow2_moves_path,
    prepare_for_quantization,
    quantized_key,
    quantized_model_path,
    static_quant_options,
    tensor_overrides,
)
from facequant.backends.quantize.layers import (
    GraphLayers,
    graph_layers,
    resolve_recipe,
    select_layers,
)
from facequant.backends.quantize.npu import (
    pow2_summary,
    rewrite_pow2_scales,
)
from facequant.backends.quantize.recipes import (
    CALIBRATION_METHODS,
    LAYER_KINDS,
    RECIPES,
    SELECTOR_HELP,
    WEIGHTED_OPS,
    QuantRecipe,
    is_recipe_name,
    split_recipe_name,
)

__all__ = [
    "CALIBRATION_METHODS", "ENTROPY_BINS", "ENTROPY_QUANTIZED_BINS", "GraphLayers",
    "LAYER_KINDS", "QuantRecipe", "RECIPES", "SELECTOR_HELP", "WEIGHTED_OPS", "build_quantized",
    "calibration_hash", "entropy_ranges", "graph_layers", "is_recipe_name", "pow2_moves_path",
    "pow2_summary", "prepare_for_quantization", "quantized_key", "quantized_model_path",
    "resolve_recipe", "rewrite_pow2_scales", "select_layers", "split_recipe_name",
    "static_quant_options", "tensor_overrides",
]

"""NNCF's quantize_with_accuracy_control with a distance-aware metric: the layers it keeps in
float so that far-range matching holds, as a recipe facequant's sweep can re-measure.

NNCF 3.x runs accuracy control on an onnx.ModelProto directly (and on OpenVINO models), so the
layers it reverts are the ONNX model's own node names, and the result is written in facequant's
grammar as BASE+float:nodes=A;B;C (NNCF's ignored scope). The validation function is facequant's
far-range metric on identities held out from calibration: per genuine pair (a probe simulated
at the target distance, a gallery photo enrolled at its own resolution), the cosine of the two
embeddings, or whether it reaches the sweep's threshold (TAR). The model being validated runs
on the base's runtime (ONNX Runtime for nncf-int8, OpenVINO for ov-int8).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from facequant import settings as fq_settings
from facequant.backends.base import preprocess
from facequant.backends.runtime import OrtBackend
from facequant.backends.runtimes import OPENVINO, NncfRecipe
from facequant.errors import FacequantError
from facequant.models.files import one_line
from facequant.params import param, validate
from facequant.ranges import SHARE_RANGE
from facequant.sweep.probes import ProbeSet

AC_METRICS = ("cosine", "tar")
SEARCH = "search"  # the --help group of search-precision's own options
SEARCH_METHODS = ("own", "accuracy-control", "both")
#: At least this share of the identities (and two people) validate, held out from calibration.
HOLDOUT_FRACTION = 0.25


@dataclass(frozen=True)
class AccuracyControlSettings:
    # an NNCF backend: its parameters, and the runtime that validates
    base: str = param("nncf-int8", help="NNCF backend accuracy control starts from and validates on: nncf-int8 "
                      "(ONNX Runtime), ov-int8 (OpenVINO) or a variant (needs the openvino extra)", group=SEARCH,
                      option="ac-base")
    # paired genuine cosine, or TAR at the sweep's threshold
    metric: str = param("cosine", help="accuracy control's metric on held-out people at --ac-distance: cosine "
                        "(paired genuine cosine) or tar", group=SEARCH, option="ac-metric", choices=AC_METRICS)
    # absolute, in the metric's units
    max_drop: float = param(0.01, help="largest drop of that metric from the float model NNCF may leave",
                            group=SEARCH, range=SHARE_RANGE)

    def __post_init__(self) -> None:
        validate(self, "accuracy control")
        from facequant.backends.registry import check_backend_name

        check_backend_name(self.base)
        if not self.base.startswith(("ov-int8", "nncf-int8")):
            raise FacequantError(f"--ac-base {self.base}: accuracy control needs an NNCF backend "
                                 "(nncf-int8, ov-int8 or their variants)")

    def to_dict(self) -> dict[str, object]:
        return {"base": self.base, "metric": self.metric, "max_drop": self.max_drop}


@dataclass
class ValidationSet:
    """Genuine pairs of held-out identities: probes at `distance_m`, gallery photos enrolled."""

    distance_m: float
    threshold: float
    probes: np.ndarray  # preprocessed, one per photo used
    gallery: np.ndarray
    pairs: np.ndarray  # (K, 2): probe row, gallery row
    identities: list[str]
    photos: list[str]


@dataclass
class AccuracyControlResult:
    settings: AccuracyControlSettings
    recipe: str  # the base with the reverted layers kept in float, in facequant's grammar
    layers: list[str]  # every node NNCF reverted to float, in graph order
    weighted_layers: list[str]  # those of them with weights (Conv, Gemm, MatMul)
    metric: dict[str, float]  # float model, default INT8, accuracy-controlled INT8 (this validation set)
    validation: dict[str, object]
    calibration_images: list[str]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"settings": self.settings.to_dict(), "recipe": self.recipe, "layers": self.layers,
                "weighted_layers": self.weighted_layers, "metric": self.metric, "validation": self.validation,
                "calibration_images": self.calibration_images, "seconds": self.seconds, "notes": self.notes}


# ---------------------------------------------------------------- held-out identities


def held_out(ps: ProbeSet) -> tuple[set[int], dict[str, Any]]:
    """Identity codes to validate on, none of whose photos calibrate, and the calibration faces
    left: the people calibration never saw, topped up (seeded) to HOLDOUT_FRACTION of those
    with two photos, whose photos then leave the calibration set."""
    counts = np.bincount(ps.identity, minlength=len(ps.identity_names))
    paired = [i for i in range(len(ps.identity_names)) if counts[i] >= 2]
    index = {img.key: i for i, img in enumerate(ps.images)}
    seen = {int(ps.identity[index[k]]) for k in ps.calibration_faces if k in index}
    unseen = [i for i in paired if i not in seen]
    need = max(2, math.ceil(HOLDOUT_FRACTION * len(paired)))
    if len(paired) < 2:
        raise FacequantError("accuracy control needs two people with two photos each to validate on")
    extra = [i for i in np.random.default_rng(ps.config.seed).permutation(paired).tolist() if i not in unseen]
    chosen = set(unseen) | set(extra[: max(0, need - len(unseen))])
    calib = {k: v for k, v in ps.calibration_faces.items() if k not in index or int(ps.identity[index[k]]) not in chosen}
    if not calib:
        raise FacequantError("accuracy control: no calibration photo left after holding out validation identities")
    return chosen, calib


def validation_set(ps: ProbeSet, identities: set[int], distance: float, threshold: float) -> ValidationSet:
    """Every genuine pair of the held-out people whose probe can be simulated at `distance`
    (the pairs file's, when the dataset has one)."""
    rows = np.flatnonzero(np.isin(ps.identity, sorted(identities)))
    simulable = ps.simulable(distance)
    if ps.pairs is not None:
        probe, gallery, genuine = ps.pairs
        keep = genuine & np.isin(probe, rows) & np.isin(gallery, rows) & simulable[probe]
        listed = list(zip(probe[keep].tolist(), gallery[keep].tolist(), strict=True))
    else:
        listed = [(int(p), int(g)) for p in rows for g in rows
                  if p != g and ps.identity[p] == ps.identity[g] and simulable[p]]
    if not listed:
        raise FacequantError(f"accuracy control: no genuine pair of the held-out people can be simulated at {distance:g} m")
    used = sorted({r for pair in listed for r in pair})
    local = {r: i for i, r in enumerate(used)}
    used_rows = np.asarray(used)
    return ValidationSet(
        distance, threshold, preprocess(ps.distance_crops(used_rows, distance), ps.spec),
        preprocess(ps.enrol_crops(used_rows), ps.spec), np.array([(local[p], local[g]) for p, g in listed]),
        sorted({ps.identity_names[int(ps.identity[r])] for r in used}), [ps.keys[r] for r in used])


# ---------------------------------------------------------------- validation function


class Validator:
    """NNCF's validation_fn: (model, items) -> (metric, one value per item). Items are pair
    indices; the model (a ModelProto NNCF is trying) runs on the base's runtime, each photo
    embedded once per model."""

    def __init__(self, vset: ValidationSet, input_name: str, runtime: str, metric: str,
                 fp32_gallery: np.ndarray | None) -> None:
        self.vset, self.input_name, self.runtime, self.metric = vset, input_name, runtime, metric
        self.fp32_gallery = fp32_gallery  # set: the gallery was enrolled by the float model (--gallery fp32)
        self._model: Any = None
        self._run: Any = None
        self._embedded: dict[tuple[str, int], np.ndarray] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="facequant-ac-")

    def close(self) -> None:
        self._tmp.cleanup()

    def _runner(self, model: Any) -> Any:
        if model is not self._model:  # a new candidate: compile it once, embed afresh
            self._model, self._embedded = model, {}
            self._run = session_for(model, self.input_name, self.runtime, Path(self._tmp.name))
        return self._run

    def embed(self, model: Any, kind: str, rows: Iterable[int]) -> dict[int, np.ndarray]:
        run = self._runner(model)
        rows = list(dict.fromkeys(rows))
        todo = [r for r in rows if (kind, r) not in self._embedded]
        if todo:
            source = self.vset.probes if kind == "probe" else self.vset.gallery
            for r, e in zip(todo, run(source[todo]), strict=True):
                self._embedded[(kind, r)] = e / max(float(np.linalg.norm(e)), 1e-12)
        return {r: self._embedded[(kind, r)] for r in rows}

    def values(self, model: Any, pair_ids: list[int]) -> list[float]:
        pairs = self.vset.pairs[pair_ids]
        probes = self.embed(model, "probe", pairs[:, 0].tolist())
        if self.fp32_gallery is not None:
            gallery = {int(g): self.fp32_gallery[g] for g in pairs[:, 1]}
        else:
            gallery = self.embed(model, "gallery", pairs[:, 1].tolist())
        cos = [float(probes[int(p)] @ gallery[int(g)]) for p, g in pairs]
        return cos if self.metric == "cosine" else [float(c >= self.vset.threshold) for c in cos]

    def __call__(self, model: Any, items: Iterable[Any]) -> tuple[float, list[float]]:
        ids = [int(i) for i in items]
        values = self.values(model, ids)
        return (float(np.mean(values)) if values else math.nan), values


def session_for(model: Any, input_name: str, runtime: str, tmp: Path) -> Any:
    """A function running a ModelProto on `runtime`: preprocessed batch -> raw embeddings."""
    data = model.SerializeToString()
    if runtime == OPENVINO:
        import openvino

        path = tmp / f"{hashlib.sha256(data).hexdigest()[:16]}.onnx"
        path.write_bytes(data)
        compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                      "INFERENCE_NUM_THREADS": fq_settings.ort_threads()})
        return lambda x: np.asarray(compiled(x)[0], np.float32)
    import onnxruntime as ort

    from facequant.backends.base import session_options

    session = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
    return lambda x: np.asarray(session.run(None, {input_name: x})[0], np.float32)


# ---------------------------------------------------------------- the run


def run_accuracy_control(ps: ProbeSet, settings: AccuracyControlSettings, distance: float, threshold: float,
                         ) -> AccuracyControlResult:
    """quantize_with_accuracy_control on ps's model, calibrated on the calibration photos of the
    people not held out, validated at `distance` on those held out."""
    import onnx

    from facequant.backends.quantize import nncf_build
    from facequant.backends.registry import BackendFactory

    t0 = time.perf_counter()
    nncf = nncf_build.import_nncf(settings.base)
    identities, calib_faces = held_out(ps)
    calib_ps = replace(ps, calibration_faces=calib_faces)
    calibration = calib_ps.calibration_tensors()
    vset = validation_set(ps, identities, distance, threshold)
    factory = BackendFactory(ps.normalized, ps.model_sha, ps.spec, lambda: calibration, batch_size=ps.config.batch_size)
    recipe: NncfRecipe = factory.nncf_recipe(settings.base)
    fp32_gallery = None
    if ps.config.gallery == "fp32":
        fp32 = factory.make("fp32")
        assert isinstance(fp32, OrtBackend)  # fp32 runs on ONNX Runtime: its run() takes preprocessed tensors
        g = fp32.run(vset.gallery)
        fp32_gallery = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    validator = Validator(vset, ps.spec.input_name, recipe.runtime, settings.metric, fp32_gallery)
    arguments = nncf_build.quantize_arguments(nncf, recipe, len(calibration))
    arguments["advanced_quantization_parameters"] = arguments.pop("advanced_parameters")
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    # Rank on every pair (they are few), one worker: the validator holds one compiled model at a time.
    arguments["advanced_accuracy_restorer_parameters"] = AdvancedAccuracyRestorerParameters(
        ranking_subset_size=len(vset.pairs), num_ranking_workers=1)
    float_model = onnx.load(str(ps.normalized))
    pair_ids = list(range(len(vset.pairs)))
    try:
        with nncf_build.quiet():
            controlled = nncf.quantize_with_accuracy_control(
                float_model, nncf_build.nncf_dataset(nncf, ps.spec.input_name, calibration),
                nncf.Dataset(pair_ids), validator, max_drop=settings.max_drop, drop_type=nncf.DropType.ABSOLUTE,
                **arguments)
        default = onnx.load(str(nncf_build.build_nncf(ps.normalized, ps.model_sha, ps.spec.input_name, recipe,
                                                       calibration)))
        metric = {"float": validator(float_model, pair_ids)[0], "int8_default": validator(default, pair_ids)[0],
                  "int8_accuracy_control": validator(controlled, pair_ids)[0]}
    except FacequantError:
        raise
    except Exception as exc:
        raise FacequantError(f"NNCF accuracy control on {ps.model_path} failed: {one_line(exc)}") from exc
    finally:
        validator.close()
    layers = reverted_nodes(default, controlled, float_model)
    from facequant.backends.quantize.layers import graph_layers

    weighted = set(graph_layers(ps.normalized).weighted)
    notes = []
    if not layers:
        notes.append(f"{settings.base} is within {settings.max_drop:g} of the float model's {settings.metric} at "
                     f"{distance:g} m already: nothing reverted")
    return AccuracyControlResult(
        settings, recipe_name(settings.base, layers), layers, [n for n in layers if n in weighted], metric,
        {"distance_m": distance, "metric": settings.metric, "threshold": threshold, "pairs": len(vset.pairs),
         "identities": vset.identities, "photos": len(vset.photos),
         "gallery": "fp32" if fp32_gallery is not None else "same backend", "runtime": recipe.runtime},
        list(calib_faces), time.perf_counter() - t0, notes)


def quantized_nodes(model: Any) -> set[str]:
    """Nodes of a QDQ model that read any input through DequantizeLinear (they compute in INT8)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input)}


def reverted_nodes(default: Any, controlled: Any, float_model: Any) -> list[str]:
    """The float model's nodes that NNCF's default INT8 quantizes and accuracy control does not."""
    gone = quantized_nodes(default) - quantized_nodes(controlled)
    return [n.name for n in float_model.graph.node if n.name in gone]


def recipe_name(base: str, layers: list[str]) -> str:
    """BASE+float:nodes=A;B (a layer file in the cache when a name would break the grammar)."""
    if not layers:
        return base
    if all(";" not in n and "+" not in n and "," not in n for n in layers):
        return f"{base}+float:nodes={';'.join(layers)}"
    text = "\n".join(layers) + "\n"
    path = fq_settings.cache_dir() / "layers" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return f"{base}+float:file={path}"


def ort_counterpart(ort_base: str, result: AccuracyControlResult) -> str | None:
    """The same float layers on an ONNX Runtime recipe (BASE+float:...), to tell NNCF's choice of
    layers from NNCF's quantizer; None when nothing was reverted."""
    if not result.layers:
        return None
    return recipe_name(ort_base, result.layers)

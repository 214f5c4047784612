"""Degenerate (collapsed) backends: degenerate_reason on synthetic tables for each criterion,
then on deliberately broken quantizations of the shared model run on real celebs13 crops."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

from facequant.backends.quantize.build import build_quantized
from facequant.backends.quantize.recipes import RECIPES
from facequant.backends.runtime import OrtBackend
from facequant.datasets.folders import comparisons
from facequant.errors import FacequantError
from facequant.evaluate import metrics
from facequant.evaluate.cliff import CLIFF_COLUMNS, cliff_table
from facequant.evaluate.degenerate import DegenerateSettings, degenerate_reason
from facequant.sweep.config import SweepConfig
from facequant.sweep.probes import ProbeSet, prepare_probes

# ---------------------------------------------------------------- synthetic tables

# Healthy close-range numbers as measured for fp32 on celebs13 at 0.5 m.
HEALTHY = {
    "genuine_cos_mean": 0.72,
    "impostor_cos_mean": 0.01,
    "far": 0.0009,
    "threshold": 0.42,
    "n_probes": 61,
    "prenorm_p05": 3.36,
    "prenorm_p50": 3.87,
    "prenorm_p95": 4.48,
}


def _rows(*cells: dict[str, float], backend: str = "b") -> pd.DataFrame:
    """Sweep rows, one per cell: each cell is HEALTHY with its overrides (distance_m given)."""
    return pd.DataFrame([{"model": "m", "backend": backend, **HEALTHY, **c} for c in cells])


def _probes(
    prenorm: np.ndarray, distance: float = 1.0, backend: str = "b", simulated: bool = True
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "backend": backend,
            "distance_m": distance,
            "image": [f"p{i}.jpg" for i in range(len(prenorm))],
            "prenorm": prenorm,
            "simulated": simulated,
        }
    )


def _healthy_prenorm(n: int = 61, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(3.9, 0.35, n)  # CV ~0.09, as measured


def _constant_prenorm(n: int = 61, cv: float = 0.003, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0.0, 1.0, n)
    return 2.0 * (1.0 + cv * (x - x.mean()) / x.std())  # exactly that CV around 2 (the Hailo case)


def test_healthy_is_empty() -> None:
    assert degenerate_reason(_rows({"distance_m": 1.0}), _probes(_healthy_prenorm())) == ""
    assert degenerate_reason(_rows({"distance_m": 1.0}), None) == ""


def test_a_impostor_close_to_genuine() -> None:
    rows = _rows({"distance_m": 1.0, "genuine_cos_mean": 0.98, "impostor_cos_mean": 0.97})
    assert (
        degenerate_reason(rows, _probes(_healthy_prenorm()))
        == "impostor cosine 0.97 ~ genuine 0.98"
    )


def test_a_within_margin_but_low_impostors_is_healthy() -> None:
    # A healthy sweep that starts far away: fp32 at 12 m has genuine 0.15, impostor -0.01.
    # The gap is small, but strangers do not look alike (impostors near 0): not a collapse.
    rows = _rows({"distance_m": 12.0, "genuine_cos_mean": 0.15, "impostor_cos_mean": 0.10})
    assert degenerate_reason(rows, None) == ""


def test_a_high_impostors_alone() -> None:
    rows = _rows({"distance_m": 1.0, "genuine_cos_mean": 0.95, "impostor_cos_mean": 0.6})
    assert degenerate_reason(rows, None) == "impostor cosine 0.60 > 0.5"
    # Just below both rules: 0.45 > floor 0.2 but 0.95 - 0.1 = 0.85 > 0.45 and 0.45 <= 0.5.
    rows = _rows({"distance_m": 1.0, "genuine_cos_mean": 0.95, "impostor_cos_mean": 0.45})
    assert degenerate_reason(rows, None) == ""


def test_b_constant_prenorm_from_probes() -> None:
    reason = degenerate_reason(_rows({"distance_m": 1.0}), _probes(_constant_prenorm(cv=0.003)))
    assert reason == "pre-norm CV 0.003 (constant)"


def test_b_threshold_is_cv_one_percent() -> None:
    rows = _rows({"distance_m": 1.0})
    assert degenerate_reason(rows, _probes(_constant_prenorm(cv=0.009))) != ""
    assert degenerate_reason(rows, _probes(_constant_prenorm(cv=0.02))) == ""


def test_b_unit_prenorm_is_by_design() -> None:
    # A graph that L2-normalises its own output: pre-norm 1 for every face, not a collapse.
    rows = _rows({"distance_m": 1.0})
    assert degenerate_reason(rows, _probes(np.ones(61) + 1e-7)) == ""


def test_b_needs_enough_photos() -> None:
    rows = _rows({"distance_m": 1.0})
    assert degenerate_reason(rows, _probes(np.array([2.0, 2.0]))) == ""
    assert degenerate_reason(rows, _probes(np.array([2.0, 2.0, 2.0]))) != ""


def test_b_reads_only_this_backend_closest_distance_simulated_probes() -> None:
    rows = _rows({"distance_m": 1.0}, {"distance_m": 5.0})
    probes = pd.concat(
        [
            _probes(_constant_prenorm(), distance=1.0),
            # Spread at another distance, of another backend, or unsimulated: all ignored.
            _probes(_healthy_prenorm(), distance=5.0),
            _probes(_healthy_prenorm(), distance=1.0, backend="other"),
            _probes(_healthy_prenorm(seed=3) * 5, distance=1.0, simulated=False).assign(
                image=lambda f: "x" + f["image"]
            ),
        ],
        ignore_index=True,
    )
    assert "pre-norm CV" in degenerate_reason(rows, probes)


def test_b_without_probes_uses_sweep_percentiles() -> None:
    rows = _rows({"distance_m": 1.0, "prenorm_p05": 1.99, "prenorm_p50": 2.0, "prenorm_p95": 2.01})
    assert degenerate_reason(rows, None) == "pre-norm p05-p95 spread 0.01 of median (constant)"
    # The healthy 0.29 spread is not flagged.
    assert degenerate_reason(_rows({"distance_m": 1.0}), None) == ""


def test_c_far_above_target() -> None:
    rows = _rows({"distance_m": 1.0, "far": 0.9})
    assert degenerate_reason(rows, None) == "FAR 0.90 at threshold 0.420"
    assert degenerate_reason(_rows({"distance_m": 1.0, "far": 0.5}), None) == ""


def test_all_three_joined() -> None:
    rows = _rows(
        {"distance_m": 1.0, "genuine_cos_mean": 0.98, "impostor_cos_mean": 0.97, "far": 1.0}
    )
    reason = degenerate_reason(rows, _probes(_constant_prenorm(cv=0.003)))
    assert reason == (
        "impostor cosine 0.97 ~ genuine 0.98; pre-norm CV 0.003 (constant); FAR 1.00 at threshold 0.420"
    )


def test_judged_at_closest_measured_distance() -> None:
    collapsed = {"genuine_cos_mean": 0.98, "impostor_cos_mean": 0.97, "far": 1.0}
    # Healthy close, collapsed far (unsorted rows): judged close, so healthy.
    rows = _rows({"distance_m": 5.0, **collapsed}, {"distance_m": 1.0})
    assert degenerate_reason(rows, None) == ""
    # A closest distance where nothing was simulated (all NaN) is passed over.
    nan = {"genuine_cos_mean": math.nan, "impostor_cos_mean": math.nan, "far": math.nan}
    rows = _rows({"distance_m": 0.5, **nan}, {"distance_m": 1.0, **collapsed})
    assert degenerate_reason(rows, None).startswith("impostor cosine 0.97")
    # Nothing measured anywhere: no evidence, nothing flagged.
    assert degenerate_reason(_rows({"distance_m": 1.0, **nan}), None) == ""


def test_settings_are_adjustable() -> None:
    rows = _rows({"distance_m": 1.0})
    assert degenerate_reason(rows, None, DegenerateSettings(far_max=0.0005)).startswith("FAR")


def test_several_backends_rejected() -> None:
    rows = pd.concat([_rows({"distance_m": 1.0}), _rows({"distance_m": 1.0}, backend="c")])
    with pytest.raises(FacequantError, match="pass one backend's rows"):
        degenerate_reason(rows, None)


def test_probes_of_several_backends_without_backend_in_sweep_rejected() -> None:
    rows = _rows({"distance_m": 1.0}).drop(columns="backend")
    probes = pd.concat([_probes(_healthy_prenorm()), _probes(_healthy_prenorm(), backend="c")])
    with pytest.raises(FacequantError, match="probe rows hold 2 backends"):
        degenerate_reason(rows, probes)


# ---------------------------------------------------------------- real broken quantizations


class _Reader(CalibrationDataReader):
    def __init__(self, input_name: str, tensors: np.ndarray) -> None:
        self._items = iter({input_name: tensors[i : i + 1]} for i in range(len(tensors)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def _range(lo: float, hi: float) -> list[dict[str, np.ndarray]]:
    return [{"rmin": np.array(lo, np.float32), "rmax": np.array(hi, np.float32)}]


def _broken_int8(
    ps: ProbeSet, overrides: dict[str, list[dict[str, np.ndarray]]], out: Path
) -> Path:
    """Static INT8 QDQ (as int8-pt) with absurd calibration ranges forced on some tensors."""
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # ORT's "consider pre-processing" advisories
    try:
        quantize_static(
            str(ps.normalized),
            str(out),
            _Reader(ps.spec.input_name, ps.calibration_tensors()),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=False,
            extra_options={"TensorQuantOverrides": overrides},
        )
    finally:
        logging.getLogger().setLevel(level)
    return out


@dataclass
class _Tables:
    probes: pd.DataFrame
    comparisons: pd.DataFrame
    sweep: pd.DataFrame
    cliff: pd.DataFrame


def _tables(ps: ProbeSet, models: dict[str, Path]) -> _Tables:
    """Probes / comparisons / sweep / cliff tables at the sweep's distances, built as
    run_sweep builds them (a broken backend is not in its registry)."""
    backends = {name: OrtBackend(name, path, ps.spec) for name, path in models.items()}

    def unit(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        norm = np.linalg.norm(raw, axis=1)
        return norm, raw / np.maximum(norm[:, None], 1e-12)

    gallery = {n: unit(b.embed(ps.gallery_crops()))[1] for n, b in backends.items()}
    keys = [img.key for img in ps.images]
    # every comparison as a row: the reference the blocked scorer is checked against elsewhere
    index = {k: i for i, k in enumerate(keys)}
    triples = list(comparisons(ps.dataset, ps.config.genuine_mode, usable=set(index)))
    probe_idx = np.array([index[a] for a, _, _ in triples])
    gallery_idx = np.array([index[b] for _, b, _ in triples])
    is_genuine = np.array([g for _, _, g in triples])
    probe_frames, comp_frames = [], []
    for d_index, distance in enumerate(ps.distances):
        crops, ok, px = ps.probe_crops(d_index)
        keep = ok[probe_idx]
        emb = {n: unit(b.embed(crops)) for n, b in backends.items()}
        for name, (prenorm, u) in emb.items():
            probe_frames.append(
                pd.DataFrame(
                    {
                        "model": "m",
                        "backend": name,
                        "distance_m": distance,
                        "face_px": px,
                        "image": keys,
                        "identity": [img.identity for img in ps.images],
                        "prenorm": prenorm,
                        "cos_to_fp32": np.sum(u * emb["fp32"][1], axis=1),
                        "simulated": ok,
                    }
                )
            )
            cos = np.sum(u[probe_idx] * gallery[name][gallery_idx], axis=1)
            comp_frames.append(
                pd.DataFrame(
                    {
                        "backend": name,
                        "distance_m": distance,
                        "face_px": px,
                        "probe": [keys[i] for i in probe_idx[keep]],
                        "gallery": [keys[i] for i in gallery_idx[keep]],
                        "genuine": is_genuine[keep],
                        "cosine": cos[keep],
                        "probe_prenorm": prenorm[probe_idx[keep]],
                    }
                )
            )
    probes = pd.concat(probe_frames, ignore_index=True)
    comps = pd.concat(comp_frames, ignore_index=True)
    close = comps.loc[(comps.backend == "fp32") & (comps.distance_m == ps.distances[0])]
    threshold = metrics.threshold_at_far(
        close.cosine[~close.genuine].to_numpy(), close.cosine[close.genuine].to_numpy(), 1e-3
    )
    sweep = metrics.sweep_table(probes, comps, threshold, "m")
    return _Tables(probes, comps, sweep, cliff_table(sweep, comps, "m", probes=probes))


@pytest.fixture(scope="module")
def real(model_path: Path, celebs13: Path, tmp_path_factory: pytest.TempPathFactory) -> _Tables:
    ps = prepare_probes(SweepConfig(model=str(model_path), data=str(celebs13), distances_m=(1.0,)))
    tmp = tmp_path_factory.mktemp("broken")
    graph = onnx.load(str(ps.normalized)).graph
    first_conv = next(n for n in graph.node if n.op_type == "Conv").output[0]
    first_prelu = next(n for n in graph.node if n.op_type == "PRelu").output[0]
    last_conv = [n for n in graph.node if n.op_type == "Conv"][-1].output[0]
    output = graph.output[0].name
    models = {
        "fp32": ps.normalized,
        "int8-pt": build_quantized(
            ps.normalized,
            ps.model_sha,
            ps.spec.input_name,
            RECIPES["int8-pt"],
            ps.calibration_tensors(),
            cache=tmp,
        ),
        # The first Conv's output forced into [0, 1e-4]: every activation saturates, so every
        # face reaches the rest of the network as the same constant map.
        "collapsed": _broken_int8(ps, {first_conv: _range(0.0, 1e-4)}, tmp / "collapsed.onnx"),
        # The same on the first PRelu output: nearly every face collapses onto one direction,
        # pre-norm ~1.9, all matching at ~0.95 (the Hailo all-INT16 symptom).
        "prelu-clipped": _broken_int8(ps, {first_prelu: _range(0.0, 1e-4)}, tmp / "prelu.onnx"),
        # The final embedding clipped symmetrically to +-1e-3: every component saturates to its
        # sign, so the pre-norm is the same 1e-3 * sqrt(512) for every face.
        "output-clipped": _broken_int8(
            ps, {last_conv: _range(-1e-3, 1e-3), output: _range(-1e-3, 1e-3)}, tmp / "out.onnx"
        ),
    }
    return _tables(ps, models)


def _reasons(real: _Tables) -> dict[str, str]:
    return dict(zip(real.cliff["backend"], real.cliff["degenerate"], strict=True))


@pytest.mark.slow
def test_healthy_backends_not_flagged(real: _Tables):
    reasons = _reasons(real)
    assert reasons["fp32"] == ""
    assert reasons["int8-pt"] == ""


@pytest.mark.slow
def test_collapsed_backend_flagged_on_every_criterion(real: _Tables):
    reason = _reasons(real)["collapsed"]
    assert "impostor cosine" in reason and "~ genuine" in reason
    assert "pre-norm CV" in reason and "(constant)" in reason
    assert "FAR 1.00" in reason
    # The naive report would have called it perfect: that is what the flag guards against.
    row = real.cliff.set_index("backend").loc["collapsed"]
    assert row["tar_close"] == 1.0


@pytest.mark.slow
def test_partially_collapsed_backend_flagged_by_cosine_and_far(real: _Tables):
    reason = _reasons(real)["prelu-clipped"]
    assert "impostor cosine" in reason and "FAR" in reason


@pytest.mark.slow
def test_constant_prenorm_backend_flagged(real: _Tables):
    # Its impostors stay apart (sign-only embeddings still discriminate a little); only its
    # constant pre-norm gives the saturated output away.
    reason = _reasons(real)["output-clipped"]
    assert reason.startswith("pre-norm CV")
    row = real.sweep.set_index("backend").loc["output-clipped"]
    assert row["impostor_cos_mean"] < 0.2


@pytest.mark.slow
def test_degenerate_column_follows_contract(real: _Tables):
    columns = list(real.cliff.columns)
    assert columns[: len(CLIFF_COLUMNS)] == list(CLIFF_COLUMNS)
    assert columns[len(CLIFF_COLUMNS)] == "degenerate"
    assert real.cliff["degenerate"].map(type).eq(str).all()

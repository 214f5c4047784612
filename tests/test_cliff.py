"""facequant.evaluate.cliff on hand-built curves and synthetic pre-norm data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from facequant.errors import FacequantError
from facequant.evaluate.cliff import (
    CLIFF_COLUMNS,
    CliffSettings,
    cliff_distance,
    cliff_table,
    prenorm_cliff,
    reliable_distance,
)

# ---------------------------------------------------------------- reliable_distance

D5 = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def test_reliable_distance_stops_at_first_failure() -> None:
    # 90% of 1.0 = 0.9: passes at 1, 2 (0.95), fails at 3 (0.5), crossing 0.9 at 2 + 0.05 / 0.45;
    # the recovery at 4-5 is noise.
    tar = np.array([1.0, 0.95, 0.5, 0.95, 0.95])
    assert reliable_distance(D5, tar, 1.0) == pytest.approx(2.0 + 0.05 / 0.45)


def test_reliable_distance_one_match_moves_it_a_fraction_of_a_step() -> None:
    # The case: TAR 0.896 vs 0.893 against a bar of 0.8936 at 5 m. On the grid that was
    # "5 m" against "4 m"; between grid points it is a few centimetres either side of 5 m.
    d = np.array([4.0, 5.0, 6.0])
    bar = 0.8936 / 0.9
    above = reliable_distance(d, np.array([0.986, 0.896, 0.764]), bar)
    below = reliable_distance(d, np.array([0.971, 0.893, 0.746]), bar)
    assert 5.0 < above < 5.05 and 4.95 < below < 5.0


def test_reliable_distance_boundary_value_passes() -> None:
    tar = np.array([1.0, 0.9, 0.89, 0.9, 0.9])
    assert reliable_distance(D5, tar, 1.0, fraction=0.9) == 2.0


def test_reliable_distance_all_pass_is_beyond_the_sweep() -> None:
    assert reliable_distance(D5, np.full(5, 0.8), 0.8) == math.inf


def test_reliable_distance_first_fails_is_nan() -> None:
    tar = np.array([0.5, 1.0, 1.0, 1.0, 1.0])
    assert math.isnan(reliable_distance(D5, tar, 1.0))


def test_reliable_distance_unsorted_input() -> None:
    order = np.array([4, 2, 0, 3, 1])
    tar = np.array([1.0, 0.95, 0.5, 0.95, 0.95])
    assert reliable_distance(D5[order], tar[order], 1.0) == pytest.approx(2.0 + 0.05 / 0.45)


def test_reliable_distance_nan_tar_ends_run() -> None:
    tar = np.array([1.0, 1.0, np.nan, 1.0, 1.0])
    assert reliable_distance(D5, tar, 1.0) == 2.0


def test_reliable_distance_zero_close_tar_is_nan() -> None:
    assert math.isnan(reliable_distance(D5, np.zeros(5), 0.0))


# ---------------------------------------------------------------- cliff_distance

D4 = np.array([1.0, 2.0, 3.0, 4.0])


def test_cliff_distance_interpolates() -> None:
    # Half of 1.0 is crossed between 3 m (0.8) and 4 m (0.2): 3 + 0.3 / 0.6 = 3.5.
    assert cliff_distance(D4, np.array([1.0, 1.0, 0.8, 0.2]), 1.0) == pytest.approx(3.5)


def test_cliff_distance_uses_fraction_of_tar_close() -> None:
    # Level 0.5 * 0.8 = 0.4, crossed between 2 m (0.6) and 3 m (0.2): 2 + 0.2 / 0.4 = 2.5.
    tar = np.array([0.8, 0.6, 0.2, 0.1])
    assert cliff_distance(D4, tar, 0.8) == pytest.approx(2.5)
    # Level 0.25 * 0.8 = 0.2 is reached exactly at 3 m.
    assert cliff_distance(D4, tar, 0.8, fraction=0.25) == pytest.approx(3.0)


def test_cliff_distance_first_crossing_only() -> None:
    # Falls at 2-3 m, recovers, falls again: the first crossing is the cliff.
    tar = np.array([1.0, 0.6, 0.4, 0.9, 0.1])
    assert cliff_distance(D5, tar, 1.0) == pytest.approx(2.5)


def test_cliff_distance_never_crossing_is_inf() -> None:
    assert cliff_distance(D4, np.array([1.0, 0.9, 0.8, 0.6]), 1.0) == math.inf


def test_cliff_distance_zero_close_tar_is_nan() -> None:
    assert math.isnan(cliff_distance(D4, np.zeros(4), 0.0))


def test_cliff_distance_unsorted_input() -> None:
    order = np.array([3, 1, 0, 2])
    tar = np.array([1.0, 1.0, 0.8, 0.2])
    assert cliff_distance(D4[order], tar[order], 1.0) == pytest.approx(3.5)


def test_cliff_distance_length_mismatch_raises() -> None:
    with pytest.raises(FacequantError):
        cliff_distance(D4, np.array([1.0, 0.5]), 1.0)


# ---------------------------------------------------------------- prenorm_cliff


def _log_uniform(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(2.0), np.log(50.0), n))


def test_prenorm_cliff_hard_step() -> None:
    x = _log_uniform(2000, seed=0)
    p50, width = prenorm_cliff(x, x >= 10.0)
    assert p50 == pytest.approx(10.0, rel=0.1)
    assert width / p50 < 0.1


def test_prenorm_cliff_gradual_is_wider() -> None:
    x = _log_uniform(2000, seed=0)
    step_p50, step_width = prenorm_cliff(x, x >= 10.0)
    # P(match) = 1 / (1 + (10 / x)^2): logistic in log x, slope 2, 50% at 10. Its 90% and
    # 10% points are 10 * 9^(1/2) = 30 and 10 / 3, so the true width is 26.7.
    rng = np.random.default_rng(1)
    matched = rng.random(x.size) < 1.0 / (1.0 + (10.0 / x) ** 2)
    p50, width = prenorm_cliff(x, matched)
    assert p50 == pytest.approx(10.0, rel=0.2)
    assert width == pytest.approx(10.0 * (3.0 - 1.0 / 3.0), rel=0.3)
    assert width > 10 * step_width


def test_prenorm_cliff_one_class_is_nan() -> None:
    x = _log_uniform(100, seed=2)
    for y in (np.ones(100, bool), np.zeros(100, bool)):
        p50, width = prenorm_cliff(x, y)
        assert math.isnan(p50) and math.isnan(width)


def test_prenorm_cliff_negative_slope_is_nan() -> None:
    x = _log_uniform(500, seed=3)
    p50, width = prenorm_cliff(x, x < 10.0)  # matches *more* at low pre-norm: no cliff
    assert math.isnan(p50) and math.isnan(width)


def test_prenorm_cliff_fifty_percent_far_outside_data_is_nan() -> None:
    # Almost all matched across 10-20 with a few scattered misses: a barely rising fit whose
    # 50% point lies far below the data.
    x = np.linspace(10.0, 20.0, 100)
    y = np.ones(100, bool)
    y[[2, 20, 45, 70, 99]] = False
    # Check the premise with a plain fit: positive slope, 50% point below 10 / 2.
    z = (np.log(x) - np.log(x).mean()) / np.log(x).std()
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(z.reshape(-1, 1), y)
    slope, intercept = fit.coef_[0, 0], fit.intercept_[0]
    assert slope > 0
    assert math.exp(np.log(x).mean() - np.log(x).std() * intercept / slope) < 5.0
    p50, width = prenorm_cliff(x, y)
    assert math.isnan(p50) and math.isnan(width)


def test_prenorm_cliff_ignores_nonpositive_prenorm() -> None:
    x = _log_uniform(2000, seed=0)
    y = x >= 10.0
    clean = prenorm_cliff(x, y)
    dirty = prenorm_cliff(np.concatenate([x, [0.0, np.nan]]), np.concatenate([y, [True, True]]))
    assert dirty == pytest.approx(clean)


# ---------------------------------------------------------------- cliff_table

THRESHOLD = 0.3
DISTANCES = [1.0, 2.0, 3.0, 4.0, 5.0]


def _sweep(curves: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for backend, tars in curves.items():
        for d, tar in zip(DISTANCES, tars, strict=True):
            rows.append(
                {
                    "model": "m",
                    "backend": backend,
                    "distance_m": d,
                    "face_px": 200.0 / d,
                    "threshold": THRESHOLD,
                    "tar": tar,
                }
            )
    return pd.DataFrame(rows)


def _comparisons(steps: dict[str, float]) -> pd.DataFrame:
    """Genuine comparisons that match exactly when probe_prenorm >= the backend's step."""
    prenorm = _log_uniform(600, seed=5)
    frames = []
    for backend, step in steps.items():
        frames.append(
            pd.DataFrame(
                {
                    "backend": backend,
                    "distance_m": 1.0,
                    "face_px": 200.0,
                    "probe": [f"p{i}.jpg" for i in range(prenorm.size)],
                    "gallery": "g.jpg",
                    "genuine": True,
                    "cosine": np.where(prenorm >= step, 0.6, 0.1),
                    "probe_prenorm": prenorm,
                }
            )
        )
        # Impostors scoring above threshold at low pre-norm: they would drag the fitted
        # 50% point down if the fit did not keep to genuine pairs.
        frames.append(
            pd.DataFrame(
                {
                    "backend": backend,
                    "distance_m": 1.0,
                    "face_px": 200.0,
                    "probe": "x.jpg",
                    "gallery": "g.jpg",
                    "genuine": False,
                    "cosine": 0.9,
                    "probe_prenorm": np.linspace(2.0, 4.0, 300),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# fp32 crosses 0.5 between 4 m (0.8) and 5 m (0.2): 4.5 m.
# int8 crosses 0.5 between 2 m (0.9) and 3 m (0.2): 2 + 0.4 / 0.7 = 2.5714 m.
CURVES = {"fp32": [1.0, 1.0, 1.0, 0.8, 0.2], "int8": [1.0, 0.9, 0.2, 0.1, 0.0]}
INT8_CLIFF = 2.0 + 0.4 / 0.7


def test_cliff_table_columns_exactly_in_contract_order() -> None:
    table = cliff_table(_sweep(CURVES), _comparisons({"fp32": 5.0, "int8": 10.0}), "m")
    expected = [
        "model", "backend", "threshold", "tar_close", "reliable_distance_m",
        "cliff_distance_m", "cliff_face_px", "cliff_prenorm", "cliff_prenorm_width",
        "distance_cost_m",
    ]  # fmt: skip
    assert list(CLIFF_COLUMNS) == expected
    assert list(table.columns[: len(expected)]) == expected
    assert table["backend"].tolist() == ["fp32", "int8"]


def test_cliff_table_two_backends() -> None:
    table = cliff_table(_sweep(CURVES), _comparisons({"fp32": 5.0, "int8": 10.0}), "m").set_index(
        "backend"
    )
    fp32, int8 = table.loc["fp32"], table.loc["int8"]
    assert (table["model"] == "m").all()
    assert (table["threshold"] == THRESHOLD).all()
    assert fp32["tar_close"] == 1.0 and int8["tar_close"] == 1.0
    assert fp32["reliable_distance_m"] == pytest.approx(3.5)  # 0.9 crossed between 3 m (1.0) and 4 m (0.8)
    assert int8["reliable_distance_m"] == pytest.approx(2.0)  # 0.9 at 2 m is the bar itself
    assert fp32["cliff_distance_m"] == pytest.approx(4.5)
    assert int8["cliff_distance_m"] == pytest.approx(INT8_CLIFF)
    # face_px = 200 / d is linear in 1/d, so the interpolation is exact.
    assert int8["cliff_face_px"] == pytest.approx(200.0 / INT8_CLIFF)
    assert fp32["cliff_face_px"] == pytest.approx(200.0 / 4.5)
    # int8 breaks closer to the camera than the reference: positive cost.
    assert int8["distance_cost_m"] == pytest.approx(4.5 - INT8_CLIFF)
    assert int8["distance_cost_m"] > 0
    assert fp32["distance_cost_m"] == 0.0
    # Pre-norm steps at 5 and 10 (the impostors at 2-4 are ignored).
    assert fp32["cliff_prenorm"] == pytest.approx(5.0, rel=0.1)
    assert int8["cliff_prenorm"] == pytest.approx(10.0, rel=0.1)
    assert int8["cliff_prenorm_width"] / int8["cliff_prenorm"] < 0.1
    assert int8["n_genuine_fit"] == 600
    assert int8["tar_far_end"] == 0.0 and int8["far_distance_m"] == 5.0
    assert int8["close_distance_m"] == 1.0


def test_cliff_table_settings_fractions() -> None:
    table = cliff_table(
        _sweep(CURVES),
        _comparisons({"fp32": 5.0, "int8": 10.0}),
        "m",
        settings=CliffSettings(reliable_fraction=0.8, cliff_fraction=0.15),
    ).set_index("backend")
    # int8: 0.8 passes at 2 m (0.9), fails at 3 m (0.2): crossed at 2 + 0.1 / 0.7; 0.15 crossed
    # between 3 m (0.2) and 4 m (0.1).
    assert table.loc["int8", "reliable_distance_m"] == pytest.approx(2.0 + 0.1 / 0.7)
    assert table.loc["int8", "cliff_distance_m"] == pytest.approx(3.5)


def test_cliff_table_reference_beyond_sweep() -> None:
    curves = {"fp32": [1.0, 1.0, 1.0, 0.9, 0.8], "int8": CURVES["int8"], "int4": [1.0] * 5}
    table = cliff_table(
        _sweep(curves), _comparisons({"fp32": 5.0, "int8": 10.0, "int4": 20.0}), "m"
    ).set_index("backend")
    assert table.loc["fp32", "cliff_distance_m"] == math.inf
    assert math.isnan(table.loc["fp32", "cliff_face_px"])
    assert table.loc["int8", "distance_cost_m"] == math.inf  # reference beyond the sweep
    assert math.isnan(table.loc["int4", "distance_cost_m"])  # inf - inf
    assert math.isnan(table.loc["fp32", "distance_cost_m"])


def test_cliff_table_reliable_bar_is_the_reference_close_tar_for_every_backend() -> None:
    # fp32 closes at 0.9, int8 at 1.0: one bar, 0.9 * 0.9 = 0.81, for both. int8 at 0.85 and
    # 0.82 stays reliable to 3 m; with its own bar (0.9) it would have failed at 2 m.
    curves = {"fp32": [0.9, 0.9, 0.85, 0.5, 0.2], "int8": [1.0, 0.85, 0.82, 0.5, 0.1]}
    comps = _comparisons({"fp32": 5.0, "int8": 10.0})
    table = cliff_table(_sweep(curves), comps, "m").set_index("backend")
    assert table.loc["int8", "reliable_tar"] == pytest.approx(0.81)
    assert table.loc["fp32", "reliable_tar"] == pytest.approx(0.81)
    assert table.loc["int8", "reliable_distance_m"] == pytest.approx(3.0 + 0.01 / 0.32)  # 0.82 -> 0.5 at 3-4 m
    # the cliff stays relative to the backend's own close TAR: 0.5 crossed between 3 and 4 m
    assert table.loc["int8", "cliff_distance_m"] == pytest.approx(4.0)
    # without the reference in the sweep each backend keeps its own bar
    alone = cliff_table(_sweep(curves), comps, "m", reference_backend="bf16").set_index("backend")
    assert alone.loc["int8", "reliable_tar"] == pytest.approx(0.9)
    assert alone.loc["int8", "reliable_distance_m"] == pytest.approx(1.0 + 0.1 / 0.15)  # 1.0 -> 0.85 at 1-2 m


def test_cliff_table_missing_reference_is_nan() -> None:
    table = cliff_table(
        _sweep(CURVES), _comparisons({"fp32": 5.0, "int8": 10.0}), "m", reference_backend="bf16"
    )
    assert table["distance_cost_m"].isna().all()


def test_cliff_table_drops_unsimulated_probes_when_given() -> None:
    comps = _comparisons({"fp32": 5.0, "int8": 10.0})
    # An unsimulated probe whose genuine pairs match at low pre-norm would blur int8's step.
    bad = pd.DataFrame(
        {
            "backend": "int8",
            "distance_m": 1.0,
            "face_px": 200.0,
            "probe": "bad.jpg",
            "gallery": "g.jpg",
            "genuine": True,
            "cosine": 0.9,
            "probe_prenorm": np.linspace(2.0, 9.0, 300),
        }
    )
    comps = pd.concat([comps, bad], ignore_index=True)
    probes = pd.DataFrame(
        {
            "backend": ["int8", "int8"],
            "distance_m": [1.0, 1.0],
            "image": ["bad.jpg", "p0.jpg"],
            "simulated": [False, True],
        }
    )
    blurred = cliff_table(_sweep(CURVES), comps, "m").set_index("backend")
    clean = cliff_table(_sweep(CURVES), comps, "m", probes=probes).set_index("backend")
    assert clean.loc["int8", "cliff_prenorm"] == pytest.approx(10.0, rel=0.1)
    assert clean.loc["int8", "n_genuine_fit"] == 600
    assert blurred.loc["int8", "n_genuine_fit"] == 900
    assert blurred.loc["int8", "cliff_prenorm_width"] > 3 * clean.loc["int8", "cliff_prenorm_width"]


# ---------------------------------------------------------------- degenerate column


def test_cliff_table_degenerate_column_right_after_contract() -> None:
    table = cliff_table(_sweep(CURVES), _comparisons({"fp32": 5.0, "int8": 10.0}), "m")
    assert table.columns[len(CLIFF_COLUMNS)] == "degenerate"
    # A minimal sweep without cosine / FAR columns has nothing to judge: "" (not NaN).
    assert table["degenerate"].tolist() == ["", ""]


def test_cliff_table_flags_collapsed_backend() -> None:
    sweep = _sweep({"fp32": CURVES["fp32"], "int16": [1.0] * 5})
    healthy = sweep["backend"] == "fp32"
    # fp32 as measured on celebs13; int16 as the collapsed Hailo model: everything matches.
    sweep["genuine_cos_mean"] = np.where(healthy, 0.72, 0.99)
    sweep["impostor_cos_mean"] = np.where(healthy, 0.01, 0.99)
    sweep["far"] = np.where(healthy, 0.001, 1.0)
    rng = np.random.default_rng(0)
    probes = pd.concat(
        [
            pd.DataFrame(
                {
                    "backend": backend,
                    "distance_m": 1.0,
                    "image": [f"p{i}.jpg" for i in range(40)],
                    "prenorm": prenorm,
                    "simulated": True,
                }
            )
            for backend, prenorm in (
                ("fp32", rng.normal(3.9, 0.35, 40)),
                ("int16", 2.0 + rng.normal(0.0, 0.002, 40)),
            )
        ],
        ignore_index=True,
    )
    comps = _comparisons({"fp32": 5.0, "int16": 10.0})
    table = cliff_table(sweep, comps, "m", probes=probes).set_index("backend")
    assert table.loc["fp32", "degenerate"] == ""
    reason = table.loc["int16", "degenerate"]
    assert reason.startswith("impostor cosine 0.99 ~ genuine 0.99; pre-norm CV 0.001")
    assert reason.endswith("FAR 1.00 at threshold 0.300")
    # Its numbers are kept as measured; the flag says they are not success.
    assert table.loc["int16", "cliff_distance_m"] == math.inf

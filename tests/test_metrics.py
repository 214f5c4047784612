"""facequant.evaluate.metrics on hand-built scores and tables (values worked out by hand in comments)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from facequant.errors import FacequantError
from facequant.evaluate.metrics import (
    SWEEP_COLUMNS,
    from_long,
    match_rates,
    sweep_table,
    threshold_at_far,
    to_long,
    wilson_interval,
)
from facequant.evaluate.paired import paired_tar_gain, pooled_tar_gain

# ---------------------------------------------------------------- wilson_interval


def test_wilson_known_values() -> None:
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)


def test_wilson_zero_successes_lower_bound_is_zero() -> None:
    # Upper bound for 0/n is z^2 / (n + z^2) = 3.8415 / 13.8415.
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(0.27753, abs=1e-4)


def test_wilson_all_successes_upper_bound_is_one() -> None:
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0
    assert lo == pytest.approx(1 - 0.27753, abs=1e-4)


def test_wilson_empty_is_nan() -> None:
    lo, hi = wilson_interval(0, 0)
    assert math.isnan(lo) and math.isnan(hi)


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(FacequantError):
        wilson_interval(11, 10)


# ---------------------------------------------------------------- threshold_at_far

IMPOSTORS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
GENUINES = np.array([0.5, 0.85, 0.97, 0.99])


def _far(threshold: float, impostors: np.ndarray = IMPOSTORS) -> float:
    return float(np.mean(impostors >= threshold))


def test_threshold_at_far_meets_target_and_is_lowest() -> None:
    # FAR 0.2 allows 2 of 10 impostors (0.9, 0.95); accepting 0.8 as well would make it 0.3.
    t = threshold_at_far(IMPOSTORS, GENUINES, 0.2)
    assert 0.8 < t <= 0.9
    assert _far(t) == pytest.approx(0.2)
    # Lowest: the next representable value below already breaks the target.
    assert _far(float(np.nextafter(t, -np.inf))) > 0.2


def test_threshold_at_far_exact_target_counts_as_met() -> None:
    # 0.3 * 10 = 3 impostors allowed exactly: threshold just above 0.7, accepting 0.8, 0.9, 0.95.
    t = threshold_at_far(IMPOSTORS, GENUINES, 0.3)
    assert 0.7 < t <= 0.8
    assert _far(t) == pytest.approx(0.3)


def test_threshold_at_far_below_resolution_is_just_above_max_impostor() -> None:
    # 0.05 < 1/10: only FAR 0 qualifies, so the threshold sits just above the top impostor.
    t = threshold_at_far(IMPOSTORS, GENUINES, 0.05)
    assert 0.95 < t < 0.95 + 1e-12
    assert _far(t) == 0.0
    assert np.sum(GENUINES >= t) == 2  # 0.97 and 0.99 still accepted
    assert threshold_at_far(IMPOSTORS, GENUINES, 0.0) == t


def test_threshold_at_far_target_one_accepts_everything() -> None:
    assert threshold_at_far(IMPOSTORS, GENUINES, 1.0) == pytest.approx(0.1)


def test_threshold_at_far_lowest_on_random_scores() -> None:
    rng = np.random.default_rng(7)
    imp = rng.normal(0.1, 0.1, 500)
    gen = rng.normal(0.6, 0.15, 200)
    candidates = np.unique(np.concatenate([imp, gen]))
    for target in (0.0, 0.001, 0.01, 0.05, 0.2):
        t = threshold_at_far(imp, gen, target)
        assert _far(t, imp) <= target
        # Every observed score below t, used as a threshold, would exceed the target.
        lower = candidates[candidates < t]
        assert lower.size and _far(float(lower.max()), imp) > target


def test_threshold_at_far_float32_scores_not_rounded_back() -> None:
    imp = np.array([0.1, 0.3, 0.7], dtype=np.float32)
    gen = np.array([0.9], dtype=np.float32)
    t = threshold_at_far(imp, gen, 0.0)
    # Comparing float32 scores with a Python float happens in float32 under NumPy 2;
    # the threshold must still exclude the top impostor.
    assert not np.any(imp >= t)
    assert np.all(gen >= t)


def test_threshold_at_far_without_impostors_raises() -> None:
    with pytest.raises(FacequantError, match="impostor"):
        threshold_at_far(np.array([]), GENUINES, 0.01)


def test_threshold_at_far_rejects_bad_target() -> None:
    with pytest.raises(FacequantError):
        threshold_at_far(IMPOSTORS, GENUINES, 1.5)


# ---------------------------------------------------------------- match_rates


def test_match_rates_counts() -> None:
    r = match_rates(np.array([0.1, 0.5, 0.6, 0.9]), np.array([0.2, 0.55, 0.3]), 0.5)
    assert r["n_genuine"] == 4 and r["n_impostor"] == 3
    assert r["tar"] == pytest.approx(0.75)  # 0.5 (>= is accept), 0.6, 0.9
    assert r["far"] == pytest.approx(1 / 3)  # 0.55
    assert (r["tar_ci_low"], r["tar_ci_high"]) == pytest.approx(wilson_interval(3, 4))
    assert (r["far_ci_low"], r["far_ci_high"]) == pytest.approx(wilson_interval(1, 3))


def test_match_rates_empty_genuine_is_nan() -> None:
    r = match_rates(np.array([]), np.array([0.2]), 0.5)
    assert r["n_genuine"] == 0
    assert math.isnan(r["tar"]) and math.isnan(r["tar_ci_low"])
    assert r["far"] == 0.0


# ---------------------------------------------------------------- sweep_table

THRESHOLD = 0.4
GALLERY = {"A": "gA.jpg", "B": "gB.jpg", "C": "gC.jpg"}

# (backend, distance, image, identity, face_px, prenorm, cos_to_fp32, simulated,
#  genuine cosine, impostor cosines vs the other two gallery identities)
PROBE_SPEC = [
    # int8 first (but at 2 m before 1 m) to check ordering by first appearance, then distance.
    ("int8", 2.0, "a.jpg", "A", 50.0, 4.0, 0.9, True, 0.6, (0.1, 0.2)),
    ("int8", 2.0, "b.jpg", "B", 50.0, 6.0, 0.7, True, 0.3, (0.45, 0.0)),
    # Not simulated: its prenorm and scores would shift every statistic if counted.
    ("int8", 2.0, "c.jpg", "C", 50.0, 99.0, -1.0, False, 0.9, (0.8, 0.7)),
    ("int8", 1.0, "a.jpg", "A", 100.0, 10.0, 0.95, True, 0.8, (0.1, 0.1)),
    ("int8", 1.0, "b.jpg", "B", 100.0, 12.0, 0.97, True, 0.7, (0.2, 0.5)),
    ("fp32", 1.0, "a.jpg", "A", 100.0, 20.0, 1.0, True, 0.9, (0.0, 0.1)),
    ("fp32", 2.0, "a.jpg", "A", 50.0, 16.0, 1.0, True, 0.5, (0.2, 0.3)),
    # A cell where nothing could be simulated: still a row, with no rates.
    ("fp32", 3.0, "a.jpg", "A", 33.0, 1.0, 1.0, False, 0.9, (0.9, 0.9)),
]


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    probes, comps = [], []
    for backend, d, image, ident, px, prenorm, cos32, sim, gen_cos, imp_cos in PROBE_SPEC:
        probes.append(
            {
                "model": "m",
                "backend": backend,
                "distance_m": d,
                "face_px": px,
                "image": image,
                "identity": ident,
                "prenorm": prenorm,
                "cos_to_fp32": cos32,
                "simulated": sim,
            }
        )
        others = [i for i in GALLERY if i != ident]
        for gallery_id, cos in [(ident, gen_cos), *zip(others, imp_cos, strict=True)]:
            comps.append(
                {
                    "backend": backend,
                    "distance_m": d,
                    "face_px": px,
                    "probe": image,
                    "gallery": GALLERY[gallery_id],
                    "genuine": gallery_id == ident,
                    "cosine": cos,
                    "probe_prenorm": prenorm,
                }
            )
    return pd.DataFrame(probes), pd.DataFrame(comps)


def test_sweep_table_columns_exactly_in_contract_order() -> None:
    probes, comps = _tables()
    table = sweep_table(probes, comps, THRESHOLD, "m")
    expected = [
        "model", "backend", "distance_m", "face_px", "n_probes", "n_genuine", "n_impostor",
        "prenorm_mean", "prenorm_p05", "prenorm_p50", "prenorm_p95", "cos_to_fp32_mean",
        "genuine_cos_mean", "impostor_cos_mean", "threshold", "tar", "tar_ci_low",
        "tar_ci_high", "far",
    ]  # fmt: skip
    assert list(SWEEP_COLUMNS) == expected
    assert list(table.columns) == [*expected, "far_ci_low", "far_ci_high", "n_not_simulated"]


def test_sweep_table_row_order() -> None:
    probes, comps = _tables()
    table = sweep_table(probes, comps, THRESHOLD, "m")
    keys = list(zip(table["backend"], table["distance_m"], strict=True))
    assert keys == [("int8", 1.0), ("int8", 2.0), ("fp32", 1.0), ("fp32", 2.0), ("fp32", 3.0)]
    assert (table["model"] == "m").all()


def test_sweep_table_aggregates_exclude_unsimulated() -> None:
    probes, comps = _tables()
    table = sweep_table(probes, comps, THRESHOLD, "m")
    row = table[(table["backend"] == "int8") & (table["distance_m"] == 2.0)].iloc[0]
    # Only a.jpg and b.jpg count: prenorms [4, 6], cos_to_fp32 [0.9, 0.7].
    assert row["face_px"] == 50.0
    assert row["n_probes"] == 2
    assert row["n_not_simulated"] == 1
    assert row["prenorm_mean"] == pytest.approx(5.0)
    assert row["prenorm_p05"] == pytest.approx(4.1)  # 4 + 0.05 * (6 - 4)
    assert row["prenorm_p50"] == pytest.approx(5.0)
    assert row["prenorm_p95"] == pytest.approx(5.9)
    assert row["cos_to_fp32_mean"] == pytest.approx(0.8)
    # Genuine [0.6, 0.3]; impostors [0.1, 0.2, 0.45, 0.0]; c.jpg's 0.9/0.8/0.7 are out.
    assert row["n_genuine"] == 2
    assert row["n_impostor"] == 4
    assert row["genuine_cos_mean"] == pytest.approx(0.45)
    assert row["impostor_cos_mean"] == pytest.approx(0.1875)
    assert row["threshold"] == THRESHOLD
    assert row["tar"] == pytest.approx(0.5)  # 0.6 passes 0.4, 0.3 does not
    assert row["far"] == pytest.approx(0.25)  # 0.45
    assert (row["tar_ci_low"], row["tar_ci_high"]) == pytest.approx(wilson_interval(1, 2))
    assert (row["far_ci_low"], row["far_ci_high"]) == pytest.approx(wilson_interval(1, 4))


def test_sweep_table_other_cells() -> None:
    probes, comps = _tables()
    table = sweep_table(probes, comps, THRESHOLD, "m").set_index(["backend", "distance_m"])
    close = table.loc[("int8", 1.0)]
    assert close["n_probes"] == 2 and close["n_not_simulated"] == 0
    assert close["tar"] == pytest.approx(1.0)  # 0.8, 0.7
    assert close["far"] == pytest.approx(0.25)  # 0.5 of [0.1, 0.1, 0.2, 0.5]
    empty = table.loc[("fp32", 3.0)]
    assert empty["n_probes"] == 0 and empty["n_genuine"] == 0 and empty["n_impostor"] == 0
    assert empty["n_not_simulated"] == 1
    assert empty["face_px"] == 33.0
    assert math.isnan(empty["tar"]) and math.isnan(empty["far"])
    assert math.isnan(empty["prenorm_mean"])


def test_sweep_table_count_columns_are_integers() -> None:
    probes, comps = _tables()
    table = sweep_table(probes, comps, THRESHOLD, "m")
    for col in ("n_probes", "n_genuine", "n_impostor", "n_not_simulated"):
        assert table[col].dtype == np.int64


def test_sweep_table_missing_column_raises() -> None:
    probes, comps = _tables()
    with pytest.raises(FacequantError, match="prenorm"):
        sweep_table(probes.drop(columns="prenorm"), comps, THRESHOLD, "m")


# ---------------------------------------------------------------- to_long / from_long


def test_to_long_shape_and_values() -> None:
    probes, comps = _tables()
    sweep = sweep_table(probes, comps, THRESHOLD, "m")
    long = to_long(sweep)
    assert list(long.columns) == ["model", "backend", "distance_m", "face_px", "metric", "value"]
    n_metrics = sweep.shape[1] - 4
    assert len(long) == len(sweep) * n_metrics
    tar = long[(long.backend == "int8") & (long.distance_m == 2.0) & (long.metric == "tar")]
    assert tar["value"].tolist() == [0.5]
    # Each sweep row's metrics are together, in column order.
    assert long["metric"].iloc[:n_metrics].tolist() == list(sweep.columns[4:])


def test_long_round_trip() -> None:
    probes, comps = _tables()
    sweep = sweep_table(probes, comps, THRESHOLD, "m")
    pd.testing.assert_frame_equal(from_long(to_long(sweep)), sweep)


def test_from_long_rejects_duplicates() -> None:
    probes, comps = _tables()
    long = to_long(sweep_table(probes, comps, THRESHOLD, "m"))
    with pytest.raises(FacequantError, match="duplicate"):
        from_long(pd.concat([long, long.iloc[[0]]], ignore_index=True))


# ---------------------------------------------------------------- paired TAR gain


def _paired_table(cos_base: dict[str, list[float]], cos_other: dict[str, list[float]], distance: float = 5.0
                  ) -> pd.DataFrame:
    """Genuine comparisons of person/i.jpg against person/g.jpg for two backends, plus one
    impostor row that must be ignored."""
    rows = []
    for backend, table in (("base", cos_base), ("other", cos_other)):
        for person, cosines in table.items():
            for i, c in enumerate(cosines):
                rows.append({"backend": backend, "distance_m": distance, "probe": f"{person}/{i}.jpg",
                             "gallery": f"{person}/g.jpg", "genuine": True, "cosine": c})
        rows.append({"backend": backend, "distance_m": distance, "probe": "a/0.jpg", "gallery": "b/g.jpg",
                     "genuine": False, "cosine": 0.99})
    return pd.DataFrame(rows)


def test_paired_gain_counts_matches_on_the_same_pairs() -> None:
    # threshold 0.5: base matches 2 of 4 (a0, b0), other matches 3 of 4 (a0, a1, b0): +0.25
    table = _paired_table({"a": [0.9, 0.4], "b": [0.8, 0.1]}, {"a": [0.9, 0.6], "b": [0.7, 0.2]})
    row = paired_tar_gain(table, 0.5, "base", "other").iloc[0]
    assert (row.n_genuine, row.n_identities) == (4, 2)
    assert (row.tar_base, row.tar_other, row.gain) == pytest.approx((0.5, 0.75, 0.25))
    # Draws of identities: both a (gain 1/2), both b (0), one each (1/4): the interval spans them.
    assert row.gain_ci_low == pytest.approx(0.0) and row.gain_ci_high == pytest.approx(0.5)


def test_paired_gain_of_a_backend_with_itself_is_exactly_zero() -> None:
    table = _paired_table({"a": [0.9, 0.4], "b": [0.8, 0.1]}, {"a": [0.9, 0.4], "b": [0.8, 0.1]})
    row = paired_tar_gain(table, 0.5, "base", "other").iloc[0]
    assert row.gain == 0.0 and row.gain_ci_low == 0.0 and row.gain_ci_high == 0.0


def test_paired_gain_uses_only_pairs_both_backends_have() -> None:
    table = _paired_table({"a": [0.9, 0.4], "b": [0.8]}, {"a": [0.9, 0.6], "b": [0.7, 0.9]})
    row = paired_tar_gain(table, 0.5, "base", "other").iloc[0]
    assert row.n_genuine == 3 and row.gain == pytest.approx(1 / 3)  # b/1.jpg has no base row


def test_paired_gain_missing_backend_raises() -> None:
    table = _paired_table({"a": [0.9]}, {"a": [0.9]})
    with pytest.raises(FacequantError, match="no genuine comparisons for backend 'int8-pt'"):
        paired_tar_gain(table, 0.5, "int8-pt", "other")


def test_pooled_gain_averages_distances_and_ignores_others() -> None:
    near = _paired_table({"a": [0.9, 0.9], "b": [0.9, 0.9]}, {"a": [0.9, 0.9], "b": [0.9, 0.9]}, distance=1.0)
    far = _paired_table({"a": [0.4, 0.4], "b": [0.4, 0.4]}, {"a": [0.6, 0.6], "b": [0.6, 0.4]}, distance=6.0)
    table = pd.concat([near, far])
    gain, low, high = pooled_tar_gain(table, 0.5, "base", "other", [1.0, 6.0])
    assert gain == pytest.approx((0.0 + 0.75) / 2)
    assert low <= gain <= high
    assert pooled_tar_gain(table, 0.5, "base", "other", [6.0])[0] == pytest.approx(0.75)
    assert all(math.isnan(v) for v in pooled_tar_gain(table, 0.5, "base", "other", [3.0]))

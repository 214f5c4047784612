"""Intervals and verdicts over people (facequant.evaluate.people, facequant.evaluate.verdicts):
pure functions on hand-built per-person counts, checked against scipy.stats where it has the
same test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from facequant.errors import FacequantError
from facequant.evaluate import people, verdicts
from facequant.evaluate.cliff import cliff_table

# ---------------------------------------------------------------- the paired test


def test_sign_flip_with_one_pair_per_person_is_the_exact_mcnemar_test():
    # 7 people whose one pair only the backend matches, 2 only fp32 matches, 4 both or neither
    diff = np.array([1] * 7 + [-1] * 2 + [0] * 4)
    assert people.sign_flip_p(diff) == pytest.approx(stats.binomtest(2, 9, 0.5).pvalue, abs=1e-12)


@pytest.mark.parametrize("diff", [[3, -1, 2, 5, 0, 4, -2, 1], [-8, 0, 0, 2, -3, -4, -1, 0, -2, 1, -1, -1, 0]])
def test_sign_flip_equals_scipys_exact_permutation_test(diff: list[int]):
    x = np.array(diff, dtype=float)
    exact = stats.permutation_test((x,), lambda v, axis: np.sum(v, axis=axis), permutation_type="samples",
                                   n_resamples=np.inf).pvalue
    assert people.sign_flip_p(x) == pytest.approx(exact, abs=1e-12)


def test_sign_flip_edge_cases_and_its_normal_approximation(monkeypatch: pytest.MonkeyPatch):
    assert people.sign_flip_p(np.zeros(13)) == 1.0
    assert people.sign_flip_p(np.array([2, -2, 1, -1])) == 1.0  # gains and losses cancel
    assert people.sign_flip_p(np.array([5])) == 1.0  # one person: a flip is as likely
    assert people.sign_flip_p(np.full(13, -3)) == pytest.approx(2 / 2**13)  # everyone loses alike
    many = np.random.default_rng(0).integers(-3, 4, size=400)
    many[:12] += 2  # 400 people, a small shift: p near 0.03
    exact = people.sign_flip_p(many)
    monkeypatch.setattr(people, "EXACT_WORK", 0)  # thousands of people: the clustered McNemar statistic
    approx = people.sign_flip_p(many)
    assert 0.01 < exact < 0.05 and approx == pytest.approx(exact, rel=0.1)


def test_smallest_p_and_tarone_family():
    assert people.smallest_p(np.array([0, 3, -1, 0])) == 0.5  # two people differ: 2 of 4 flips
    assert people.smallest_p(np.zeros(4)) == 1.0
    # m = 1: two tests can reach 0.05; m = 2: the same two reach 0.025, so the family is those two
    family = people.tarone_family([1.0, 0.5, 0.001, 0.0002, 0.25], 0.05)
    assert family.tolist() == [False, False, True, True, False]
    assert people.tarone_family([1.0, 1.0], 0.05).tolist() == [False, False]


def test_holm_step_down():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert people.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert people.holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])  # 0.5 x 2 caps, and holds the rest
    assert people.holm([]).size == 0


# ---------------------------------------------------------------- the bootstrap


def test_resamples_are_seeded_and_do_not_depend_on_the_chunk():
    a = np.concatenate(list(people.resample_weights(13, 300, 4, chunk=7)))
    b = np.concatenate(list(people.resample_weights(13, 300, 4)))
    assert a.shape == (300, 13) and (a == b).all() and (a.sum(axis=1) == 13).all()
    assert not (a == np.concatenate(list(people.resample_weights(13, 300, 5)))).all()


def test_percentile_interval_keeps_infinities_and_opens_on_unknowns():
    values = np.linspace(1.0, 2.0, 2000)
    low, high = people.percentile_interval(values)
    # the 2.5 / 97.5 % points pushed out by two Monte Carlo standard errors (1.8 % / 98.2 %)
    assert 1.0 < low < 1.025 and 1.975 < high < 2.0
    beyond = np.concatenate([values[:1900], np.full(100, np.inf)])
    assert people.percentile_interval(beyond)[1] == math.inf
    unknown = np.concatenate([values[:1900], np.full(100, np.nan)])
    assert people.percentile_interval(unknown) == (-math.inf, math.inf)
    assert people.percentile_interval(unknown, unknown="low")[0] == -math.inf
    assert people.percentile_interval(unknown, unknown="low")[1] < 2.0


# ---------------------------------------------------------------- counts


def _counts(matched: dict[str, np.ndarray], total: np.ndarray, distances: list[float]) -> people.PersonCounts:
    names = tuple(matched)
    return people.PersonCounts(tuple(f"p{i:02d}" for i in range(total.shape[0])), names,
                               np.array(distances, float), np.stack([matched[b] for b in names], axis=1), total)


def test_person_counts_from_outcome_rows():
    rows = pd.DataFrame({
        "backend": ["fp32"] * 4 + ["int8"] * 4, "distance_m": [1.0, 1.0, 1.0, 2.0] * 2,
        "probe": ["a/1", "a/2", "b/1", "a/1"] * 2, "matched": [1, 1, 0, 1, 1, 0, 0, 0]})
    counts = people.person_counts(rows.assign(matched=rows.matched.astype(bool)), {"a/1": "a", "a/2": "a", "b/1": "b"},
                                  distances=[1.0, 2.0, 3.0])
    assert counts.people == ("a", "b") and counts.backends == ("fp32", "int8")
    assert counts.total.tolist() == [[2, 1, 0], [1, 0, 0]]
    assert counts.matched[:, 0, :].tolist() == [[2, 1, 0], [0, 0, 0]]
    assert counts.matched[:, 1, :].tolist() == [[1, 0, 0], [0, 0, 0]]
    tar = counts.tar()
    assert tar[0, :2].tolist() == pytest.approx([2 / 3, 1.0]) and math.isnan(tar[0, 2])
    with pytest.raises(FacequantError, match="other genuine pairs"):
        people.person_counts(rows.iloc[:-1].assign(matched=True), {"a/1": "a", "a/2": "a", "b/1": "b"})
    with pytest.raises(FacequantError, match="has no person"):
        people.person_counts(rows.assign(matched=True), {"a/1": "a"})


def test_resampled_tar_with_everyone_once_is_the_tar():
    rng = np.random.default_rng(0)
    total = rng.integers(1, 30, size=(13, 4))
    counts = _counts({"fp32": rng.binomial(total, 0.8), "int8": rng.binomial(total, 0.7)}, total, [1, 2, 3, 4])
    assert people.resampled_tar(counts, np.ones((1, 13)))[0] == pytest.approx(counts.tar())


# ---------------------------------------------------------------- verdicts

DISTANCES = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]


def _people_curves(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """13 people with 2 to 56 pairs each (celebs13's spread), TAR falling from 1 to 0.1."""
    rng = np.random.default_rng(seed)
    pairs = np.array([56, 56, 42, 30, 20, 20, 20, 12, 12, 6, 2, 2, 2])
    total = np.repeat(pairs[:, None], len(DISTANCES), axis=1)
    tar = np.array([1.0, 1.0, 0.99, 0.98, 0.95, 0.85, 0.6, 0.1])
    return rng.binomial(total, tar[None, :]), total


def _sweep_rows(counts: people.PersonCounts, far: dict[str, float] | None = None) -> pd.DataFrame:
    tar = counts.tar()
    rows = []
    for k, b in enumerate(counts.backends):
        for j, d in enumerate(counts.distances):
            rows.append({"model": "m", "backend": b, "distance_m": d, "face_px": 200 / d, "threshold": 0.4,
                         "tar": tar[k, j], "far": (far or {}).get(b, 0.0005)})
    return pd.DataFrame(rows)


def _judge(counts: people.PersonCounts, seed: int = 0, far: dict[str, float] | None = None,
           degenerate: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict]:
    sweep = _sweep_rows(counts, far)
    comps = pd.DataFrame(columns=["backend", "genuine", "cosine", "probe_prenorm"])
    table = cliff_table(sweep, comps, "m")
    table["degenerate"] = [(degenerate or {}).get(b, "") for b in table.backend]
    return verdicts.judge(table, sweep, counts, 1e-3, verdicts.VerdictSettings(seed=seed, resamples=1000))


def test_a_backend_equal_to_fp32_is_same_at_every_seed_with_a_zero_cost():
    matched, total = _people_curves()
    counts = _counts({"fp32": matched, "copy": matched.copy()}, total, DISTANCES)
    for seed in range(5):
        table, record = _judge(counts, seed)
        row = table.set_index("backend").loc["copy"]
        assert row.verdict == "same" and math.isnan(row.worse_from_m)
        assert row.distance_cost_low_m == row.distance_cost_high_m == 0.0
        assert row.reliable_distance_low_m <= row.reliable_distance_m <= row.reliable_distance_high_m
        assert record["backends"]["copy"]["reason"].startswith("no distance where its TAR differs")
    assert table.set_index("backend").loc["fp32", "verdict"] == ""  # the reference is not judged
    assert record["bootstrap"]["resamples"] == 1000 and record["people"] == 13 and record["alpha"] == 0.05


def test_a_backend_losing_matches_from_some_distance_on_is_worse_from_there():
    matched, total = _people_curves()
    lowered = matched.copy()
    lowered[:, 4:] = matched[:, 4:] // 3  # everyone loses two thirds of their matches from 4 m on
    counts = _counts({"fp32": matched, "lowered": lowered}, total, DISTANCES)
    for seed in range(5):
        table, record = _judge(counts, seed)
        row = table.set_index("backend").loc["lowered"]
        assert row.verdict == "worse" and row.worse_from_m == 4.0
        assert row.distance_cost_low_m > 0  # it falls off the cliff closer to the camera, and that is resolved
    tests = pd.DataFrame(record["backends"]["lowered"]["distances"])
    assert not tests[tests.distance_m < 4].significant.any()
    assert "significantly below fp32's at 4, 5, 6" in record["backends"]["lowered"]["reason"]


def test_one_person_more_or_less_is_no_verdict():
    matched, total = _people_curves()
    noisy = matched.copy()
    noisy[0, 5] -= 3  # one person loses three matches at 5 m: the "one match decides"
    table, _ = _judge(_counts({"fp32": matched, "noisy": noisy}, total, DISTANCES))
    assert table.set_index("backend").loc["noisy", "verdict"] == "same"


def test_better_only_at_equal_far():
    matched, total = _people_curves()
    gaining = matched.copy()
    gaining[:, 6:] = total[:, 6:]  # everyone matches every pair at 6 and 8 m
    counts = _counts({"fp32": matched, "gaining": gaining}, total, DISTANCES)
    table, _ = _judge(counts)
    assert table.set_index("backend").loc["gaining", "verdict"] == "better"
    # the same gain while accepting impostors at 5x the target: not a gain at equal FAR
    table, record = _judge(counts, far={"fp32": 0.0008, "gaining": 0.005})
    assert table.set_index("backend").loc["gaining", "verdict"] == "same"
    assert "more false accepts: FAR 0.005 at 6 m (fp32 0.0008, target 0.001)" in record["backends"]["gaining"]["reason"]


def test_degenerate_backend_is_judged_degenerate():
    matched, total = _people_curves()
    counts = _counts({"fp32": matched, "flat": np.repeat(total[:, :1], len(DISTANCES), axis=1)}, total, DISTANCES)
    table, _ = _judge(counts, degenerate={"flat": "every embedding the same"})
    assert table.set_index("backend").loc["flat", "verdict"] == "degenerate"

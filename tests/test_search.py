"""Mixed-precision search on the real model (small: three distances, budget 1)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from facequant.analysis.search import (
    SearchSettings,
    contested_distances,
    layer_damage,
    refined_distances,
    search_precision,
    search_summary,
    write_search,
)
from facequant.errors import FacequantError
from facequant.sweep.config import SweepConfig


def test_layer_damage_scores_the_layer_that_loses_snr():
    layers = pd.DataFrame({
        "distance_m": [5.0] * 4 + [8.0] * 4,
        "layer": ["Conv_0", "Conv_1", "Conv_2", "output"] * 2,
        "op_type": ["Conv", "Conv", "Conv", "output"] * 2,
        "depth": [0, 1, 2, 3] * 2,
        "snr_db": [40, 38, 20, 19, 40, 37, 18, 17],
    })
    damage = layer_damage(layers, [5.0, 8.0])
    assert damage.layer.iloc[0] == "Conv_2"
    assert damage.set_index("layer").damage_db["Conv_2"] == pytest.approx(18.5)
    assert damage.set_index("layer").damage_db["Conv_0"] == pytest.approx(0.0)


def _swept(distances: list[float], base_reliable: float, fp32_reliable: float, fp32_cliff: float = math.inf
           ) -> SimpleNamespace:
    cliff = pd.DataFrame({"backend": ["fp32", "int8-pt"], "reliable_distance_m": [fp32_reliable, base_reliable],
                          "cliff_distance_m": [fp32_cliff, 6.0]})
    return SimpleNamespace(distances_m=tuple(distances), cliff=cliff)


def test_refined_distances_fill_where_the_reliable_distances_are_decided():
    # base reliable at 4, fp32 at 5: the crossings lie in (4, 6), filled every 0.25 m
    grid = refined_distances(_swept([1, 2, 4, 5, 6, 8], 4.0, 5.0), "int8-pt", 0.25)
    assert grid == (1, 2, 4, 4.25, 4.5, 4.75, 5, 5.25, 5.5, 5.75, 6, 8)
    # a base failing at the closest distance starts the refinement there
    assert refined_distances(_swept([1, 2], math.nan, 1.0), "int8-pt", 0.5) == (1, 1.5, 2)
    # already fine enough: nothing added
    assert refined_distances(_swept([4, 4.2, 4.4], 4.0, 4.2), "int8-pt", 0.25) == (4, 4.2, 4.4)


def test_contested_distances_run_from_the_base_failure_to_the_fp32_cliff():
    swept = _swept([1, 2, 4, 5, 6, 8], 2.0, 5.0, fp32_cliff=7.2)
    assert contested_distances(swept, "int8-pt") == [4, 5, 6]
    assert contested_distances(_swept([1, 2, 4], 1.0, 4.0), "int8-pt") == [2, 4]  # no fp32 cliff: to the end


@pytest.fixture(scope="module")
def config(model_path: Path, celebs13: Path) -> SweepConfig:
    return SweepConfig(model=str(model_path), data=str(celebs13), distances_m=(1.0, 6.0, 8.0), calibration_size=16,
                       measure_cost=False)


@pytest.mark.slow
def test_search_confirms_candidates_and_remeasures(config: SweepConfig, tmp_path: Path):
    # an unreachable goal (TAR 0.99 at 8 m, where fp32 itself is near 0.3): the full search runs
    settings = SearchSettings(base="int8-pt", target_tar=0.99, target_distance_m=8.0, budget=1, candidates=2)
    result = search_precision(config, settings)
    cand = result.candidates
    assert len(cand) == 2 and {"layer", "cos_far", "gain", "damage_db"} <= set(cand.columns)
    assert (cand.gain == cand.cos_far - cand.base_cos_far).all()
    assert cand.gain.is_monotonic_decreasing  # ranked by the measured gain
    if (cand.gain > 0).any():
        assert result.layers == [cand.layer.iloc[0]]
        assert result.recipe == f"int8-pt+16bit:nodes={cand.layer.iloc[0]}"
    assert result.final.config.seed == config.seed + 1  # re-measured on an independent draw
    assert set(result.final.cliff.backend) == {"fp32", "int8-pt", result.recipe}
    out = write_search(result, tmp_path / "search")
    summary = json.loads((out / "search.json").read_text())
    assert summary["recipe"] == result.recipe
    assert set(summary["remeasured"]) == {"fp32", "int8-pt", result.recipe}
    assert summary["cost"][result.recipe]["file_bytes"] > 0
    assert (out / "final" / "sweep.csv").is_file() and (out / "candidates.csv").is_file()


@pytest.mark.slow
def test_goal_already_met_returns_the_base(config: SweepConfig):
    result = search_precision(config, SearchSettings(base="int8-pt", tolerance_m=100.0))
    assert result.recipe == "int8-pt" and result.layers == [] and result.goal_met


def test_bad_settings(config: SweepConfig):
    with pytest.raises(FacequantError, match="static recipe"):
        search_precision(config, SearchSettings(base="int8-dyn"))
    with pytest.raises(FacequantError, match="budget"):
        search_precision(config, SearchSettings(base="int8-pt", budget=0))


@pytest.mark.slow
def test_search_recovers_reliable_distance_int8_pt_loses_against_an_fp32_gallery(model_path: Path, celebs13: Path,
                                                                                 tmp_path: Path):
    """The issue's acceptance run. Enrolled in float (a server-side gallery), probes quantized
    per tensor lose reliable distance; the search's recipe, re-measured on another seed, must
    beat int8-pt's reliable distance, and its paired TAR gain over the contested distances must
    have an interval above zero (not a boundary accident of one grid point)."""
    config = SweepConfig(model=str(model_path), data=str(celebs13), distances_m=(0.5, 3.0, 4.0, 5.0, 6.0, 7.0),
                         gallery="fp32", measure_cost=False)
    result = search_precision(config, SearchSettings(base="int8-pt", budget=3, candidates=3))
    assert "refined_distances_m" in result.run and len(result.final.distances_m) > 6
    assert result.layers and result.recipe.startswith("int8-pt+16bit:nodes=")
    summary = search_summary(result)
    remeasured = summary["remeasured"]
    # The claim rests on the paired gain's interval, not on one reliable distance read off a grid
    # (one match decides that: it came out 4.75 m for both on a CPU with AMX): never worse, and ...
    assert remeasured[result.recipe]["reliable_distance_m"] >= remeasured["int8-pt"]["reliable_distance_m"]
    low, high = summary["recipe_vs_base"]["ci95"]
    assert 0 < low <= summary["recipe_vs_base"]["tar_gain"] <= high
    out = write_search(result, tmp_path / "search")
    paired = pd.read_csv(out / "paired.csv")
    assert list(paired.distance_m) == sorted(result.final.distances_m)
    assert (paired.gain_ci_low <= paired.gain).all() and (paired.gain <= paired.gain_ci_high).all()
    assert (out / "paired_gain.png").stat().st_size > 10_000

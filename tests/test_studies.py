"""Calibration studies on the real model and photos (short sweeps: two distances)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from facequant.analysis import studies
from facequant.cli import main
from facequant.errors import FacequantError
from facequant.sweep.config import SweepConfig


@pytest.fixture(scope="module")
def base(model_path: Path, celebs13: Path) -> SweepConfig:
    return SweepConfig(model=str(model_path), data=str(celebs13), distances_m=(1.0, 6.0), measure_cost=False)


def test_default_sizes_stop_at_what_the_dataset_has(base: SweepConfig):
    labels = [v.label for v in studies.size_variants(base)]
    assert labels == ["N=16", "N=61"]
    with pytest.raises(FacequantError):
        studies.size_variants(base, [0])


@pytest.mark.slow
def test_calibration_size_study(base: SweepConfig):
    result = studies.run_study("calibration-size", base, "int8-pt", studies.size_variants(base, [2, 32]))
    t = result.table
    assert list(t.columns) == studies.STUDY_COLUMNS
    assert t.n_calibration_crops.tolist() == [2, 32]
    # different calibration sets give really different models
    assert t.cos_to_fp32_far.iloc[0] != t.cos_to_fp32_far.iloc[1]
    runs = result.runs
    assert len(runs["N=2"]["calibration"]["images"]) == 2


@pytest.mark.slow
def test_distance_aware_calibration_changes_the_model(base: SweepConfig):
    variants = studies.distance_variants(base, [(1.0,), (1.0, 6.0)])
    result = studies.run_study("calibration-distance", base, "int8-pt", variants)
    t = result.table
    assert t.variant.tolist() == ["1m", "1m+6m"]
    assert t.n_calibration_crops.tolist() == [32, 64]
    assert t.cos_to_fp32_far.iloc[0] != t.cos_to_fp32_far.iloc[1]
    assert result.runs["1m+6m"]["calibration"]["distances_m"] == [1.0, 6.0]


@pytest.mark.slow
def test_study_cli_writes_table_plot_and_refuses_overwrite(tmp_path: Path, model_path: Path, celebs13: Path):
    out = tmp_path / "study"
    args = ["study", "calibration-method", "--recipe", "int8-pt", "--methods", "minmax,percentile",
            "--model", str(model_path), "--data", str(celebs13), "--distances", "1,6", "--out", str(out), "--quiet"]
    assert main(args) == 0
    table = pd.read_csv(out / "study.csv")
    assert table.variant.tolist() == ["minmax", "percentile"]
    assert (out / "study.png").read_bytes()[:4] == b"\x89PNG"
    variants = json.loads((out / "run.json").read_text())["variants"]
    assert set(variants) == {"minmax", "percentile"}
    assert [v["config"]["measure_cost"] for v in variants.values()] == [False, False]  # no latency column: not timed
    assert main(args) == 2

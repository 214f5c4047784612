"""validate-sim on a real resolution series: the same photo captured at lower resolutions."""

from __future__ import annotations

from pathlib import Path

import cv2
import pandas as pd
import pytest

from facequant.analysis.fidelity import FIDELITY_COLUMNS, validate_simulation
from facequant.cli import main
from facequant.simulate.camera import Degradation


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory, celebs13: Path) -> tuple[Path, Path]:
    reference = celebs13 / "person01" / "img1.jpg"  # 1382x1868, a large face
    image = cv2.imread(str(reference))
    h, w = image.shape[:2]
    out = tmp_path_factory.mktemp("captures")
    for factor in (3, 4, 6, 8, 10):
        small = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out / f"res_1_{factor:02d}.png"), small)
        cv2.imwrite(str(out / f"res_1_{factor:02d}_q80.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    cv2.imwrite(str(out / "blank.png"), image[:40, :40] * 0 + 127)
    return reference, out


def test_simulation_matches_real_lower_resolution_captures(series: tuple[Path, Path], model_path: Path):
    reference, captures = series
    table = validate_simulation(str(model_path), reference, captures, backends="fp32,int8-pt")
    assert list(table.columns[: len(FIDELITY_COLUMNS)]) == FIDELITY_COLUMNS
    measured = table.dropna(subset=["backend"])
    png = measured[measured.capture.str.endswith(".png")]
    assert len(png) == 2 * 5
    # face size measured from each capture falls with the capture's resolution
    fp32 = png[png.backend == "fp32"].sort_values("capture")
    assert fp32.face_px.is_monotonic_decreasing
    assert png.delta_cos.abs().max() <= 0.02
    assert table.loc[table.capture == "blank.png", "skipped"].iloc[0] == "no face found"


def test_simulated_jpeg_matches_jpeg_captures(series: tuple[Path, Path], model_path: Path):
    reference, captures = series
    plain = validate_simulation(str(model_path), reference, captures, backends="fp32")
    matched = validate_simulation(str(model_path), reference, captures, backends="fp32",
                                  degradation=Degradation(jpeg_quality=80))
    def err(t: pd.DataFrame) -> float:
        jpg = t[t.capture.str.endswith(".jpg")]
        return float(jpg.delta_cos.abs().mean())
    # simulating the capture's own encoder brings the simulation closer to it
    assert err(matched) < err(plain)
    assert err(matched) <= 0.02


def test_cli_writes_fidelity_csv_and_refuses_overwrite(series: tuple[Path, Path], tmp_path: Path):
    reference, captures = series
    out = tmp_path / "fidelity.csv"
    assert main(["validate-sim", "--reference", str(reference), "--captures", str(captures),
                 "--backends", "fp32", "--out", str(out)]) == 0
    assert set(FIDELITY_COLUMNS) <= set(pd.read_csv(out).columns)
    before = out.read_bytes()
    assert main(["validate-sim", "--reference", str(reference), "--captures", str(captures), "--out", str(out)]) == 2
    assert out.read_bytes() == before

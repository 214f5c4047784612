"""validate-sim on a real resolution series: the same photo captured at lower resolutions."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd
import pytest
from corpus import one_line_error, snapshot

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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_cli_writes_a_results_directory_and_refuses_overwrite(series: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]):
    reference, captures = series
    out = tmp_path / "val2"
    args = ["validate-sim", "--reference", str(reference), "--captures", str(captures), "--backends", "fp32"]
    assert main([*args, "--out", f"{out}/"]) == 0  # a trailing slash names the folder, as for every --out
    assert sorted(p.name for p in out.iterdir()) == [".facequant.json", "fidelity.csv", "run.json"]
    assert set(FIDELITY_COLUMNS) <= set(pd.read_csv(out / "fidelity.csv").columns)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["backends"] == "fp32" and run["versions"]["onnxruntime"] and run["model"]["sha256"]
    assert str(out / "fidelity.csv") in capsys.readouterr().out
    before = snapshot(out)
    assert main([*args, "--out", str(out)]) == 2  # never replaced without --force, before any work
    one_line_error(capsys, str(out), "--force")
    assert snapshot(out) == before
    assert main([*args, "--out", str(out), "--force"]) == 0  # its own results directory: replaced
    assert json.loads((out / "run.json").read_text())["config"] == run["config"]

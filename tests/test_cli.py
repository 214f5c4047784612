from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from facequant.cli import main
from facequant.cli.main import build_parser


def test_help_teaches(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    for option in ("--backends", "--camera", "--distances", "--face-px", "--far", "--calib-method", "--force"):
        assert option in text
    assert "examples:" in text


def test_models_inspect_prints_spec(capsys: pytest.CaptureFixture[str], model_path: Path):
    assert main(["models", "inspect", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "112" in out and "512" in out and "opset" in out and "127" in out


def test_cameras_lists_presets(capsys: pytest.CaptureFixture[str]):
    assert main(["cameras"]) == 0
    out = capsys.readouterr().out
    assert "1080p-90" in out and "focal 960 px" in out


@pytest.mark.slow
def test_config_file_and_face_px_sweep(tmp_path: Path, model_path: Path, celebs13: Path):
    config = tmp_path / "c.yaml"
    config.write_text("backends: fp32\nface-px: 112,40\ncamera: 720p-60\nseed: 5\n")
    out = tmp_path / "run"
    assert main(["sweep", "--config", str(config), "--model", str(model_path), "--data", str(celebs13),
                 "--out", str(out), "--quiet"]) == 0
    sweep = pd.read_csv(out / "sweep.csv")
    assert sorted(sweep.face_px.round().tolist()) == [40, 112]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["seed"] == 5 and run["camera"]["name"] == "720p-60"


def test_config_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "c.yaml"
    config.write_text("bogus: 1\n")
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bogus" in err and str(config) in err and len(err.splitlines()) == 1
    assert main(["sweep", "--backends", "fp32,int3", "--out", str(tmp_path / "r")]) == 2
    assert "int3" in capsys.readouterr().err


def test_example_config_parses():
    from facequant import settings
    from facequant.cli.common import values
    from facequant.config import sweep_config

    args = build_parser().parse_args(["sweep", "--config", str(settings.configs_dir() / "example-sweep.yaml")])
    config = sweep_config(values(args))
    assert config.camera == "720p-60" and "a16w8" in config.backends and config.degradation.jpeg_quality == 90


@pytest.mark.slow
def test_search_precision_command_writes_and_explains(tmp_path: Path, model_path: Path, celebs13: Path,
                                                      capsys: pytest.CaptureFixture[str]):
    # An unreachable target (TAR 0.99 at 6 m): the whole search runs once, small (budget 1).
    out = tmp_path / "search"
    args = ["search-precision", "--model", str(model_path), "--data", str(celebs13), "--distances", "1,4,6",
            "--budget", "1", "--candidates", "2", "--target-tar", "0.99", "--target-distance", "6",
            "--calib-size", "16", "--no-latency", "--out", str(out), "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "search.json").read_text())
    assert f"recipe: {summary['recipe']}" in text and "goal not met" in text
    assert "TAR vs fp32 at 6 m:" in text  # the contested range is one distance here
    assert summary["settings"]["refine"] is True and "refined_distances_m" not in summary  # target mode: no refinement
    assert (out / "steps.csv").is_file() and (out / "final" / "cliff.csv").is_file()
    # the search folder and its final/ re-measured sweep are each a marked results directory
    assert "final/run.json" in json.loads((out / ".facequant.json").read_text())["files"]
    assert "run.json" in json.loads((out / "final" / ".facequant.json").read_text())["files"]
    assert "CPU not timed" in text and summary["cost"]["fp32"]["file_bytes"] > 0  # --no-latency is honoured
    # the results are kept: running again into the same folder is refused before any work
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err

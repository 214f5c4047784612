"""Issue 19's frictions a new user met, each held by a test that failed before its fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fake_sweep import fake_result

from facequant.cli.main import main
from facequant.results.directory import write_results
from facequant.results.output import check_output_dir
from facequant.simulate.camera import camera_from_spec
from facequant.sweep.config import SweepConfig

DISTANCES = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]


def recommendable(out: Path) -> Path:
    """A results directory from fake rows that recommend can read: run.json with a camera."""
    write_results(fake_result(SweepConfig(model="m.onnx", data="d"), DISTANCES, DISTANCES), out)  # type: ignore[arg-type]
    run = json.loads((out / "run.json").read_text())
    run.update({"camera": camera_from_spec("1080p-90").to_dict(), "model": {"spec": {"input_size": [112, 112]}}})
    run["config"]["camera"] = "1080p-90"
    (out / "run.json").write_text(json.dumps(run))
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_scenario_does_not_replace_every_scenario_s_recommendation(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = recommendable(tmp_path / "r")
    assert main(["recommend", "--results", str(out)]) == 0
    full = out / "recommend.csv"
    held = digest(full)
    capsys.readouterr()
    assert main(["recommend", "--results", str(out), "--scenario", "corridor"]) == 0
    said = capsys.readouterr().out
    beside = out / "recommend-corridor.csv"
    assert digest(full) == held, "recommend.csv (every scenario) was replaced by one scenario's rows"
    assert beside.is_file() and {line.split(",")[0] for line in beside.read_text().splitlines()[1:]} == {"corridor"}
    assert f"written {beside}" in said and "recommend.csv keeps its" in said
    # the same scenarios again replace recommend.csv itself (a derived file), and --force still may
    assert main(["recommend", "--results", str(out), "--scenario", "kiosk,corridor,far-field"]) == 0
    assert not (out / "recommend-kiosk+corridor+far-field.csv").exists()
    check_output_dir(out, force=True)  # recommend-corridor.csv is facequant's: the folder stays replaceable

"""--executor ray on a local Ray instance gives exactly the local executor's results."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
from corpus import one_line_error

from facequant.cli import main


@pytest.mark.slow
def test_ray_executor_equals_local(tmp_path: Path, model_path: Path, celebs13: Path):
    pytest.importorskip("ray", reason="the [ray] extra (CI installs it)")
    common = ["sweep", "--model", str(model_path), "--data", str(celebs13), "--backends", "fp32,int8-pt,int8-pc",
              "--distances", "0.5,3,7", "--no-latency", "--quiet", "--no-embedding-cache", "--chunk-size", "16"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    for name in ("sweep.csv", "cliff.csv", "probes.csv", "identification.csv", "genuine.parquet"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["execution"]["executor"] == "ray" and run["execution"]["actors"] >= 1


def test_ray_missing_is_one_line(tmp_path: Path, model_path: Path, celebs13: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]):
    real_import = builtins.__import__

    def no_ray(name: str, *args: object, **kwargs: object) -> object:
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'", name="ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "facequant.sweep.ray_executor", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["sweep", "--model", str(model_path), "--data", str(celebs13), "--backends", "fp32",
                 "--distances", "1", "--no-latency", "--quiet", "--executor", "ray", "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "--executor ray", "pip install")
    assert not (tmp_path / "r").exists()

"""The fast paths give the same bytes as the plain ones on celebs13: crops held in memory vs
streamed from the crop cache (--crop-memory 0), and a warm run's cached score summaries vs
scores computed afresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facequant.cli import main
from facequant.settings import CACHE_ENV

RUN = ["--backends", "fp32,int8-pt", "--distances", "0.5,2,5", "--no-latency", "--quiet"]
TABLES = ("sweep.csv", "cliff.csv", "identification.csv")


def _sweep(out: Path, model: Path, data: Path, *args: str) -> dict[str, object]:
    assert main(["sweep", "--model", str(model), "--data", str(data), "--out", str(out), *RUN, *args]) == 0
    return json.loads((out / "run.json").read_text())


@pytest.mark.slow  # three end-to-end sweeps
def test_held_streamed_and_warm_runs_write_the_same_bytes(tmp_path: Path, model_path: Path, celebs13: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    held = _sweep(tmp_path / "held", model_path, celebs13, "--no-embedding-cache", "--crop-memory", "1024")
    streamed = _sweep(tmp_path / "streamed", model_path, celebs13, "--no-embedding-cache", "--crop-memory", "0")
    assert held["execution"]["crops_held"] is True  # type: ignore[index]
    assert streamed["execution"]["crops_held"] is False  # type: ignore[index]
    assert streamed["execution"]["crop_reads_unchanged"] > 0  # type: ignore[index]
    _sweep(tmp_path / "first", model_path, celebs13)  # fills the embedding and score caches
    warm = _sweep(tmp_path / "warm", model_path, celebs13)
    assert warm["timings"]["embeddings_computed"] == 0  # type: ignore[index]
    for name in TABLES:
        want = (tmp_path / "held" / name).read_bytes()
        for other in ("streamed", "first", "warm"):
            assert (tmp_path / other / name).read_bytes() == want, (other, name)

"""The scale engine on celebs13: blocked scores equal per-comparison rows, the embedding cache
computes only what is new, identification is measured and can drive the cliff."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facequant.cli import main
from facequant.evaluate import metrics
from facequant.settings import CACHE_ENV
from facequant.sweep.embedding_cache import EmbeddingCache

FAST = ["--no-latency", "--quiet"]


def _sweep(out: Path, model: Path, data: Path, *args: str) -> dict[str, object]:
    assert main(["sweep", "--model", str(model), "--data", str(data), "--out", str(out), *FAST, *args]) == 0
    return json.loads((out / "run.json").read_text())


@pytest.mark.slow  # end-to-end sweeps: the full suite's
def test_blocked_scores_equal_per_comparison_rows(tmp_path: Path, model_path: Path, celebs13: Path):
    out = tmp_path / "run"
    run = _sweep(out, model_path, celebs13, "--backends", "fp32,int8-pt", "--distances", "0.5,4", "--save-comparisons")
    rows = pd.read_parquet(out / "comparisons.parquet")
    n = run["dataset"]["usable"]
    assert len(rows) == 2 * 2 * n * (n - 1)  # every ordered pair of different photos, 2 backends x 2 distances
    close = rows[(rows.backend == "fp32") & (rows.distance_m == 0.5)]
    # the threshold from the blocked top-k is exactly threshold_at_far over every impostor row
    want = metrics.threshold_at_far(close.cosine[~close.genuine].to_numpy(), np.array([]), 1e-3)
    assert run["threshold"]["value"] == want
    probes = pd.read_csv(out / "probes.csv")
    table = metrics.sweep_table(probes, rows, want, "fr_feature.onnx")
    sweep = pd.read_csv(out / "sweep.csv")
    for column in table.columns:
        if column in ("model", "backend") or column in metrics.COUNT_COLUMNS:
            assert (table[column].to_numpy() == sweep[column].to_numpy()).all(), column
        else:
            assert np.allclose(table[column], sweep[column], rtol=0, atol=1e-12, equal_nan=True), column
    genuine = pd.read_parquet(out / "genuine.parquet")
    assert len(genuine) == int(rows.genuine.sum())
    assert sorted(genuine.cosine.round(12)) == sorted(rows.cosine[rows.genuine].round(12))


@pytest.mark.slow  # end-to-end sweeps: the full suite's
def test_embedding_cache_computes_only_what_is_new(tmp_path: Path, model_path: Path, celebs13: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    base = ["--backends", "fp32,int8-pt", "--distances", "1,3"]
    first = _sweep(tmp_path / "a", model_path, celebs13, *base)
    photos = first["dataset"]["usable"]
    assert first["timings"]["embeddings_computed"] == photos * 3 * 2  # enrolment + 2 distances, 2 backends
    again = _sweep(tmp_path / "b", model_path, celebs13, *base)
    assert again["timings"]["embeddings_computed"] == 0
    assert (tmp_path / "a" / "sweep.csv").read_bytes() == (tmp_path / "b" / "sweep.csv").read_bytes()
    more = _sweep(tmp_path / "c", model_path, celebs13, "--backends", "fp32,int8-pt", "--distances", "1,3,6")
    assert more["timings"]["embeddings_computed"] == photos * 2  # the new distance only
    other = _sweep(tmp_path / "d", model_path, celebs13, "--backends", "fp32,int8-pt,int8-pc", "--distances", "1,3")
    assert other["timings"]["embeddings_computed"] == photos * 3  # the new backend only
    fresh = _sweep(tmp_path / "e", model_path, celebs13, *base, "--no-embedding-cache")
    assert fresh["timings"]["embeddings_computed"] == photos * 3 * 2
    assert (tmp_path / "a" / "sweep.csv").read_bytes() == (tmp_path / "e" / "sweep.csv").read_bytes()


def test_a_corrupt_cache_row_is_recomputed(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    keys = [EmbeddingCache.key("b", f"crop{i}") for i in range(3)]
    cache.put((k, np.full(4, i, np.float32)) for i, k in enumerate(keys))
    cache.close()
    db = sqlite3.connect(tmp_path / "e.sqlite")
    db.execute("UPDATE embeddings SET vector = ? WHERE key = ?", (np.zeros(4, np.float32).tobytes(), keys[1]))
    db.commit()
    db.close()
    found = EmbeddingCache(tmp_path / "e.sqlite").get(keys)
    assert set(found) == {keys[0], keys[2]} and found[keys[2]].tolist() == [2, 2, 2, 2]
    assert "failed its checksum" in capsys.readouterr().err


def test_an_unreadable_cache_file_is_set_aside(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "e.sqlite"
    path.write_bytes(b"not a database" * 100)
    cache = EmbeddingCache(path)
    cache.put([(b"k", np.ones(2, np.float32))])
    assert list(cache.get([b"k"])) == [b"k"]
    assert "set aside" in capsys.readouterr().err
    assert [p.name.startswith("e.sqlite.corrupt-") for p in tmp_path.iterdir()].count(True) == 1


def test_identification_is_measured_and_can_drive_the_cliff(tmp_path: Path, model_path: Path, celebs13: Path):
    out = tmp_path / "ident"
    run = _sweep(out, model_path, celebs13, "--backends", "fp32,int8-pt", "--distances", "0.5,4,12",
                 "--protocol", "identification", "--nonmated-fraction", "0.3")
    table = pd.read_csv(out / "identification.csv")
    info = run["identification"]
    assert run["protocol"] == "identification" and info["available"]
    assert len(info["not_enrolled_identities"]) == 4  # 30 % of 13 people
    assert set(table.backend) == {"fp32", "int8-pt"} and sorted(set(table.distance_m)) == [0.5, 4.0, 12.0]
    assert (table.tpir <= table.rank1 + 1e-12).all() and (table.n_mated == info["mated_probes"]).all()
    fp32 = table[table.backend == "fp32"].set_index("distance_m")
    assert fp32.rank1[0.5] == 1.0 and fp32.tpir[12.0] < 0.5  # everyone named at 0.5 m; most lost at 12 m
    cliff = pd.read_csv(out / "cliff.csv")
    close = table[table.distance_m == 0.5].set_index("backend")
    assert np.allclose(cliff.set_index("backend").tar_close, close.tpir.reindex(cliff.backend))
    assert any("identification threshold" in w for w in run["warnings"])  # 18 non-mated probes cannot resolve 0.01
    assert main(["recommend", "--results", str(out)]) == 0


def test_comparison_files_of_killed_runs_are_cleared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import subprocess
    import sys

    from facequant.sweep.comparison_rows import ComparisonRows

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "cache" / "tmp"
    folder.mkdir(parents=True)
    stale = folder / f"comparisons-{int(dead.stdout)}-x.parquet"  # a run killed mid-write left it
    stale.write_bytes(b"PAR1 half")
    live = folder / f"comparisons-{__import__('os').getpid()}-y.parquet"  # a run still going
    live.write_bytes(b"PAR1")
    rows = ComparisonRows(["a", "b"])
    rows.sink("fp32", 1.0, 50.0, np.ones(2))(np.array([0]), np.array([1]), np.array([0.5]), np.array([False]))
    path = rows.close()
    assert not stale.exists() and live.exists()
    assert pd.read_parquet(path).to_dict("records") == [{"backend": "fp32", "distance_m": 1.0, "face_px": 50.0,
                                                         "probe": "a", "gallery": "b", "genuine": False,
                                                         "cosine": 0.5, "probe_prenorm": 1.0}]

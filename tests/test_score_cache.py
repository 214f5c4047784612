"""The score cache: a stored cell reads back bit for bit, its key moves with every input of
the scoring, and a corrupt row is scored again rather than trusted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from facequant.evaluate import scoring
from facequant.sweep.score_cache import ScoreCache, cell_key, pack, unpack


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, 16))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"probes": _unit(rng, 30), "rows": np.arange(30), "gallery": _unit(rng, 30),
            "identity": np.repeat(np.arange(10), 3)}


def _cell(i: dict[str, np.ndarray], threshold: float | None = None, keep_top: int = 7,
          histogram: bool = True) -> scoring.CellScores:
    return scoring.score_all_pairs(i["probes"], i["rows"], i["gallery"], i["identity"], False, threshold, keep_top,
                                   None, histogram)


def _same(a: scoring.CellScores, b: scoring.CellScores) -> None:
    for x, y in zip(a.genuine.arrays(), b.genuine.arrays(), strict=True):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
    assert (a.impostors.n, a.impostors.accepted) == (b.impostors.n, b.impostors.accepted)
    assert a.impostors.total.hex() == b.impostors.total.hex()
    assert (a.impostors.histogram is None) == (b.impostors.histogram is None)
    if a.impostors.histogram is not None:
        assert b.impostors.histogram is not None
        assert a.impostors.histogram.tobytes() == b.impostors.histogram.tobytes()
    assert (a.top is None) == (b.top is None)
    if a.top is not None and b.top is not None:
        assert a.top.k == b.top.k
        for x, y in zip(a.top.sorted_desc(), b.top.sorted_desc(), strict=True):
            assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize(("threshold", "keep_top", "histogram"), [(None, 7, True), (0.3, 0, False)])
def test_a_cell_reads_back_bit_for_bit(inputs: dict[str, np.ndarray], threshold: float | None, keep_top: int,
                                       histogram: bool):
    cell = _cell(inputs, threshold, keep_top, histogram)
    assert cell.genuine.arrays()[0].size and cell.impostors.n
    _same(cell, unpack(pack(cell)))


def test_the_key_moves_with_every_input(inputs: dict[str, np.ndarray]):
    def key(**change: object) -> bytes:
        i = {**inputs, **{k: v for k, v in change.items() if k in inputs}}
        return cell_key(i["probes"], i["rows"], i["gallery"], i["identity"], change.get("rule", ("all", False)),
                        change.get("threshold", 0.3), change.get("keep_top", 0),  # type: ignore[arg-type]
                        change.get("histogram", False))  # type: ignore[arg-type]

    base = key()
    nudged = inputs["probes"].copy()
    nudged[4, 2] = np.nextafter(nudged[4, 2], 2.0)  # one bit of one embedding
    changes = [{"probes": nudged}, {"gallery": inputs["gallery"][::-1]}, {"rows": inputs["rows"][::-1]},
               {"identity": np.roll(inputs["identity"], 1)}, {"rule": ("all", True)}, {"threshold": 0.30000001},
               {"threshold": None}, {"keep_top": 8}, {"histogram": True}]
    keys = [key(**c) for c in changes]
    assert base == key() and base not in keys and len(set(keys)) == len(keys)


def test_stored_then_found(inputs: dict[str, np.ndarray], tmp_path: Path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    k = cell_key(inputs["probes"], inputs["rows"], inputs["gallery"], inputs["identity"], ("all", False), None, 7, True)
    assert cache.get(k) is None
    cell = _cell(inputs)
    cache.put(k, cell)
    cache.close()
    again = ScoreCache(tmp_path / "scores.sqlite")
    found = again.get(k)
    assert found is not None
    _same(cell, found)
    assert again.stats()["hits"] == 1


def test_a_corrupt_row_is_scored_again_with_one_warning(inputs: dict[str, np.ndarray], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "scores.sqlite"
    cache = ScoreCache(path)
    k = b"k" * 32
    cache.put(k, _cell(inputs))
    cache.close()
    with sqlite3.connect(path) as db:
        blob = db.execute("SELECT summary FROM cells").fetchone()[0]
        db.execute("UPDATE cells SET summary = ?", (blob[:-9] + b"x" + blob[-8:],))
    again = ScoreCache(path)
    assert again.get(k) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt score cache" in err and str(path) in err


def test_an_unreadable_file_is_set_aside(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "scores.sqlite"
    path.write_bytes(b"not a database" * 100)
    cache = ScoreCache(path)
    assert cache.get(b"k") is None
    assert "set aside" in capsys.readouterr().err
    assert list(tmp_path.glob("scores.sqlite.corrupt-*"))

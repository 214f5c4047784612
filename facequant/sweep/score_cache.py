"""Score summaries computed before, reused: one SQLite file beside the embedding cache.

Scoring a (backend, distance) cell compares every probe with every enrolled photo: N^2 work
that a re-run whose embeddings all come from the embedding cache would redo to the same
numbers. A cell's summary (its genuine comparisons, its impostor counts, sum, histogram and top
scores: facequant.evaluate.scoring.CellScores) is stored under a digest of everything it is
computed from: the probes' and the gallery's unit embeddings (their bytes, so whatever
computed them), the probes' photo rows, the identities, the genuine rule or the listed pairs,
the threshold, how many top scores are kept and whether the histogram is. The same inputs give
the same bytes out, so a cached cell is the cell.

As in the embedding cache, each row carries a checksum of its key and content; a row that
fails it is treated as absent (scored again, one warning), and a file SQLite cannot open is set
aside. Never trusted, never fatal.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import threading
from pathlib import Path

import numpy as np

from facequant import settings
from facequant.evaluate import scoring
from facequant.sweep.embedding_cache import SqliteCache, open_sqlite

#: Bump when what a summary holds, or how a cell is scored, changes.
SCORE_CACHE_VERSION = 1


def _checksum(key: bytes, blob: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in (key, blob):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def cell_key(probes: np.ndarray, probe_rows: np.ndarray, gallery: np.ndarray, identity: np.ndarray,
             rule: object, threshold: float | None, keep_top: int, histogram: bool,
             pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> bytes:
    """The digest a cell's summary is stored under: every input of its scoring, by content."""
    h = hashlib.blake2b(digest_size=32)
    h.update(repr((SCORE_CACHE_VERSION, rule, None if threshold is None else float(threshold).hex(),
                   int(keep_top), bool(histogram))).encode())
    arrays = [probes, probe_rows, gallery, identity, *(pairs or ())]
    for array in arrays:
        a = np.ascontiguousarray(array)
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.digest()


def pack(cell: scoring.CellScores) -> bytes:
    """A cell's summary as an .npz (no pickled objects)."""
    probe, gallery, cosine = cell.genuine.arrays()
    imp = cell.impostors
    arrays: dict[str, np.ndarray] = {
        "probe": probe, "gallery": gallery, "cosine": cosine,
        "counts": np.array([imp.n, imp.accepted], np.int64), "total": np.array([imp.total], np.float64)}
    if imp.histogram is not None:
        arrays["histogram"] = imp.histogram
    if cell.top is not None:
        arrays.update(top_k=np.array([cell.top.k], np.int64), top_values=cell.top.values, top_pairs=cell.top.pairs)
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **arrays)
    return out.getvalue()


def unpack(blob: bytes) -> scoring.CellScores:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        genuine = scoring.GenuineScores()
        if len(z["probe"]):
            genuine.add(z["probe"], z["gallery"], z["cosine"])
        n, accepted = (int(v) for v in z["counts"])
        imp = scoring.ImpostorCounts(n, float(z["total"][0]), accepted,
                                     z["histogram"].astype(np.int64) if "histogram" in z.files else None)
        top = None
        if "top_k" in z.files:
            top = scoring.TopK(int(z["top_k"][0]))
            top.values, top.pairs = z["top_values"].astype(np.float64), z["top_pairs"].astype(np.int64)
    return scoring.CellScores(genuine, imp, top)


class ScoreCache(SqliteCache):
    """get / put cell summaries by cell_key; `path=None` keeps nothing (every lookup misses)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.hits = 0
        self.misses = 0
        self._warned = False
        self._lock = threading.Lock()
        self._db = self._open(path) if path is not None else None

    @classmethod
    def default(cls, enabled: bool = True) -> ScoreCache:
        return cls(settings.cache_dir() / "scores.sqlite" if enabled else None)

    def _open(self, path: Path) -> sqlite3.Connection | None:
        return open_sqlite(path, "CREATE TABLE IF NOT EXISTS cells (key BLOB PRIMARY KEY, summary BLOB NOT NULL, "
                                 "checksum BLOB NOT NULL)", "cells", "score cache", "scoring everything")

    def get(self, key: bytes) -> scoring.CellScores | None:
        """The cell stored under `key` when present and intact, else None."""
        row = None
        with self._lock:
            if self._db is not None:
                try:
                    row = self._db.execute("SELECT summary, checksum FROM cells WHERE key = ?", (key,)).fetchone()
                except sqlite3.DatabaseError as exc:
                    self._disable(exc)
        cell = None
        if row is not None:
            summary, checksum = row
            if isinstance(summary, bytes) and checksum == _checksum(key, summary):
                try:
                    cell = unpack(summary)
                except (OSError, ValueError, KeyError, TypeError):
                    cell = None
            if cell is None:
                self._warn_once(f"{self.path}: corrupt score cache: a row failed its checksum; scoring such "
                                "cells again (delete the file to start afresh)")
        self.hits += cell is not None
        self.misses += cell is None
        return cell

    def put(self, key: bytes, cell: scoring.CellScores) -> None:
        blob = pack(cell)
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("INSERT OR REPLACE INTO cells VALUES (?, ?, ?)", (key, blob, _checksum(key, blob)))
            except sqlite3.DatabaseError as exc:
                self._disable(exc)

    def _disable(self, exc: Exception) -> None:
        self._warn_once(f"{self.path}: score cache failed ({exc}); scoring the rest without it")
        if self._db is not None:
            self._db.close()
            self._db = None


"""Embeddings computed before, reused: one SQLite file in the cache folder.

A row is keyed by everything that determines the embedding (EmbeddingCache.key): the backend
(its model file's sha256 and the preprocessing it applies, which for a quantized backend
covers recipe and calibration), and the probe crop (the photo's bytes and the face pipeline's
settings, the face size it was simulated at, the degradation and its noise seed, the model
input size). A re-run that adds one backend or one distance computes only what is new.

Each row carries a checksum of its key, dimension and vector together: a row moved under
another key, cut to another size or changed fails it, as does a row whose size is not the
model's; such a row is treated as absent (recomputed, with one warning saying the cache is
corrupt), and a database file SQLite cannot open is set aside and started afresh. Never
trusted, never fatal: the cache only ever costs or saves time.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from facequant import settings
from facequant.cache import warn

#: Bump when anything about how embeddings are computed or checked changes, so old rows are not
#: reused (2: the checksum covers the key and the dimension).
EMBEDDING_CACHE_VERSION = 2
_SQL_BATCH = 500  # keys per SELECT (SQLite's variable limit is 32766; smaller keeps memory flat)


def _libraries() -> str:
    """The releases that compute an embedding: OpenCV simulates the crop, ONNX Runtime runs it."""
    import cv2
    import onnxruntime

    return f"cv{cv2.__version__}|ort{onnxruntime.__version__}"


_LIBRARIES = _libraries()


def _digest(*parts: object) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.digest()


def _checksum(key: bytes, dim: int, vector: bytes) -> bytes:
    """Key, dimension and vector together: no part of a row can be swapped for another's."""
    h = hashlib.blake2b(digest_size=16)
    for part in (bytes(key), int(dim).to_bytes(8, "little", signed=True), bytes(vector)):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


class SqliteCache:
    """What the embedding and score caches share: one warning per run, closing, and the
    counts run.json records. Subclasses set these attributes in their __init__."""

    path: Path | None
    hits: int
    misses: int
    _db: sqlite3.Connection | None
    _warned: bool
    _lock: threading.Lock

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            warn(message)
            self._warned = True

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                finally:
                    self._db = None

    def stats(self) -> dict[str, object]:
        return {"path": str(self.path) if self.path else None, "hits": self.hits, "misses": self.misses}


class EmbeddingCache(SqliteCache):
    """get / put raw embeddings by key; `path=None` keeps nothing (every lookup misses)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0
        self._warned = False
        self._lock = threading.Lock()  # the chunk-preparing thread reads while the main thread writes
        if path is not None:
            self._db = self._open(path)

    @classmethod
    def default(cls, enabled: bool = True) -> EmbeddingCache:
        return cls(settings.cache_dir() / "embeddings.sqlite" if enabled else None)

    @staticmethod
    def key(backend_key: str, crop_key: str) -> bytes:
        return _digest(EMBEDDING_CACHE_VERSION, _LIBRARIES, backend_key, crop_key)

    def _open(self, path: Path) -> sqlite3.Connection | None:
        return open_sqlite(path, "CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, dim INTEGER NOT NULL, "
                                 "vector BLOB NOT NULL, checksum BLOB NOT NULL)", "embeddings", "embedding cache",
                           "computing everything")

    def get(self, keys: Sequence[bytes], dim: int | None = None) -> dict[bytes, np.ndarray]:
        """The cached float32 vectors of those keys that are present and intact (and of `dim`
        values, the model's embedding size, when given)."""
        found: dict[bytes, np.ndarray] = {}
        if self._db is not None:
            for start in range(0, len(keys), _SQL_BATCH):
                chunk = list(keys[start:start + _SQL_BATCH])
                marks = ",".join("?" * len(chunk))
                try:
                    with self._lock:
                        if self._db is None:
                            break
                        rows = self._db.execute(
                            f"SELECT key, dim, vector, checksum FROM embeddings WHERE key IN ({marks})", chunk
                        ).fetchall()
                except sqlite3.DatabaseError as exc:
                    self._disable(exc)
                    break
                for key, size, vector, checksum in rows:
                    intact = (isinstance(size, int) and isinstance(vector, bytes) and len(vector) == 4 * size
                              and checksum == _checksum(key, size, vector))
                    if not intact or (dim is not None and size != dim):
                        why = "failed its checksum (key, size and vector)" if not intact else (
                            f"holds {size} values where the model gives {dim}")
                        self._warn_once(f"{self.path}: corrupt embedding cache: a row {why}; recomputing such rows "
                                        "(delete the file to start afresh)")
                        continue
                    found[bytes(key)] = np.frombuffer(vector, dtype=np.float32).copy()
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put(self, items: Iterable[tuple[bytes, np.ndarray]]) -> None:
        if self._db is None:
            return
        rows = []
        for key, vector in items:
            data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            rows.append((key, len(data) // 4, data, _checksum(key, len(data) // 4, data)))
        try:
            with self._lock:
                if self._db is None:
                    return
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self._disable(exc)

    def _disable(self, exc: Exception) -> None:
        self._warn_once(f"{self.path}: embedding cache failed ({exc}); computing the rest without it")
        self.close()



def open_sqlite(path: Path, schema: str, table: str, what: str, otherwise: str) -> sqlite3.Connection | None:
    """A cache database (WAL: readers never wait for a writer) with `schema`'s table; an
    unreadable file is set aside with one warning and a new one started; None (with a warning
    saying `otherwise`) when the folder cannot hold one."""
    for attempt in range(2):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(schema)
            db.execute(f"SELECT count(*) FROM {table} LIMIT 1").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            if attempt:
                break
            aside = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
            warn(f"{path}: {what} unreadable ({exc}); set aside as {aside.name}, starting a new one")
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{path}{suffix}")
                if src.exists():
                    src.replace(Path(f"{aside}{suffix}"))
        except OSError as exc:
            warn(f"{path}: {what} not available ({exc}); {otherwise}")
            break
    return None

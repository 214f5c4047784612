"""Embeddings of a set of photos at one distance (or enrolled), for every backend: from the
embedding cache where it has them, from the executor for the rest.

Photos go a chunk at a time: their crops are read back from the crop cache and simulated
while the previous chunk's inference runs (a one-ahead thread: OpenCV and NumPy release the
GIL), and only the probes some backend still needs are simulated at all. The caller may name
its next call (`then`): that call's first chunk is prepared during this call's last one, so a
set that fits in one chunk overlaps too.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import numpy as np

from facequant.backends.base import Backend
from facequant.sweep.embedding_cache import EmbeddingCache
from facequant.sweep.executors import EmbedJob, Executor
from facequant.sweep.probes import ProbeSet, probe_id


@dataclass
class _Chunk:
    rows: np.ndarray
    ids: list[str]
    keys: dict[str, list[bytes] | None]  # per backend: cache keys (None: not cacheable)
    found: dict[str, dict[bytes, np.ndarray]]
    missing: dict[str, np.ndarray]  # per backend: positions in `rows` still to compute
    crops: dict[int, np.ndarray]  # position -> crop, for the positions some model backend needs


#: An embed call: photo rows, distance (None: enrolment), backend names.
Call = tuple[np.ndarray, float | None, list[str]]


class Embedder:
    def __init__(self, ps: ProbeSet, backends: dict[str, Backend], executor: Executor, cache: EmbeddingCache) -> None:
        self.ps = ps
        self.backends = backends
        self.executor = executor
        self.cache = cache
        self.computed = 0  # embeddings computed (not read from the cache)
        self._backend_keys = {name: (b.cache_key() if ps.pipeline.settings_key is not None else None)
                              for name, b in backends.items()}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facequant-probes")
        # the next call's first chunk, prepared ahead: (its identity, the future)
        self._pending: tuple[tuple[object, ...], Future[_Chunk]] | None = None

    def close(self) -> None:
        self._pending = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, rows: np.ndarray, distance: float | None, names: list[str]) -> Future[_Chunk]:
        """The chunk's preparation: the one prepared ahead when it is this one, else a new one."""
        key = (distance, tuple(rows.tolist()), tuple(names))
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == key:
            return pending[1]
        return self._pool.submit(self._prepare, rows, distance, names)

    def _prefetch(self, then: Call | None) -> None:
        if then is None:
            return
        rows, distance, names = then
        first = next(iter(self.ps.chunks(rows)), None)
        if first is not None:
            key = (distance, tuple(first.tolist()), tuple(names))
            self._pending = (key, self._pool.submit(self._prepare, first, distance, names))

    def embed(self, rows: np.ndarray, distance: float | None, names: list[str], then: Call | None = None
              ) -> dict[str, np.ndarray]:
        """Raw float32 embeddings, (len(rows), D) per backend in `names`, rows in order.
        `then`: the next call, whose first chunk is prepared while this call's last one runs."""
        out: dict[str, np.ndarray] = {}
        total = len(rows)

        def jobs() -> Iterator[EmbedJob]:
            chunks = iter(self.ps.chunks(rows))
            position = 0
            ahead: Future[_Chunk] | None = None
            first = next(chunks, None)
            if first is not None:
                ahead = self._submit(first, distance, names)
            else:
                self._prefetch(then)
            while ahead is not None:
                chunk = ahead.result()
                nxt = next(chunks, None)
                if nxt is not None:
                    ahead = self._pool.submit(self._prepare, nxt, distance, names)
                else:
                    ahead = None
                    self._prefetch(then)
                self._take_found(chunk, position, total, out)
                for name in names:
                    todo = chunk.missing[name]
                    if len(todo):
                        model = self.backends[name].model_path is not None
                        crops = np.stack([chunk.crops[int(i)] for i in todo]) if model else None
                        yield EmbedJob(name, [chunk.ids[int(i)] for i in todo], crops,
                                       tag=(position, chunk, todo))
                position += len(chunk.rows)

        for job, raw in self.executor.map(jobs()):
            position, chunk, todo = cast("tuple[int, _Chunk, np.ndarray]", job.tag)
            target = self._output(out, job.backend, total, raw.shape[1])
            target[position + todo] = raw
            self.computed += len(todo)
            keys = chunk.keys[job.backend]
            if keys is not None:
                self.cache.put((keys[int(i)], raw[k]) for k, i in enumerate(todo))
        return out

    @staticmethod
    def _output(out: dict[str, np.ndarray], name: str, n: int, dim: int) -> np.ndarray:
        if name not in out:
            out[name] = np.zeros((n, dim), np.float32)
        return out[name]

    def _take_found(self, chunk: _Chunk, position: int, total: int, out: dict[str, np.ndarray]) -> None:
        """Copy the chunk's cached embeddings into the outputs."""
        for name, vectors in chunk.found.items():
            keys = chunk.keys[name]
            if keys is None or not vectors:
                continue
            dim = len(next(iter(vectors.values())))
            target = self._output(out, name, total, dim)
            for i, key in enumerate(keys):
                if key in vectors:
                    target[position + i] = vectors[key]

    def _prepare(self, rows: np.ndarray, distance: float | None, names: list[str]) -> _Chunk:
        ids = [probe_id(self.ps.images[r].key, distance) for r in rows.tolist()]
        crop_keys = [self.ps.crop_key(r, distance) for r in rows.tolist()]
        keys: dict[str, list[bytes] | None] = {}
        found: dict[str, dict[bytes, np.ndarray]] = {}
        missing: dict[str, np.ndarray] = {}
        need_crops: set[int] = set()
        for name in names:
            backend_key = self._backend_keys[name]
            if backend_key is None:
                keys[name], found[name] = None, {}
                missing[name] = np.arange(len(rows))
            else:
                cache_keys = [EmbeddingCache.key(backend_key, k) for k in crop_keys]
                keys[name], found[name] = cache_keys, self.cache.get(cache_keys, self.ps.spec.embedding_dim)
                missing[name] = np.array([i for i, k in enumerate(cache_keys) if k not in found[name]], np.int64)
            if self.backends[name].model_path is not None:
                need_crops.update(missing[name].tolist())
        todo = np.array(sorted(need_crops), np.int64)
        crops: dict[int, np.ndarray] = {}
        if len(todo):
            made = (self.ps.enrol_crops(rows[todo]) if distance is None
                    else self.ps.distance_crops(rows[todo], distance))
            crops = {int(i): c for i, c in zip(todo.tolist(), made, strict=True)}
        return _Chunk(rows, ids, keys, found, missing, crops)

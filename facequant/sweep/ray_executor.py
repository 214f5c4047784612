"""Embeddings computed on a Ray cluster (`--executor ray [--ray-address ADDRESS]`).

Each model backend's file goes into Ray's object store once (ray.put); one actor per CPU slot
loads every model from there and keeps its ONNX Runtime sessions, and Ray's ActorPool hands
the jobs (a backend x a chunk of probe crops) to whichever actor is free. The driver keeps
what only it has: the crop cache and simulation (crops travel at the model's input size), the
embedding cache, and device (external) backends, which read files on this machine.

The jobs are the local executor's, cut the same way and run with the same batch size, so
the embeddings are the same; each actor runs ONNX Runtime single-threaded, which on a CPU
gives the same numbers as the local multi-threaded run (tests/test_ray.py compares sweep.csv).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray
from ray.util import ActorPool

from facequant.backends.base import Backend
from facequant.backends.runtime import OrtBackend
from facequant.errors import FacequantError
from facequant.sweep.executors import EmbedJob, Executor, LocalExecutor

#: Jobs in flight per actor: enough to keep each busy while the driver prepares the next chunk,
#: few enough that crops waiting in the object store stay a handful of chunks.
_IN_FLIGHT_PER_ACTOR = 2


@ray.remote(num_cpus=1)
class _EmbedActor:
    """Holds one ONNX Runtime session per backend, loaded from the object store."""

    def __init__(self, models: dict[str, ray.ObjectRef]) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="facequant-ray-")
        self._backends: dict[str, OrtBackend] = {}
        for name, ref in models.items():  # refs nested in a dict are not resolved by Ray: get them here
            data, spec, batch = ray.get(ref)
            path = Path(self._folder.name) / f"{len(self._backends)}.onnx"
            path.write_bytes(data)
            self._backends[name] = OrtBackend(name, path, spec, batch, threads=1)

    def embed(self, name: str, crops: np.ndarray, ids: list[str]) -> np.ndarray:
        return np.asarray(self._backends[name].embed_probes(crops, ids), dtype=np.float32)


#: Set to 1 to see Ray's own log lines (its core's connection warnings, its loggers); by default
#: they are kept out of facequant's output, which says in one line what went wrong.
RAY_LOGS_ENV = "FACEQUANT_RAY_LOGS"
#: Joins a cluster and leaves it: run in a child process, so a cluster that never answers costs
#: the time-out and nothing else (Ray's own retries run for many minutes, and a join stuck in
#: this process could not be abandoned).
_PROBE = ("import sys, ray; ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, "
          "configure_logging=False); ray.shutdown()")


def _ray_logs_wanted() -> bool:
    return bool(os.environ.get(RAY_LOGS_ENV))


def connect(address: str | None, timeout_s: float) -> None:
    """Join the Ray cluster at `address` (None or 'local': start a local instance), once per
    process. A cluster address is first tried from a child process, killed at timeout_s; a
    failure is one FacequantError line naming --ray-address and Ray's last word."""
    if ray.is_initialized():
        return
    shown = address or "(local)"
    if address not in (None, "local"):
        try:
            probe = subprocess.run([sys.executable, "-c", _PROBE, address], timeout=timeout_s, text=True,
                                   stdout=subprocess.DEVNULL, stderr=None if _ray_logs_wanted() else subprocess.PIPE)
        except subprocess.TimeoutExpired:
            raise FacequantError(f"--ray-address {shown}: no Ray cluster answered within {timeout_s:g} s (--ray-timeout; "
                                 f"{RAY_LOGS_ENV}=1 shows Ray's own log)") from None
        if probe.returncode != 0:
            raise FacequantError(f"--ray-address {shown}: cannot join Ray ({_last_word(probe.stderr or '')})")
    try:
        with _ray_output_hidden():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FacequantError(f"--ray-address {shown}: cannot start or join Ray ({_last_word(str(exc))})") from exc


def _last_word(text: str) -> str:
    """The last line of Ray's output that says something, cut short (its logs run long)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith((" ", "\t"))]
    word = lines[-1] if lines else "no message"
    return word if len(word) <= 200 else word[:200] + "..."


@contextmanager
def _ray_output_hidden() -> Iterator[None]:
    """Ray's core writes its warnings straight to file descriptor 2: pointed at /dev/null
    while Ray starts, unless FACEQUANT_RAY_LOGS asks for them."""
    if _ray_logs_wanted():
        yield
        return
    logging.getLogger("ray").setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class RayExecutor(Executor):
    def __init__(self, backends: dict[str, Backend], address: str | None) -> None:
        connect(address, 30.0)  # joined before any work by check_executor: a no-op then
        remote = {n: b for n, b in backends.items() if isinstance(b, OrtBackend)}
        self._local = LocalExecutor({n: b for n, b in backends.items() if n not in remote})
        models = {n: ray.put((b.model_path.read_bytes(), b.spec, b.batch_size)) for n, b in remote.items()}
        self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._actors = [_EmbedActor.remote(models) for _ in range(self._cpus)]  # type: ignore[attr-defined]  # ray.remote's class wrapper is untyped
        self._pool = ActorPool(self._actors)
        self._remote = set(remote)
        self._address = address

    def map(self, jobs: Iterable[EmbedJob]) -> Iterator[tuple[EmbedJob, np.ndarray]]:
        limit = _IN_FLIGHT_PER_ACTOR * len(self._actors)
        pending: dict[int, EmbedJob] = {}
        submitted = 0
        for job in jobs:
            if job.backend not in self._remote:
                yield from self._local.map([job])
                continue
            while len(pending) >= limit:  # backpressure: collect a result before submitting more
                yield self._collect(pending)
            self._pool.submit(lambda actor, j: actor.embed.remote(j.backend, j.crops, j.ids), job)
            pending[submitted] = job
            submitted += 1
        while pending:
            yield self._collect(pending)

    def _collect(self, pending: dict[int, EmbedJob]) -> tuple[EmbedJob, np.ndarray]:
        # ActorPool returns results in submission order: the oldest pending job is this one.
        raw = self._pool.get_next()
        first = min(pending)
        return pending.pop(first), raw

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []

    def describe(self) -> dict[str, object]:
        return {"executor": "ray", "ray_address": self._address or "local", "actors": self._cpus,
                "ray": ray.__version__}

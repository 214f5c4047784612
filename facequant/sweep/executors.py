"""Where embeddings are computed: here (LocalExecutor), or on a Ray cluster
(facequant.sweep.ray_executor.RayExecutor, loaded only when asked for).

The unit of work is an EmbedJob: one backend, one chunk of probe crops at one distance (or the
enrolment). Both executors receive the same jobs, cut the same way, and run the same model
bytes with the same batch size, so their embeddings are identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from facequant.backends.base import Backend


@dataclass
class EmbedJob:
    backend: str
    ids: list[str]  # probe ids (export-probes' ids): what a device backend looks up
    crops: np.ndarray | None  # (N, H, W, 3) uint8 at the model input size; None for a device backend
    tag: object = None  # the caller's bookkeeping (which rows of which output)


class Executor(ABC):
    @abstractmethod
    def map(self, jobs: Iterable[EmbedJob]) -> Iterator[tuple[EmbedJob, np.ndarray]]:
        """Each job with its raw (N, D) float32 embeddings, in any order; `jobs` is consumed
        lazily, so a caller may prepare crops as they are needed."""

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release workers."""

    def describe(self) -> dict[str, object]:
        return {"executor": "local"}


class LocalExecutor(Executor):
    """In this process, one job after another (ONNX Runtime uses every core for each)."""

    def __init__(self, backends: dict[str, Backend]) -> None:
        self.backends = backends

    def map(self, jobs: Iterable[EmbedJob]) -> Iterator[tuple[EmbedJob, np.ndarray]]:
        for job in jobs:
            crops = job.crops if job.crops is not None else np.zeros((0, 1, 1, 3), np.uint8)
            yield job, np.asarray(self.backends[job.backend].embed_probes(crops, job.ids), dtype=np.float32)

"""The photos' aligned crops as a sweep reads them: held in memory when every crop of the run
fits in the memory budget, read back from the crop cache otherwise.

A sweep reads each photo's 448-px crop once per distance. Reading it through the face pipeline
costs the photo's bytes, their SHA-256 (to find the cache entry) and the entry's SHA-256 (its
integrity) every time: about 1.2 ms of the 2 ms a probe costs before inference. Here an entry's
integrity is checked once per run, when it is first read (face extraction); the entry's file
identity (device, inode, size, modification and change times) is noted then, and a later read
of the same unchanged file skips the digest. A file replaced or rewritten since (any write
moves its change time, which no one can set back) is read through the pipeline again, digest
and all, so a tampered entry is still caught; an entry changed in the 2 s before it was noted
is not noted (a rewrite within one clock tick could keep its times), so it is always checked.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from facequant.faces.pipeline import AlignedFace, FacePipeline, unpack_entry

#: The default budget's share of the memory available when the run starts.
DEFAULT_SHARE = 0.25
#: ... and its ceiling, MiB: past it a run streams. Held crops add their size to the run's peak
#: memory, and once their digest is checked only once per run streaming them costs no
#: measurable throughput (benchmarks/throughput.py and scale.py): so the default holds small
#: sets only, where the crops are lost in the run's own memory.
DEFAULT_CEILING_MB = 64
_MIB = 1 << 20
#: An entry changed this recently when checked is checked again at every read (ns).
_RACY_NS = 2_000_000_000

FileIdentity = tuple[int, int, int, int, int]


def available_memory_mb() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), MiB; None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_budget_mb(available_mb: int | None = None) -> int:
    """The budget when none is given: a quarter of the available memory, at most
    DEFAULT_CEILING_MB (0, streaming, when the available memory is unknown)."""
    available = available_memory_mb() if available_mb is None else available_mb
    if available is None:
        return 0
    return int(min(DEFAULT_CEILING_MB, max(0, available) * DEFAULT_SHARE))


def fits(n_crops: int, crop_bytes: int, budget_mb: int) -> bool:
    """Whether n_crops crops of crop_bytes each fit in budget_mb MiB."""
    return n_crops * crop_bytes <= budget_mb * _MIB


def _identity(file: Path) -> FileIdentity | None:
    try:
        st = os.stat(file)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _settled(ident: FileIdentity) -> bool:
    """Unchanged for long enough that a later rewrite must move its times."""
    return time.time_ns() - max(ident[3], ident[4]) >= _RACY_NS


class CropStore:
    """The crops of a sweep's photos, by photo path. Once `decide(n)` has found that the run's
    n crops fit in the budget (`held`), each crop is kept in memory once read; otherwise each
    read goes back to the crop cache. Thread-safe: the chunk-preparing thread reads while the
    main thread may."""

    def __init__(self, pipeline: FacePipeline, budget_mb: int) -> None:
        self.pipeline = pipeline
        self.budget_mb = int(budget_mb)
        self.crop_bytes = pipeline.crop_size * pipeline.crop_size * 3
        self.held = False
        self._crops: dict[str, np.ndarray] = {}
        self._entries: dict[str, tuple[Path, FileIdentity]] = {}
        self._lock = threading.Lock()
        self.verified_reads = 0  # reads that checked an entry's digest (or computed the crop)
        self.fast_reads = 0  # reads of an entry already checked this run

    def decide(self, n_crops: int) -> bool:
        """Hold the crops in memory from now on when n_crops of them fit in the budget."""
        self.held = fits(n_crops, self.crop_bytes, self.budget_mb)
        return self.held

    def extract(self, path: Path) -> tuple[AlignedFace, str]:
        """The photo's face through the pipeline (the entry's first, checked read) and the
        photo's SHA-256, noting its cache entry so that later reads of the unchanged entry skip
        the checks."""
        name = str(path)
        face, photo_sha, entry = self.pipeline.extract_keyed(path)
        ident = _identity(entry) if entry is not None else None
        with self._lock:
            self.verified_reads += 1
            if entry is not None and ident is not None and _settled(ident):
                self._entries[name] = (entry, ident)
            else:
                self._entries.pop(name, None)
        return face, photo_sha

    def crop(self, path: Path) -> np.ndarray:
        """The photo's aligned crop (read-only when held: callers never write into it)."""
        name = str(path)
        held = self._crops.get(name)
        if held is not None:
            return held
        crop = self._read(path)
        if self.held:
            crop.flags.writeable = False
            with self._lock:
                crop = self._crops.setdefault(name, crop)
        return crop

    def _read(self, path: Path) -> np.ndarray:
        noted = self._entries.get(str(path))
        if noted is not None and _identity(noted[0]) == noted[1]:
            try:
                head, crop = unpack_entry(noted[0])
                if str(head.get("key")) == noted[0].stem and crop.shape == (self.pipeline.crop_size,) * 2 + (3,):
                    with self._lock:
                        self.fast_reads += 1
                    return crop
            except (OSError, ValueError, KeyError, TypeError):
                pass  # the pipeline's read below says what is wrong with it and rebuilds it
        return self.extract(path)[0].crop

    def describe(self) -> dict[str, object]:
        """What run.json records: the budget, whether the crops were held, and the reads."""
        return {"crop_memory_mb": self.budget_mb, "crops_held": self.held, "crop_bytes": self.crop_bytes,
                "crop_reads_checked": self.verified_reads, "crop_reads_unchanged": self.fast_reads}

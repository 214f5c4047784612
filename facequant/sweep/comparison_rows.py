"""Per-comparison rows, only when asked (--save-comparisons): every (probe, gallery) score of
every backend and distance, streamed block by block into a Parquet file through pyarrow, so
the N^2 rows are never held at once. Written to a temporary file first; the results writer
moves it into the results directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from facequant import settings
from facequant.processes import process_alive

COMPARISONS_PARQUET = "comparisons.parquet"


def remove_stale(folder: Path) -> list[Path]:
    """Comparison files left by killed runs (their pid, in the name, is gone): they can be
    N^2 rows large, so the next run clears them."""
    removed = []
    for path in folder.glob("comparisons-*-*.parquet"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class ComparisonRows:
    """A Parquet writer of comparison rows; `sink(backend, distance, face_px, prenorm)` gives the
    per-block callback facequant.evaluate.scoring takes."""

    def __init__(self, keys: list[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa, self._keys = pa, np.asarray(keys, dtype=object)
        folder = settings.cache_dir() / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale(folder)
        fd, name = tempfile.mkstemp(prefix=f"comparisons-{os.getpid()}-", suffix=".parquet", dir=folder)
        self.path = Path(name)
        self.rows = 0
        schema = pa.schema([("backend", pa.dictionary(pa.int32(), pa.string())), ("distance_m", pa.float64()),
                            ("face_px", pa.float64()), ("probe", pa.string()), ("gallery", pa.string()),
                            ("genuine", pa.bool_()), ("cosine", pa.float64()), ("probe_prenorm", pa.float64())])
        self._file = open(fd, "wb")  # noqa: SIM115 - a handle: pyarrow cannot open undecodable paths
        self._writer = pq.ParquetWriter(self._file, schema, compression="zstd")
        self._schema = schema

    def sink(self, backend: str, distance: float, face_px: float, prenorm_by_row: np.ndarray):  # noqa: ANN201
        """The callback for one cell: prenorm_by_row[photo index] is the probe's pre-norm."""
        pa = self._pa

        def write(probe: np.ndarray, gallery: np.ndarray, cosine: np.ndarray, genuine: np.ndarray) -> None:
            n = len(probe)
            if not n:
                return
            table = pa.Table.from_arrays([
                pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([backend])),
                pa.array(np.full(n, distance)), pa.array(np.full(n, face_px)),
                pa.array(self._keys[probe].tolist(), pa.string()), pa.array(self._keys[gallery].tolist(), pa.string()),
                pa.array(genuine), pa.array(cosine), pa.array(prenorm_by_row[probe].astype(np.float64)),
            ], schema=self._schema)
            self._writer.write_table(table)
            self.rows += n

        return write

    def close(self) -> Path:
        self._writer.close()
        self._file.close()
        return self.path

    def discard(self) -> None:
        try:
            self._writer.close()
            self._file.close()
        finally:
            self.path.unlink(missing_ok=True)

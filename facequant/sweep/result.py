"""What a sweep returns: its tables, run.json's record, and whether it was cancelled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from facequant.evaluate import identification
from facequant.models.spec import ModelSpec
from facequant.simulate.camera import CameraProfile
from facequant.sweep.config import SweepConfig

#: Columns of the genuine comparison rows (genuine.parquet; cliff's pre-norm fit reads them).
GENUINE_COLUMNS = ("backend", "distance_m", "face_px", "probe", "gallery", "genuine", "cosine", "probe_prenorm")


@dataclass
class SweepResult:
    config: SweepConfig
    model_name: str
    spec: ModelSpec
    camera: CameraProfile
    distances_m: tuple[float, ...]
    threshold: float
    probes: pd.DataFrame  # one row per backend x distance x photo
    genuine: pd.DataFrame  # one row per genuine comparison (GENUINE_COLUMNS)
    sweep: pd.DataFrame  # verification: one row per backend x distance
    cliff: pd.DataFrame
    run: dict[str, object]
    cost: pd.DataFrame | None = None
    identification: pd.DataFrame | None = None  # one row per backend x distance, when the data allow
    comparisons_file: Path | None = None  # every comparison, with --save-comparisons (a temporary file)

    @property
    def partial(self) -> bool:
        """Cancelled: the tables cover the distances done (run.json's distances_planned)."""
        return bool(self.run.get("partial"))

    @property
    def rates(self) -> pd.DataFrame:
        """The table the run's protocol reads: the sweep, or the sweep with identification's rates."""
        if self.config.protocol == "identification" and self.identification is not None:
            return identification.as_rates_view(self.sweep, self.identification)
        return self.sweep

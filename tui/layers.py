"""Layer diagnostics for the results screen: the layers.csv / summary.csv that
`facequant diagnose` (facequant.analysis.diagnose) writes, read as they are.

facequant.analysis.diagnose writes one row per backend x distance x layer (backend, distance_m,
layer, op_type, depth, snr_db, psnr_db, ...; LAYER_COLUMNS there) and a summary per backend x
distance. It was written alongside the TUI, so columns are found by name and a file with fewer
or other columns is still shown: the view picks the ones it knows and keeps the rest out of an
80-column table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

LAYERS_CSV = "layers.csv"
SUMMARY_CSV = "summary.csv"
#: Where, relative to a results directory, a diagnose output directory is looked for.
CANDIDATE_DIRS: tuple[str, ...] = ("diagnostics", "diagnose", ".")

#: Columns shown, in this order, when present (the rest stay in the CSV).
LAYER_VIEW_COLUMNS = ("backend", "distance_m", "layer", "op_type", "depth", "snr_db", "psnr_db", "act_bin_utilization")
SUMMARY_VIEW_COLUMNS = ("backend", "distance_m", "face_px", "min_snr_db", "min_snr_layer", "first_below_layer",
                        "output_snr_db")

_DEPTH_NAMES = ("depth", "layer_index", "index", "order", "position", "idx", "node_index")
_NAME_NAMES = ("layer", "node", "name", "node_name", "op_name", "tensor")
_BACKEND_NAMES = ("backend", "recipe")


@dataclass
class Diagnostics:
    path: Path
    layers: pd.DataFrame
    summary: pd.DataFrame | None

    @property
    def snr_column(self) -> str | None:
        cols = [c for c in self.layers.columns if "snr" in str(c).lower()]
        preferred = [c for c in cols if str(c).lower() in ("snr_db", "snr")]
        return str((preferred or cols)[0]) if preferred or cols else None

    @property
    def depth_column(self) -> str | None:
        return _first(self.layers, _DEPTH_NAMES)

    @property
    def name_column(self) -> str | None:
        return _first(self.layers, _NAME_NAMES)

    @property
    def backend_column(self) -> str | None:
        return _first(self.layers, _BACKEND_NAMES)

    @property
    def distance_column(self) -> str | None:
        return _first(self.layers, ("distance_m", "distance"))

    def _far_rows(self) -> tuple[pd.DataFrame, str]:
        """The rows at the farthest distance when the file has one row per layer x distance
        (the damage that matters shows there), else all rows."""
        col = self.distance_column
        if col is None:
            return self.layers, ""
        d = pd.to_numeric(self.layers[col], errors="coerce")
        far = d.max()
        return self.layers.loc[d == far], f" at {far:g} m"

    def worst(self, n: int = 10) -> tuple[pd.DataFrame, str]:
        """The n layers with the lowest SNR (the ones that lose the most signal), as written,
        and where ("" or " at D m")."""
        rows, where = self._far_rows()
        snr = self.snr_column
        if snr is None:
            return _view(rows.head(n), LAYER_VIEW_COLUMNS), where
        values = pd.to_numeric(rows[snr], errors="coerce")
        return _view(rows.loc[values.sort_values(kind="stable").index].head(n), LAYER_VIEW_COLUMNS), where

    def summary_view(self) -> pd.DataFrame | None:
        return None if self.summary is None else _view(self.summary, SUMMARY_VIEW_COLUMNS)

    def snr_by_depth(self, max_series: int = 6) -> dict[str, tuple[list[float], list[float]]]:
        """(depth, SNR) points in depth order per backend and distance (closest and farthest
        only when there are many); depth is the row order when the file has none."""
        snr = self.snr_column
        if snr is None:
            return {}
        frame = self.layers.copy()
        depth = self.depth_column
        frame["_depth"] = pd.to_numeric(frame[depth], errors="coerce") if depth else range(len(frame))
        frame["_snr"] = pd.to_numeric(frame[snr], errors="coerce")
        frame = frame.dropna(subset=["_depth", "_snr"])
        keys = [c for c in (self.backend_column, self.distance_column) if c]
        if not keys:
            return {"SNR": _series(frame)}
        dist = self.distance_column
        groups = list(frame.groupby(keys, sort=True))
        if len(groups) > max_series and dist:
            d = pd.to_numeric(frame[dist], errors="coerce")
            frame = frame.loc[(d == d.min()) | (d == d.max())]
            groups = list(frame.groupby(keys, sort=True))
        out: dict[str, tuple[list[float], list[float]]] = {}
        for key, rows in groups[:max_series]:
            parts = key if isinstance(key, tuple) else (key,)
            label = " ".join(f"{p:g} m" if isinstance(p, float) else str(p) for p in parts)
            out[label] = _series(rows)
        return out


def _view(frame: pd.DataFrame, preferred: tuple[str, ...]) -> pd.DataFrame:
    known = [c for c in preferred if c in frame.columns]
    return frame[known] if len(known) >= 2 else frame


def _series(rows: pd.DataFrame) -> tuple[list[float], list[float]]:
    rows = rows.sort_values("_depth")
    return rows["_depth"].astype(float).tolist(), rows["_snr"].astype(float).tolist()


def _first(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    lower = {str(c).lower(): str(c) for c in frame.columns}
    return next((lower[n] for n in names if n in lower), None)


def is_diagnostics_dir(path: Path) -> bool:
    return (path / LAYERS_CSV).is_file()


def find_diagnostics(run_dir: Path | None, explicit: Path | None = None) -> Path | None:
    """The directory holding layers.csv: the one given (--diagnostics), else <run>/diagnostics
    (facequant diagnose --out <run>/diagnostics), else the opened directory itself when it is
    a diagnose output."""
    candidates = [explicit] if explicit else []
    if run_dir is not None:
        candidates += [run_dir / name for name in CANDIDATE_DIRS]
    return next((c for c in candidates if c is not None and (c / LAYERS_CSV).is_file()), None)


def load_diagnostics(run_dir: Path | None, explicit: Path | None = None) -> Diagnostics | None:
    path = find_diagnostics(run_dir, explicit)
    if path is None:
        return None
    summary = pd.read_csv(path / SUMMARY_CSV) if (path / SUMMARY_CSV).is_file() else None
    return Diagnostics(path=path, layers=pd.read_csv(path / LAYERS_CSV), summary=summary)

"""Any dataset by the name users type: a folder of identity folders, or LFW."""

from __future__ import annotations

from pathlib import Path

from facequant import settings
from facequant.datasets.folders import Dataset, load_identity_folders
from facequant.datasets.lfw import load_lfw


def load_dataset(spec: str | Path, pairs_csv: Path | None = None, cache_root: Path | None = None) -> Dataset:
    """A folder of identity folders, or 'lfw' / 'lfw-pairs' (facequant.datasets.lfw)."""
    if str(spec).startswith("lfw") and not Path(spec).exists():
        return load_lfw(str(spec), cache_root or settings.cache_dir() / "datasets" / "sklearn", pairs_csv)
    return load_identity_folders(Path(spec), pairs_csv)

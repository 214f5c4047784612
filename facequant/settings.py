"""Where facequant finds shared assets and keeps its cache: one setting each."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the shared assets folder (models, photos); default ../shared.
SHARED_ENV = "FACEQUANT_SHARED"
#: Environment variable naming the cache folder (normalized models, quantized models, crops).
CACHE_ENV = "FACEQUANT_CACHE"

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared assets folder: $FACEQUANT_SHARED, else ../shared beside the project root."""
    env = os.environ.get(SHARED_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT / ".." / "shared").resolve()


def default_model_path() -> Path:
    return shared_dir() / "models" / "faceplugin-fr" / "fr_feature.onnx"


def default_detector_path() -> Path:
    return shared_dir() / "models" / "faceplugin-fr" / "fr_detect.onnx"


def default_landmark_path() -> Path:
    return shared_dir() / "models" / "faceplugin-fr" / "fr_landmark.onnx"


def default_dataset_path() -> Path:
    return shared_dir() / "datasets" / "celebs13"


def configs_dir() -> Path:
    return PROJECT_ROOT / "configs"


def cache_dir() -> Path:
    """$FACEQUANT_CACHE, else ~/.cache/facequant; created on first use."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "facequant"
    root.mkdir(parents=True, exist_ok=True)
    return root


def ort_threads() -> int:
    """Intra-op threads for ONNX Runtime: all cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)

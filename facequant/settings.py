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
    """$FACEQUANT_CACHE, else ~/.cache/facequant; created on first use, and checked then: a
    folder one can write in (a file, /proc or /sys is a one-line error naming the setting)."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "facequant"
    _check_cache(root, probe=str(root) not in _usable_caches)
    _usable_caches.add(str(root))
    return root


_usable_caches: set[str] = set()


def _check_cache(root: Path, probe: bool) -> None:
    """Create `root` (again if it went) and, the first time, try a folder inside it for real
    (permissions alone do not tell for root, /proc or a read-only file system)."""
    import tempfile

    from facequant.errors import FacequantError

    try:
        root.mkdir(parents=True, exist_ok=True)
        if probe:
            os.rmdir(tempfile.mkdtemp(prefix=".facequant-probe-", dir=root))
    except OSError as exc:
        why = "it is a file, not a folder" if root.is_file() else exc.strerror or type(exc).__name__
        raise FacequantError(f"{CACHE_ENV}={root}: cannot keep facequant's cache there ({why}); "
                             f"set {CACHE_ENV} to a folder you can write") from exc


def ort_threads() -> int:
    """Intra-op threads for ONNX Runtime: all cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)

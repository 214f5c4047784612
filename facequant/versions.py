"""The library versions every run.json records: what produced its numbers."""

from __future__ import annotations

import platform

import numpy as np
import pandas as pd

from facequant import __version__


def versions() -> dict[str, str]:
    import cv2
    import onnx
    import onnxruntime
    import sklearn

    out = {"facequant": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "pandas": pd.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
           "scikit-learn": sklearn.__version__, "opencv": cv2.__version__, "platform": platform.platform()}
    from importlib.metadata import version

    for package in ("insightface", "openvino", "nncf"):  # without importing them: they are slow to import
        try:
            out[package] = version(package)
        except Exception:  # noqa: BLE001 - a version we cannot read (not installed) is just not recorded
            pass
    return out

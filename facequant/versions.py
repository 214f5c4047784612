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
    try:
        from importlib.metadata import version

        out["insightface"] = version("insightface")  # without importing it: it is slow to import
    except Exception:  # noqa: BLE001 - a version we cannot read is just not recorded
        pass
    return out

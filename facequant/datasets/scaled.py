"""A larger identity-folder set built from a small one, for scale tests and benchmarks: every
photo copied into new identity folders (`<person>~c<k>`), each copy perturbed a little (a
mirror, a small crop, a brightness step, re-encoded as JPEG at another quality) so no two files
are the same bytes and no two crops are the same pixels.

The copies of a person are labelled as other people, so their scores say nothing about a
model's accuracy (they are impostors that look alike): this is for time and memory, not
for match rates. Nothing is written into the source folder.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facequant.datasets.folders import load_identity_folders
from facequant.errors import FacequantError
from facequant.faces.images import read_image


def _perturb(image_rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    h, w = image_rgb.shape[:2]
    out = image_rgb[:, ::-1] if rng.random() < 0.5 else image_rgb
    top, left = (int(rng.integers(0, max(1, int(0.03 * s)) + 1)) for s in (h, w))
    bottom, right = (int(rng.integers(0, max(1, int(0.03 * s)) + 1)) for s in (h, w))
    out = out[top:h - bottom, left:w - right]
    out = np.clip(out.astype(np.int16) + int(rng.integers(-6, 7)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out), int(rng.integers(85, 97))


def build_scaled_set(source: Path, dest: Path, photos: int, seed: int = 0) -> Path:
    """dest/<identity>[~c<k>]/<photo>.jpg with at least `photos` photos: the source's photos as
    they are, then perturbed copies, whole copies of the source at a time. Returns dest."""
    dataset = load_identity_folders(Path(source))
    if Path(dest).exists() and any(Path(dest).iterdir()):
        raise FacequantError(f"{dest}: exists and is not empty; give a new folder")
    copies = max(1, -(-photos // len(dataset.images)))
    rng = np.random.default_rng(seed)
    for k in range(copies):
        for img in dataset.images:
            folder = Path(dest) / (img.identity if k == 0 else f"{img.identity}~c{k}")
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{Path(img.key).stem}.jpg"
            if k == 0 and img.path.suffix.lower() in (".jpg", ".jpeg"):
                target.write_bytes(img.path.read_bytes())
                continue
            picture, quality = _perturb(read_image(img.path), rng) if k else (read_image(img.path), 95)
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise FacequantError(f"{img.path}: cannot re-encode as JPEG")
            target.write_bytes(data.tobytes())
    return Path(dest)

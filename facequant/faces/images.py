"""Reading a photo safely: its size from the header before any pixel is decoded (a pixel cap),
every decoder error a one-line BadImageError naming the file, EXIF orientation applied."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from facequant.errors import BadImageError, FacequantError

#: Largest picture decoded (width x height): a 40-megapixel photo is already beyond any camera
#: a face pipeline sees; a file claiming more is refused from its header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000
#: Environment variable overriding MAX_IMAGE_PIXELS.
MAX_PIXELS_ENV = "FACEQUANT_MAX_IMAGE_PIXELS"

def _jpeg_truncated(data: bytes) -> bool:
    """True when JPEG data stops before its image ends.

    libjpeg (inside cv2.imdecode) only warns on a truncated file and returns a grey-filled
    picture, so it is checked here: a complete JPEG ends with the EOI marker (FFD9), maybe
    followed by padding. Files with other trailing bytes get a full Pillow decode to decide.
    """
    if not data.startswith(b"\xff\xd8"):
        return False
    if data.rstrip(b"\x00\r\n\xff ").endswith(b"\xff\xd9"):
        return False
    import io

    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone relaxed Pillow globally; trust the marker
        return True
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception:
        return True
    return False


def max_image_pixels() -> int:
    """The pixel cap: $FACEQUANT_MAX_IMAGE_PIXELS, else MAX_IMAGE_PIXELS."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise FacequantError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive whole number of pixels")
    return value


def _header_size(data: bytes, path: str | os.PathLike[str], cap: int) -> tuple[int, int]:
    """(width, height) as the file's header declares them, read without decoding any pixel
    (Pillow's lazy open), so a small file claiming a huge picture costs nothing."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError as exc:  # over Pillow's own (looser) cap too
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{declared.group(1)} pixels" if declared else "more pixels than Pillow allows"
        raise BadImageError(path, f"image too large: its header declares {size}, more than the cap of "
                                  f"{cap} ({MAX_PIXELS_ENV} raises it)") from None
    except Exception as exc:  # Pillow raises many types on hostile headers; all mean the same here
        raise BadImageError(path, f"cannot decode image (not a readable image: {type(exc).__name__})") from None


def check_image_size(data: bytes, path: str | os.PathLike[str]) -> None:
    """BadImageError unless the header declares a picture of 2x2 up to the pixel cap."""
    if not data:
        raise BadImageError(path, "cannot decode image (empty file)")
    cap = max_image_pixels()
    width, height = _header_size(data, path, cap)
    if width * height > cap:
        raise BadImageError(path, f"image too large: {width}x{height} pixels is more than the cap of {cap} "
                                  f"({MAX_PIXELS_ENV} raises it)")
    if width < 2 or height < 2:
        raise BadImageError(path, f"image too small to hold a face ({width}x{height} pixels)")


def decode_image(data: bytes, path: str | os.PathLike[str]) -> np.ndarray:
    """Decode image bytes to RGB uint8 (EXIF orientation applied), or raise BadImageError.
    The size is checked against the pixel cap before any pixel is decoded."""
    check_image_size(data, path)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except (cv2.error, MemoryError, ValueError, OverflowError) as exc:
        raise BadImageError(path, f"cannot decode image ({type(exc).__name__})") from None
    if bgr is None or bgr.ndim != 3 or bgr.shape[0] < 2 or bgr.shape[1] < 2:
        raise BadImageError(path, "cannot decode image (corrupt or not an image)")
    if _jpeg_truncated(data):
        raise BadImageError(path, "cannot decode image (truncated JPEG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    if not p.exists():
        raise BadImageError(path, "file not found")
    if not p.is_file():
        raise BadImageError(path, "not a regular file")
    try:
        # Bounded before reading: no image under the pixel cap needs more bytes than this.
        limit = max_image_pixels() * 8 + (16 << 20)
        if p.stat().st_size > limit:
            raise BadImageError(path, f"file too large for an image under the pixel cap ({p.stat().st_size} bytes)")
        # np.fromfile + imdecode rather than cv2.imread: works for any path the OS accepts.
        return np.fromfile(p, dtype=np.uint8).tobytes()
    except OSError as exc:
        raise BadImageError(path, f"cannot read file ({exc.strerror or exc})") from exc
    except MemoryError:
        raise BadImageError(path, "cannot read file (out of memory)") from None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as RGB uint8 (HxWx3), EXIF orientation applied; BadImageError otherwise."""
    return decode_image(read_bytes(path), path)



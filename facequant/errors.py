"""User-facing errors: one line, naming the file and the problem."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading


class FacequantError(Exception):
    """An input problem the user can fix; the CLI prints it as one line and exits 2."""


class BadImageError(FacequantError):
    """An image that cannot be read or holds no usable face."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class BadModelError(FacequantError):
    """A model file that cannot be loaded or is not an embedding model facequant can use."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class Cancelled(Exception):
    """A run stopped at the caller's request (a cancel event) before it had anything to keep.
    Not an input problem: a caller that cancels expects it."""


def check_cancel(cancel: threading.Event | None, stage: str) -> None:
    """Raise Cancelled when `cancel` (a threading.Event, or None) is set; `stage` says where."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(stage)

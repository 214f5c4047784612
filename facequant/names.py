"""One rule for file names in outputs: bytes that are not UTF-8 are shown as `\\xNN`.

On Linux a file name is bytes; Python hands undecodable ones over as lone surrogates
(os.fsdecode's surrogateescape), which no UTF-8 writer accepts. Image keys, identities and
every string written to a CSV or JSON go through `display`, so a photo named `caf\\xe9.jpg` in
Latin-1 reads `caf\\xe9.jpg` in run.json, probes.csv and manifest.csv alike. Everything else
in a name (spaces, quotes, commas, newlines, unicode) is kept: CSV quoting carries it.
"""

from __future__ import annotations

import codecs
import os
from pathlib import PurePath
from typing import Any

#: Codec error handler for writers (`to_csv(errors=ESCAPE)`): surrogates -> `\xNN`. Typed Any:
#: pandas takes any registered handler, pandas-stubs lists only the built-in names.
ESCAPE: Any = "facequant-escape"


def display(text: str | os.PathLike[str]) -> str:
    """`text` with each undecodable byte (a surrogate from os.fsdecode) written as `\\xNN`."""
    s = os.fspath(text)
    if isinstance(s, bytes):
        return s.decode("utf-8", "backslashreplace")
    return s if s.isascii() else s.encode("utf-8", ESCAPE).decode("utf-8")


def _escape(exc: UnicodeError) -> tuple[str, int]:
    # A lone surrogate U+DCxx stands for the raw byte xx; any other unencodable character is
    # shown by its code point as Python's backslashreplace would.
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    out = "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c.encode(
        "ascii", "backslashreplace").decode() for c in bad)
    return out, exc.end


codecs.register_error(ESCAPE, _escape)


def display_all(obj: object) -> object:
    """`display` applied to every string (and mapping key) inside lists, tuples and dicts."""
    if isinstance(obj, str | PurePath):
        return display(obj)
    if isinstance(obj, dict):
        return {display_all(k): display_all(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [display_all(v) for v in obj]
    return obj

"""How a recommendation's reasons write numbers: just enough decimals that a failure shows."""

from __future__ import annotations

import math
import re

#: Verification's words and identification's, for the same columns (TPIR reads as TAR, FPIR as FAR).
_IDENTIFICATION_WORDS = ((r"\bTAR\b", "TPIR"), (r"\bFAR\b", "FPIR"), (r"\bimpostors\b", "non-mated probes"))


def protocol_words(text: str, identification: bool) -> str:
    """text in identification's words when the run reads identification."""
    if identification:
        for word, said in _IDENTIFICATION_WORDS:
            text = re.sub(word, said, text)
    return text


def metres(d: float) -> str:
    return f"{d:.1f}" if abs(round(d, 1) - d) < 1e-9 else f"{d:.2f}"


def rate_vs(value: float, limit: float) -> tuple[str, str]:
    """value and value - limit with just enough decimals that a failure is visible: 0.986
    against 0.99 must not print as 0.99 < 0.99."""
    for nd in (2, 3, 4):
        if f"{value:.{nd}f}" != f"{limit:.{nd}f}" and round(value - limit, nd) != 0:
            return f"{value:.{nd}f}", f"{value - limit:+.{nd}f}"
    return f"{value:.5f}", f"{value - limit:+.5f}"


def significant_vs(value: float, limit: float) -> str:
    for n in (2, 3, 4):
        if f"{value:.{n}g}" != f"{limit:.{n}g}":
            return f"{value:.{n}g}"
    return f"{value:.6g}"


def megabytes(nbytes: float) -> str:
    return f"{nbytes / 1e6:.2f} MB" if math.isfinite(nbytes) else "? MB"

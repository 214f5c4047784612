"""Allowed ranges of facequant's numbers, and the check the core runs on them.

One place for every bound: the command line's converters (facequant.options) and the core
(SweepConfig, Degradation, CameraProfile, backends, search and diagnose settings) check the
same ranges, so an API caller gets the CLI's one-line FacequantError instead of garbage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from facequant.errors import FacequantError

#: The most a distance sweep can ask for: beyond a kilometre no camera sees a face.
MAX_DISTANCE_M = 1000.0
#: Points a 'START:STOP:N' distance range may hold.
MAX_DISTANCE_POINTS = 200
#: Calibration methods (--calib-method, study --methods).
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: numpy's legacy seeding (RandomState, used by some libraries we call) takes 32 bits.
MAX_SEED = 2**32 - 1


def _fmt(value: float | None) -> str:
    """A bound as people write it: 4294967295, not 4.29497e+09."""
    if value is not None and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if value is not None else ""


@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers; None = unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        low, high = _fmt(self.low), _fmt(self.high)
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {low}" if self.low is not None else "finite"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def problem(value: object, rng: Range, integer: bool, shown: str | None = None) -> str | None:
    """Why `value` is not an allowed number, or None when it is."""
    # bool is an int subclass: `seed: true` is a typo, not 1.
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (isinstance(value, int) or not integer) and rng.contains(float(value))  # type: ignore[arg-type]  # narrowed to int | float above
    if ok:
        return None
    return f"must be {'an integer' if integer else 'a number'} {rng}, got {shown or repr(value)}"


def require(what: str, value: object, rng: Range, integer: bool = False) -> None:
    """Raise FacequantError('<what>: must be ...') unless value is a number in rng (core checks)."""
    why = problem(value, rng, integer)
    if why:
        raise FacequantError(f"{what}: {why}")


#: The smallest rate (FAR, FPIR, a fraction) a run takes: resolving 1e-12 takes 3e12 impostor
#: comparisons, beyond any data set; smaller ones (5e-324) only overflow the arithmetic.
MIN_RATE = 1e-12
#: The closest a face can be: at 5 cm it no longer fits any camera's view.
MIN_DISTANCE_M = 0.05
#: The largest focal length in pixels (1e7: a 100k-pixel-wide frame behind a 0.6-degree lens).
MAX_FOCAL_PX = 1e7

#: Ranges the core checks again (SweepConfig, Degradation, backends, settings).
FAR_RANGE = Range(MIN_RATE, 1.0, high_open=True)
COSINE_RANGE = Range(-1.0, 1.0)
SHARE_RANGE = Range(0.0, 1.0, low_open=True)  # a share or a rate above zero: a target TAR, a metric's drop
SEED_RANGE = Range(0, MAX_SEED)
COUNT_RANGE = Range(1, 1_000_000)  # batch size, calibration size, candidates, probes
#: Adult inter-ocular distances lie within 50-75 mm; 40-90 leaves room for children and unusual
#: faces and refuses a unit slip (6.3 cm, 0.063 m).
IOD_RANGE = Range(40.0, 90.0)
BLUR_RANGE = Range(0.0, 100.0)  # Gaussian sigma in camera pixels, 0 = off
NOISE_RANGE = Range(0.0, 255.0)  # standard deviation in 8-bit levels, 0 = off
JPEG_RANGE = Range(0, 100)  # 0 = off, else the quality OpenCV's encoder takes
DISTANCE_RANGE = Range(MIN_DISTANCE_M, MAX_DISTANCE_M)
FACE_PX_RANGE = Range(1.0, 10_000.0)  # aligned face sizes in camera pixels
#: Extra border around the aligned face, as a fraction of the face (0: the ArcFace template's
#: tight crop; 1: the face fills half the crop's side). Looser than that is not a face crop.
FRACTION_RANGE = Range(0.0, 1.0)  # a fraction, both ends included (also --latency-tolerance)
CROP_MARGIN_RANGE = FRACTION_RANGE
#: Seconds to wait for a Ray cluster to answer (--ray-timeout): a healthy one joins in a few.
RAY_TIMEOUT_RANGE = Range(0.0, 3600.0, low_open=True)

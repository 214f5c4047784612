"""Where a TAR curve crosses a level: the reliable distance and the cliff distance, for one
curve or for thousands of bootstrap resamples at once (one row of ``tar`` per curve).

Both are read *between* grid points, TAR taken as linear in distance between two swept
distances, so that one match more or less moves a distance by a fraction of a step instead of
a whole step. A crossing beyond the farthest distance is +inf ("beyond the sweep"), never the
last distance dressed up as a measurement. Pure numpy, no Python loop over curves.
"""

from __future__ import annotations

import numpy as np

from facequant.errors import FacequantError


def _curves(distances: object, tar: object, level: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    t = np.atleast_2d(np.asarray(tar, dtype=np.float64))
    lv = np.broadcast_to(np.asarray(level, dtype=np.float64).reshape(-1), (t.shape[0],))
    if t.shape[1] != d.size:
        raise FacequantError(f"distances and tar must have the same length, got {d.size} and {t.shape[1]}")
    if np.isnan(d).any():
        raise FacequantError("distances contain NaN")
    order = np.argsort(d, kind="stable")  # callers may pass a sweep in any order; the rules walk outwards
    return d[order], t[:, order], lv


def reliable_crossing(distances: object, tar: object, bar: object) -> np.ndarray:
    """Per curve, how far TAR stays at or above ``bar`` walking outwards from the closest
    distance: where it first drops below, interpolated between the last distance that passes
    and the first that fails. A later recovery does not count (a range with a hole in it is not
    one to rely on).

    +inf: it never drops below within the sweep (reliable beyond its farthest distance).
    NaN: the closest distance already fails (reliable nowhere), or bar is NaN or <= 0.
    A NaN TAR (no genuine comparisons there) ends the run at the last distance that passed:
    there is nothing to interpolate towards, and a gap is no evidence of reliability.
    """
    d, t, bar_ = _curves(distances, tar, bar)
    n, k = t.shape
    out = np.full(n, np.nan)
    if k == 0:
        return out
    passing = t >= bar_[:, None]  # NaN >= x is False: a NaN TAR fails
    usable = np.isfinite(bar_) & (bar_ > 0.0) & passing[:, 0]
    all_pass = passing.all(axis=1)
    out[usable & all_pass] = np.inf
    rows = np.flatnonzero(usable & ~all_pass)
    i = np.argmin(passing[rows], axis=1)  # the first failing distance (>= 1: the first passes)
    t0, t1 = t[rows, i - 1], t[rows, i]  # t0 >= bar > t1 (or t1 NaN)
    with np.errstate(invalid="ignore"):
        crossing = d[i - 1] + (t0 - bar_[rows]) / (t0 - t1) * (d[i] - d[i - 1])
    out[rows] = np.where(np.isnan(t1), d[i - 1], crossing)
    return out


def level_crossing(distances: object, tar: object, level: object) -> np.ndarray:
    """Per curve, where TAR first falls to ``level`` or below walking outwards, interpolated
    between that distance and the previous measured one: TAR [1, 1, 0.8, 0.2] at [1, 2, 3, 4] m
    crosses 0.5 at 3.5 m. Distances with a NaN TAR are skipped (interpolated across).

    The closest measured distance already at or below the level: that distance. +inf: TAR
    never falls that far within the sweep. NaN: level NaN, or no finite TAR at all.
    """
    d, t, lv = _curves(distances, tar, level)
    n, k = t.shape
    out = np.full(n, np.nan)
    if k == 0:
        return out
    finite = np.isfinite(t)
    below = finite & (t <= lv[:, None])
    usable = np.isfinite(lv) & finite.any(axis=1)
    out[usable & ~below.any(axis=1)] = np.inf
    rows = np.flatnonzero(usable & below.any(axis=1))
    i = np.argmax(below[rows], axis=1)  # the first distance at or below the level
    index = np.where(finite[rows], np.arange(k)[None, :], -1)
    last = np.maximum.accumulate(index, axis=1)  # the last measured distance at or before each one
    prev = np.where(i > 0, last[np.arange(rows.size), np.maximum(i - 1, 0)], -1)
    t0 = np.where(prev >= 0, t[rows, np.maximum(prev, 0)], np.nan)
    t1 = t[rows, i]
    d0 = d[np.maximum(prev, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip((t0 - lv[rows]) / (t0 - t1), 0.0, 1.0)
    out[rows] = np.where(prev >= 0, d0 + frac * (d[i] - d0), d[i])
    return out

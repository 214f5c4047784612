"""What a results directory says, as a recommendation reads it: each backend's TAR/FAR curve
over face pixels, its cost figures, degenerate flags, and the cost order between backends."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from facequant.analysis.recommend.verdicts import (
    DEFAULT_LATENCY_TOLERANCE,
    LOG_PX_MATCH,
    Point,
)
from facequant.analysis.recommend.wording import megabytes
from facequant.errors import FacequantError
from facequant.ranges import FAR_RANGE, Range, require
from facequant.simulate.camera import DEFAULT_IOD_MM, CameraProfile

# ---------------------------------------------------------------- reading the run


def run_camera(run: Mapping[str, Any], where: str = "run.json") -> CameraProfile:
    cam = run.get("camera")
    if not isinstance(cam, Mapping):
        raise FacequantError(f"{where}: has no camera")
    width = cam.get("width_px")
    if isinstance(width, float) and width.is_integer():
        width = int(width)
    try:
        return CameraProfile(name=str(cam.get("name", "run camera")), width_px=width,  # type: ignore[arg-type]
                             hfov_deg=cam.get("hfov_deg"), focal_px=cam.get("focal_px"))
    except FacequantError as exc:
        raise FacequantError(f"{where}: {exc}") from None


def run_settings(run: Mapping[str, Any], where: str = "run.json") -> tuple[float, float, float]:
    """(target FAR, inter-ocular mm, model input px) from run.json."""
    config = run.get("config") or {}
    model = run.get("model") or {}
    spec = model.get("spec") if isinstance(model, Mapping) else None
    if not isinstance(config, Mapping) or config.get("target_far") is None:
        raise FacequantError(f"{where}: has no config.target_far")
    size = (spec.get("input_size") if isinstance(spec, Mapping) else None) or [112, 112]
    iod = config.get("iod_mm") or DEFAULT_IOD_MM
    require(f"{where}: config.target_far", config["target_far"], FAR_RANGE)
    require(f"{where}: config.iod_mm", iod, Range(0.0, 1000.0, low_open=True))
    if not isinstance(size, list) or not size:
        raise FacequantError(f"{where}: model.spec.input_size must be [height, width], got {size!r}")
    for v in size:
        require(f"{where}: model.spec.input_size", v, Range(1, 100_000), integer=True)
    target = config["target_far"]
    if run.get("protocol") == "identification" and config.get("target_fpir") is not None:
        require(f"{where}: config.target_fpir", config["target_fpir"], FAR_RANGE)
        target = config["target_fpir"]  # FAR reads FPIR under this protocol
    return float(target), float(iod), float(min(size))


@dataclass(frozen=True)
class Curve:
    """One backend's sweep rows as functions of log face px (ascending)."""

    log_px: np.ndarray
    values: dict[str, np.ndarray]  # tar, far, tar_ci_low, tar_ci_high

    def at(self, distance_m: float, px: float, model_px: float) -> Point | None:
        lp = math.log(px)
        near = np.flatnonzero(np.abs(self.log_px - lp) <= LOG_PX_MATCH)
        lo, hi = float(self.log_px[0]), float(self.log_px[-1])
        if near.size:
            i, how = int(near[0]), "measured"
        elif lp > hi and math.exp(hi) >= model_px * (1 - 1e-6):
            i, how = len(self.log_px) - 1, "held"
        elif lo <= lp <= hi:
            # TAR rises with face size; between two measured sizes a straight line in log px
            # follows how resolution works (each halving of pixels costs alike).
            v = {k: float(np.interp(lp, self.log_px, a)) for k, a in self.values.items()}
            return Point(distance_m, px, v["tar"], v["far"], "interpolated", v["tar_ci_low"], v["tar_ci_high"])
        else:
            return None
        v = {k: float(a[i]) for k, a in self.values.items()}
        return Point(distance_m, px, v["tar"], v["far"], how, v["tar_ci_low"], v["tar_ci_high"])


def read_curves(sweep: pd.DataFrame, where: str = "sweep.csv") -> dict[str, Curve]:
    missing = [c for c in ("backend", "distance_m", "face_px", "tar", "far") if c not in sweep.columns]
    if missing:
        raise FacequantError(f"{where} is missing column(s): {', '.join(missing)}")
    curves: dict[str, Curve] = {}
    for backend, rows in sweep.groupby("backend", sort=False):
        rows = rows[np.isfinite(rows.tar.astype(float)) & (rows.face_px.astype(float) > 0)]
        if rows.empty:
            continue  # nothing measured (no genuine pairs anywhere): not a candidate
        rows = rows.assign(**{c: rows[c] if c in rows else math.nan for c in ("tar_ci_low", "tar_ci_high")})
        # One row per face size (a sweep has one per distance); sorted ascending for interp.
        keys = ["tar", "far", "tar_ci_low", "tar_ci_high"]
        rows = rows.groupby("face_px", as_index=False)[keys].mean().sort_values("face_px")
        curves[str(backend)] = Curve(np.log(rows.face_px.to_numpy(dtype=np.float64)),
                                      {k: rows[k].to_numpy(dtype=np.float64) for k in keys})
    if not curves:
        raise FacequantError(f"{where} has no measured TAR")
    return curves


def cost_rows(cost: pd.DataFrame | None, backends: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per backend: device_ms, cpu_ms, cpu_ratio (CPU p50 / fp32's), ratio (cost.csv's
    latency_vs_fp32, device-based where it had device figures), basis, file_bytes and
    wide_layers (16-bit + float); NaN where cost.csv has no figure."""
    out: dict[str, dict[str, Any]] = {}
    fp32_cpu = math.nan
    if cost is not None and {"backend", "cpu_latency_p50_ms"} <= set(cost.columns):
        ref = pd.to_numeric(cost.loc[cost.backend == "fp32", "cpu_latency_p50_ms"], errors="coerce")
        fp32_cpu = float(ref.iloc[0]) if len(ref) else math.nan
    for b in backends:
        row: dict[str, Any] = {}
        if cost is not None and "backend" in cost:
            match = cost[cost.backend == b]
            if len(match):
                row = match.iloc[0].to_dict()

        def num(key: str, row: dict[str, Any] = row) -> float:
            try:
                v = float(row.get(key, math.nan))
            except (TypeError, ValueError):
                return math.nan
            return v if math.isfinite(v) else math.nan

        basis = row.get("latency_vs_fp32_basis")
        cpu = num("cpu_latency_p50_ms")
        out[b] = {"device_ms": num("device_latency_ms"), "cpu_ms": cpu,
                  "cpu_ratio": cpu / fp32_cpu if fp32_cpu > 0 else math.nan,
                  "ratio": num("latency_vs_fp32"), "file_bytes": num("file_bytes"),
                  "wide_layers": num("layers_16bit") + num("layers_float"),
                  "basis": basis if isinstance(basis, str) else ""}
    return out


def degenerate_reasons(cliff: pd.DataFrame | None) -> dict[str, str]:
    if cliff is None or "degenerate" not in cliff:
        return {}
    out = {}
    for b, why in zip(cliff.backend, cliff.degenerate, strict=True):
        if isinstance(why, str) and why.strip():
            out[str(b)] = why.strip()
    return out


# ---------------------------------------------------------------- cost order


@dataclass(frozen=True)
class Ranking:
    """Backends in tie groups, cheapest group first, each group in tie-break order."""

    groups: tuple[tuple[str, ...], ...]
    key: str  # the cost column latency was compared on ("" when none is known)
    tolerance: float
    basis: str

    @property
    def order(self) -> list[str]:
        return [b for g in self.groups for b in g]


def rank_backends(backends: Sequence[str], costs: Mapping[str, Mapping[str, Any]], latency_tolerance: float) -> Ranking:
    def known(key: str) -> bool:
        return all(math.isfinite(costs[b][key]) for b in backends)

    if backends and known("device_ms"):
        key, tol, basis = "device_ms", 0.0, "device latency"
    elif backends and known("cpu_ms"):
        key, tol, basis = "cpu_ms", latency_tolerance, f"CPU latency (ties within {latency_tolerance:.0%})"
    elif backends and any(math.isfinite(costs[b]["ratio"]) for b in backends):
        key, tol, basis = "ratio", latency_tolerance, f"latency vs fp32 (ties within {latency_tolerance:.0%})"
    else:
        key, tol, basis = "", 0.0, "no latency in cost.csv"
    basis += ", then file size, then fewer 16-bit/float layers" if key else ": file size, then fewer 16-bit/float layers"

    def lat(b: str) -> float:
        v = costs[b][key] if key else 0.0
        return v if math.isfinite(v) else math.inf

    def tiebreak(b: str) -> tuple[float, float, float, str]:
        c = costs[b]
        size = c["file_bytes"] if math.isfinite(c["file_bytes"]) else math.inf
        wide = c["wide_layers"] if math.isfinite(c["wide_layers"]) else math.inf
        return (size, wide, lat(b), b)  # name last: the order never depends on row order

    remaining = sorted(backends, key=lambda b: (lat(b), *tiebreak(b)))
    groups: list[tuple[str, ...]] = []
    while remaining:
        # Greedy tie groups from the cheapest remaining: deterministic, and a group never
        # spans more than the tolerance.
        cheapest = lat(remaining[0])
        group = [b for b in remaining if lat(b) <= cheapest * (1 + tol) or lat(b) == cheapest]
        groups.append(tuple(sorted(group, key=tiebreak)))
        remaining = [b for b in remaining if b not in group]
    return Ranking(tuple(groups), key, tol, basis)


def cost_order(backends: Sequence[str], costs: Mapping[str, Mapping[str, Any]],
               latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE) -> tuple[list[str], str]:
    """``backends`` cheapest first, and the basis used, as text. ``costs`` maps each backend
    to device_ms, cpu_ms, ratio (latency_vs_fp32), file_bytes and wide_layers (16-bit + float).

    Latency first: device ms when every one of them has a device figure (measured on the
    target: compared exactly), else CPU p50 when every one has it (a proxy: within
    ``latency_tolerance`` of the cheapest remaining counts as a tie), else latency_vs_fp32.
    Ties: smaller file, then fewer 16-bit + float layers, then name. Unknown numbers sort last.
    """
    ranking = rank_backends(backends, costs, latency_tolerance)
    return ranking.order, ranking.basis


def _latency_text(c: Mapping[str, Any], key: str) -> str:
    if key == "device_ms":
        return f"{c['device_ms']:.2f} ms"
    if key == "cpu_ms" and not math.isfinite(c["cpu_ratio"]) and math.isfinite(c["cpu_ms"]):
        return f"{c['cpu_ms']:.2f} ms CPU"  # pairs of several models: no one fp32 to divide by
    value = c["cpu_ratio"] if key == "cpu_ms" else c["ratio"]
    return f"{value:.2f}x fp32" if math.isfinite(value) else "latency unknown"


def costlier_reason(b: str, ranking: Ranking, costs: Mapping[str, Mapping[str, Any]]) -> str:
    """Why a backend that meets the scenario lost to the recommended one, from the ranking."""
    first = ranking.groups[0]
    winner, key = first[0], ranking.key
    c, w = costs[b], costs[winner]
    if b not in first:
        fastest = min(first, key=lambda x: (costs[x][key], x != winner, x)) if key else winner
        margin = f" by more than {ranking.tolerance:.0%}" if ranking.tolerance else ""
        return (f"meets; slower than {fastest}{margin}: {_latency_text(c, key)} > "
                f"{_latency_text(costs[fastest], key)}")
    head = "meets; "
    if key:
        within = f", within {ranking.tolerance:.0%}" if ranking.tolerance else ""
        head += f"latency ties {winner} ({_latency_text(c, key)} vs {_latency_text(w, key)}{within}), "
    if c["file_bytes"] != w["file_bytes"] and math.isfinite(c["file_bytes"]):
        return head + f"larger file: {megabytes(c['file_bytes'])} > {megabytes(w['file_bytes'])}"
    if c["wide_layers"] != w["wide_layers"] and math.isfinite(c["wide_layers"]):
        return head + f"more 16-bit/float layers: {c['wide_layers']:.0f} > {w['wide_layers']:.0f}"
    return head + f"same file size and layers as {winner}; {winner} is ahead on latency or name"



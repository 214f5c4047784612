"""What a results directory says, as a recommendation reads it: each backend's TAR/FAR curve
over face pixels, its cost figures, degenerate flags, and the cost order between backends."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

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
    try:  # CameraProfile checks what run.json holds (a width that is no whole number is refused there)
        return CameraProfile(name=str(cam.get("name", "run camera")), width_px=cast(int, width),
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


#: The sweep's columns a reading carries beside TAR and FAR (NaN when an older sweep lacks them).
_INTERVALS = ("tar_ci_low", "tar_ci_high", "far_ci_low", "far_ci_high", "n_impostor")


@dataclass(frozen=True)
class Curve:
    """One backend's sweep rows as functions of log face px (ascending)."""

    log_px: np.ndarray
    values: dict[str, np.ndarray]  # tar, far and _INTERVALS

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
            return Point(distance_m, px, v["tar"], v["far"], "interpolated", *(v[k] for k in _INTERVALS))
        else:
            return None
        v = {k: float(a[i]) for k, a in self.values.items()}
        return Point(distance_m, px, v["tar"], v["far"], how, *(v[k] for k in _INTERVALS))


def read_curves(sweep: pd.DataFrame, where: str = "sweep.csv") -> dict[str, Curve]:
    missing = [c for c in ("backend", "distance_m", "face_px", "tar", "far") if c not in sweep.columns]
    if missing:
        raise FacequantError(f"{where} is missing column(s): {', '.join(missing)}")
    curves: dict[str, Curve] = {}
    for backend, rows in sweep.groupby("backend", sort=False):
        rows = rows[np.isfinite(rows.tar.astype(float)) & (rows.face_px.astype(float) > 0)]
        if rows.empty:
            continue  # nothing measured (no genuine pairs anywhere): not a candidate
        rows = rows.assign(**{c: rows[c] if c in rows else math.nan for c in _INTERVALS})
        # One row per face size (a sweep has one per distance); sorted ascending for interp.
        keys = ["tar", "far", *_INTERVALS]
        rows = rows.groupby("face_px", as_index=False)[keys].mean().sort_values("face_px")
        curves[str(backend)] = Curve(np.log(rows.face_px.to_numpy(dtype=np.float64)),
                                      {k: rows[k].to_numpy(dtype=np.float64) for k in keys})
    if not curves:
        raise FacequantError(f"{where} has no measured TAR")
    return curves


#: recommend --latency: which latency orders the backends and checks the budget.
LATENCY_CHOICES = ("auto", "cpu", "device", "off")


def cost_rows(cost: pd.DataFrame | None, backends: Iterable[str], latency: str = "auto") -> dict[str, dict[str, Any]]:
    """Per backend: device_ms; cpu_ms with its spread across interleaved rounds (cpu_ms_low,
    cpu_ms_high); cpu_ratio, the CPU ratio to fp32 (cost.csv's cpu_vs_fp32: the median of the
    per-round ratios; an older cost.csv: p50 over fp32's p50) with its spread (cpu_low,
    cpu_high); ratio / ratio_low / ratio_high / basis, what the latency budget is checked on
    (`latency`: auto = cost.csv's latency_vs_fp32 and its basis, cpu, device, or off = none);
    file_bytes and wide_layers (16-bit + float). NaN where cost.csv has no figure."""
    out: dict[str, dict[str, Any]] = {}
    ref: dict[str, Any] = {}
    if cost is not None and {"backend"} <= set(cost.columns) and len(cost[cost.backend == "fp32"]):
        ref = cost[cost.backend == "fp32"].iloc[0].to_dict()
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

        fp32_cpu, fp32_device = num("cpu_latency_p50_ms", ref), num("device_latency_ms", ref)
        cpu = num("cpu_latency_p50_ms")
        cpu_ratio, cpu_low, cpu_high = num("cpu_vs_fp32"), num("cpu_vs_fp32_low"), num("cpu_vs_fp32_high")
        if math.isnan(cpu_ratio) and fp32_cpu > 0:
            cpu_ratio = cpu / fp32_cpu
        device_ratio = num("device_latency_ms") / fp32_device if fp32_device > 0 else math.nan
        basis = row.get("latency_vs_fp32_basis")
        budget = {"auto": (num("latency_vs_fp32"), num("latency_vs_fp32_low"), num("latency_vs_fp32_high"),
                           basis if isinstance(basis, str) else ""),
                  "cpu": (cpu_ratio, cpu_low, cpu_high, "cpu"),
                  "device": (device_ratio, device_ratio, device_ratio, "device"),
                  "off": (math.nan, math.nan, math.nan, "off")}[latency]
        out[b] = {"device_ms": num("device_latency_ms"), "cpu_ms": cpu, "cpu_ms_low": num("cpu_latency_low_ms"),
                  "cpu_ms_high": num("cpu_latency_high_ms"), "cpu_ratio": cpu_ratio, "cpu_low": cpu_low,
                  "cpu_high": cpu_high, "ratio": budget[0], "ratio_low": budget[1], "ratio_high": budget[2],
                  "basis": budget[3], "file_bytes": num("file_bytes"),
                  "wide_layers": num("layers_16bit") + num("layers_float")}
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


#: Per latency key, the costs' fields holding its spread across interleaved rounds.
_SPREAD = {"cpu_ratio": ("cpu_low", "cpu_high"), "cpu_ms": ("cpu_ms_low", "cpu_ms_high")}
#: How a latency tie is broken, in the words the reasons use.
TIE_RULE = "ties go to the smaller file, then to fewer 16-bit/float layers"


def _latency_key(backends: Sequence[str], costs: Mapping[str, Mapping[str, Any]], latency: str) -> str:
    def known(key: str) -> bool:
        return bool(backends) and all(math.isfinite(costs[b][key]) for b in backends)

    if latency == "off":
        return ""
    if latency == "device":
        missing = [b for b in backends if not math.isfinite(costs[b]["device_ms"])]
        if missing:
            raise FacequantError(f"--latency device: no device latency for {', '.join(missing)} in cost.csv; give "
                                 "--device-profile (configs/devices/*.yaml) or --latency cpu")
        return "device_ms"
    if latency == "auto" and known("device_ms"):
        return "device_ms"
    for key in ("cpu_ratio", "cpu_ms"):  # the per-round ratio: the load cancels in it
        if known(key):
            return key
    return "ratio" if latency == "auto" and any(math.isfinite(costs[b]["ratio"]) for b in backends) else ""


def rank_backends(backends: Sequence[str], costs: Mapping[str, Mapping[str, Any]], latency_tolerance: float,
          latency: str = "auto") -> Ranking:
    key = _latency_key(backends, costs, latency)
    # A device figure is measured on the target: compared exactly. A CPU figure is a proxy:
    # within the tolerance, or within the spread of interleaved rounds, it is a tie.
    tol = 0.0 if key in ("device_ms", "") else latency_tolerance
    noise = f"ties within {latency_tolerance:.0%} or within the spread of interleaved rounds"
    basis = {"device_ms": "device latency", "cpu_ratio": f"CPU latency vs fp32 ({noise})",
             "cpu_ms": f"CPU latency ({noise})", "ratio": f"latency vs fp32 (ties within {latency_tolerance:.0%})",
             "": "latency off" if latency == "off" else "no latency in cost.csv"}[key]
    basis += ", then file size, then fewer 16-bit/float layers" if key else ": file size, then fewer 16-bit/float layers"

    def lat(b: str) -> float:
        v = costs[b][key] if key else 0.0
        return v if math.isfinite(v) else math.inf

    def spread(b: str) -> tuple[float, float]:
        low, high = (costs[b].get(f, math.nan) for f in _SPREAD.get(key, ("", "")))
        return (low, high) if math.isfinite(low) and math.isfinite(high) else (lat(b), lat(b))

    def tiebreak(b: str) -> tuple[float, float, float, str]:
        c = costs[b]
        size = c["file_bytes"] if math.isfinite(c["file_bytes"]) else math.inf
        wide = c["wide_layers"] if math.isfinite(c["wide_layers"]) else math.inf
        return (size, wide, lat(b), b)  # name last: the order never depends on row order

    remaining = sorted(backends, key=lambda b: (lat(b), *tiebreak(b)))
    groups: list[tuple[str, ...]] = []
    while remaining:
        # Greedy tie groups from the cheapest remaining: deterministic, and a group never
        # spans more than the tolerance or the cheapest one's spread.
        cheapest = remaining[0]
        low, high = spread(cheapest)
        group = [b for b in remaining if lat(b) <= lat(cheapest) * (1 + tol) or lat(b) == lat(cheapest)
                 or spread(b)[0] <= high]
        groups.append(tuple(sorted(group, key=tiebreak)))
        remaining = [b for b in remaining if b not in group]
    return Ranking(tuple(groups), key, tol, basis)


def cost_order(backends: Sequence[str], costs: Mapping[str, Mapping[str, Any]],
               latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE, latency: str = "auto") -> tuple[list[str], str]:
    """``backends`` cheapest first, and the basis used, as text. ``costs``: cost_rows'.

    Latency first (`latency`: auto = device ms when every one of them has a device figure, else
    the CPU; cpu; device; off = none): device ms are measured on the target and compared
    exactly; a CPU figure is a proxy, so within ``latency_tolerance`` of the cheapest remaining,
    or with its spread across interleaved rounds reaching the cheapest one's, it is a tie.
    Ties (TIE_RULE): smaller file, then fewer 16-bit + float layers, then name. Unknown
    numbers sort last.
    """
    ranking = rank_backends(backends, costs, latency_tolerance, latency)
    return ranking.order, ranking.basis


def _latency_text(c: Mapping[str, Any], key: str, with_spread: bool = False) -> str:
    if key == "device_ms":
        return f"{c['device_ms']:.2f} ms"
    if key == "cpu_ms":
        text = f"{c['cpu_ms']:.2f} ms CPU"  # pairs of several models: no one fp32 to divide by
        low, high = c.get("cpu_ms_low", math.nan), c.get("cpu_ms_high", math.nan)
        return text + (f" [{low:.2f}, {high:.2f}]" if with_spread and math.isfinite(low) else "")
    value = c["cpu_ratio"] if key == "cpu_ratio" else c["ratio"]
    if not math.isfinite(value):
        return "latency unknown"
    low, high = (c.get("cpu_low", math.nan), c.get("cpu_high", math.nan)) if key == "cpu_ratio" else (math.nan,) * 2
    shown = with_spread and math.isfinite(low) and math.isfinite(high) and low < high  # fp32's own is [1, 1]
    return f"{value:.2f}x fp32" + (f" [{low:.2f}, {high:.2f}]" if shown else "")


def costlier_reason(b: str, ranking: Ranking, costs: Mapping[str, Mapping[str, Any]]) -> str:
    """Why a backend that meets the scenario lost to the recommended one, from the ranking."""
    first = ranking.groups[0]
    winner, key = first[0], ranking.key
    c, w = costs[b], costs[winner]
    if b not in first:
        fastest = min(first, key=lambda x: (costs[x][key], x != winner, x)) if key else winner
        spread = all(math.isfinite(costs[x].get(f, math.nan)) for x in (b, fastest) for f in _SPREAD.get(key, ("",)))
        margin = (f" by more than {ranking.tolerance:.0%}" + (" and beyond the spread of interleaved rounds"
                                                              if spread else "")) if ranking.tolerance else ""
        return (f"meets; slower than {fastest}{margin}: {_latency_text(c, key, True)} > "
                f"{_latency_text(costs[fastest], key, True)}")
    head = "meets; "
    if key:
        within = " within noise" if ranking.tolerance else ""
        head += f"latency ties {winner}{within} ({_latency_text(c, key, True)} vs {_latency_text(w, key, True)}); "
    if c["file_bytes"] != w["file_bytes"] and math.isfinite(c["file_bytes"]):
        return head + f"larger file: {megabytes(c['file_bytes'])} > {megabytes(w['file_bytes'])}"
    if c["wide_layers"] != w["wide_layers"] and math.isfinite(c["wide_layers"]):
        return head + f"more 16-bit/float layers: {c['wide_layers']:.0f} > {w['wide_layers']:.0f}"
    return head + f"same file size and layers as {winner}; {winner} is ahead on latency or name"


def tie_note(ranking: Ranking, costs: Mapping[str, Mapping[str, Any]]) -> str:
    """When the choice rests on latency within noise, say so and the rule that broke the tie."""
    first = ranking.groups[0]
    if len(first) < 2 or not ranking.key:
        return ""
    figures = ", ".join(f"{b} {_latency_text(costs[b], ranking.key, True)}" for b in first)
    return f"latency within noise decided nothing between {figures}: {TIE_RULE}, which chose {first[0]}"

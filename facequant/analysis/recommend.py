"""Which backend to deploy: per deployment scenario, the cheapest backend that holds the
required match rate over the scenario's distance range, and why every other one lost.

A *scenario* (configs/scenarios/<name>.yaml, one file each) is a camera, a distance range, a
required TAR at the run's threshold, a FAR limit relative to the run's target FAR, and a cost
budget. recommend() reads a results directory's tables (sweep.csv, cliff.csv, cost.csv,
run.json; see facequant.results.directory.load_results) and, per scenario:

1. reads every backend's TAR and FAR at the scenario's distances: the sweep's distances inside
   the range plus the range's two ends. What matters physically is face pixels, so each
   distance becomes a face size with the *scenario's* camera and is read off the run's TAR
   vs face-px curve: measured where the sweep has that face size (always, when the cameras
   agree), else interpolated linearly in log face px between the two neighbouring rows;
   a face larger than the sweep's largest reads the largest's value when that is already at
   or above the model input size (the model sees the face resampled to its input either
   way). A distance the sweep does not reach otherwise is not evaluated, and said so;
2. rejects degenerate backends (cliff.csv `degenerate`), backends whose worst TAR in range
   is below the requirement, whose FAR exceeds the limit anywhere in range, or that are over
   budget, each with the number that failed;
3. recommends the cheapest of the rest: device latency when every backend has a device
   figure, else CPU latency (a proxy: figures within ``latency_tolerance`` of each other count
   as a tie, since CPU timing of the same model moves by more than that between runs), then
   smaller file, then fewer 16-bit/float layers;
4. when none qualifies, names the closest: the smallest worst TAR shortfall among healthy
   backends within FAR and budget (among all healthy ones if none is).

A scenario range the sweep only partly reaches is evaluated over what it reaches, and the
verdict says which distances were left out (ScenarioVerdict.coverage, a note, and a tag on the
recommended row): the near end is routinely outside a sweep and harmless there, while
refusing would make a short sweep useless. A scenario the sweep does not reach at all is an
error when asked for by name, and skipped (Recommendation.skipped) when evaluating them all.

Scenarios are one file each, not one file of all: a site adds its own by dropping a file in
(or passing its path), an error names the file of the scenario at fault, and the file name is
the scenario's name, so the two cannot disagree.

evaluate_scenario, recommend and cost_order are pure functions of the tables (no printing, no
files but the scenario YAML when none is given); recommend_dir reads a results directory and
writes recommend.csv, the only file it writes; render builds rich tables without printing
them. The CLI and a TUI call the same API.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

from facequant import settings
from facequant.errors import FacequantError
from facequant.ranges import FAR_RANGE, Range, require
from facequant.simulate.camera import DEFAULT_IOD_MM, CameraProfile, camera_from_spec

if TYPE_CHECKING:
    from rich.console import RenderableType

RECOMMEND_CSV = "recommend.csv"
#: Optional output of a precision search (layer diagnostics); its "recipe" is mentioned.
SEARCH_JSON = "search.json"

#: The contract: recommend.csv's columns start exactly with these, in this order.
RECOMMEND_COLUMNS: tuple[str, ...] = (
    "scenario",
    "backend",
    "verdict",
    "reason",
    "worst_tar",
    "worst_distance_m",
    "shortfall",
    "latency_vs_fp32",
    "file_bytes",
)
#: Extra columns after RECOMMEND_COLUMNS.
RECOMMEND_EXTRA_COLUMNS: tuple[str, ...] = (
    "closest",  # True on the one rejected backend named as closest when none qualifies
    "required_tar",
    "worst_tar_ci_low",  # the sweep's 95 % interval of TAR at the worst distance
    "worst_tar_ci_high",
    "worst_far",
    "far_limit",
    "latency_basis",  # cost.csv's latency_vs_fp32_basis: device or cpu
    "evaluated_m",  # the distances evaluated, ';'-separated
    "tar_basis",  # how TAR was read: the sweep's own rows or converted through face px
)

RECOMMENDED = "recommended"
REJECTED = "rejected"
COSTLIER = "meets-but-costlier"

#: CPU latency ratios within this relative margin are a tie (see the module docstring).
DEFAULT_LATENCY_TOLERANCE = 0.10

_SCENARIO_KEYS = ("description", "camera", "distance_m", "required_tar", "max_far_vs_target", "budget")
_REQUIRED_KEYS = ("camera", "distance_m", "required_tar")
_BUDGET_KEYS = ("max_latency_vs_fp32", "max_latency_ms")
_EPS = 1e-9  # comparisons of rates against limits: exact equality meets the limit
_LOG_PX_MATCH = 1e-6  # two face sizes this close (in log px) are the same sweep row


# ---------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """A deployment: camera, distance range, what it must achieve and what it may cost."""

    name: str
    camera: CameraProfile
    near_m: float
    far_m: float
    required_tar: float
    max_far_vs_target: float = 3.0
    #: Latency relative to fp32 (cost.csv latency_vs_fp32); None: no limit (as in a YAML
    #: file without it: the shipped scenarios set 1.5).
    max_latency_vs_fp32: float | None = None
    #: Absolute device latency in ms (cost.csv device_latency_ms); None: no limit.
    max_latency_ms: float | None = None
    description: str = ""
    source: str = ""  # the YAML file it came from, for messages

    def __post_init__(self) -> None:
        if not (0.0 < self.near_m <= self.far_m):
            raise FacequantError(f"scenario '{self.name}': need 0 < near <= far, got {self.near_m}, {self.far_m}")
        if not (0.0 < self.required_tar <= 1.0):
            raise FacequantError(f"scenario '{self.name}': required_tar must be in (0, 1], got {self.required_tar}")

    def requirement(self) -> str:
        """One line: what the scenario asks for."""
        parts = [f"TAR >= {self.required_tar:g} at {_m(self.near_m)}-{_m(self.far_m)} m",
                 f"FAR <= {self.max_far_vs_target:g}x target"]
        if self.max_latency_vs_fp32 is not None:
            parts.append(f"<= {self.max_latency_vs_fp32:g}x fp32 latency")
        if self.max_latency_ms is not None:
            parts.append(f"<= {self.max_latency_ms:g} ms on device")
        return ", ".join(parts) + f"; camera {self.camera.name}"


def scenarios_dir() -> Path:
    return settings.configs_dir() / "scenarios"


def _number(path: Path, key: str, value: object, low: float, high: float, low_open: bool = True) -> float:
    # bool is an int subclass; `required_tar: yes` is a typo, not 1.
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        f = float(value)  # type: ignore[arg-type]
        ok = (f > low if low_open else f >= low) and f <= high
    if not ok:
        bound = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise FacequantError(f"{path}: {key} must be a number in {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _camera(path: Path, value: object) -> CameraProfile:
    if isinstance(value, Mapping):
        fields = dict(value)
        name = str(fields.pop("name", f"{path.stem} camera"))
        try:
            return CameraProfile(name=name, **fields)
        except TypeError as exc:
            raise FacequantError(f"{path}: camera: expected width_px and hfov_deg or focal_px ({exc})") from exc
        except FacequantError as exc:  # a wrong type or range, named by CameraProfile
            raise FacequantError(f"{path}: camera: {exc}") from None
    if isinstance(value, str):
        try:
            return camera_from_spec(value)
        except FacequantError as exc:
            raise FacequantError(f"{path}: camera: {exc}") from exc
    raise FacequantError(f"{path}: camera must be a preset name, WIDTHxHFOV or a mapping, got {value!r}")


def load_scenario_file(path: str | Path) -> Scenario:
    """One scenario from its YAML file; the file name (without .yaml) is its name. Every
    problem is a one-line FacequantError naming the file and the key."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FacequantError(f"{p}: scenario is not valid YAML{where} ({problem})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FacequantError(f"{p}: cannot read scenario ({exc})") from exc
    if not isinstance(raw, dict):
        raise FacequantError(f"{p}: scenario must be a mapping with keys {', '.join(_REQUIRED_KEYS)}")
    unknown = [str(k) for k in raw if k not in _SCENARIO_KEYS]
    if unknown:
        raise FacequantError(f"{p}: unknown key '{unknown[0]}' (known: {', '.join(_SCENARIO_KEYS)})")
    missing = [k for k in _REQUIRED_KEYS if raw.get(k) is None]
    if missing:
        raise FacequantError(f"{p}: missing key '{missing[0]}'")
    rng = raw["distance_m"]
    if not (isinstance(rng, list) and len(rng) == 2):
        raise FacequantError(f"{p}: distance_m must be [near, far] in metres, got {rng!r}")
    near = _number(p, "distance_m", rng[0], 0.0, 1e4)
    far = _number(p, "distance_m", rng[1], 0.0, 1e4)
    if near > far:
        raise FacequantError(f"{p}: distance_m must be [near, far] with near <= far, got {rng!r}")
    budget = raw.get("budget") or {}
    if not isinstance(budget, dict):
        raise FacequantError(f"{p}: budget must be a mapping ({', '.join(_BUDGET_KEYS)}), got {budget!r}")
    bad = [str(k) for k in budget if k not in _BUDGET_KEYS]
    if bad:
        raise FacequantError(f"{p}: unknown key 'budget.{bad[0]}' (known: {', '.join(_BUDGET_KEYS)})")
    limits = {k: (None if budget.get(k) is None else _number(p, f"budget.{k}", budget[k], 0.0, 1e9))
              for k in _BUDGET_KEYS}
    far_factor = raw.get("max_far_vs_target", 3.0)
    return Scenario(
        name=p.stem, camera=_camera(p, raw["camera"]), near_m=near, far_m=far,
        required_tar=_number(p, "required_tar", raw["required_tar"], 0.0, 1.0),
        max_far_vs_target=_number(p, "max_far_vs_target", far_factor, 1.0, 1e9, low_open=False),
        max_latency_vs_fp32=limits["max_latency_vs_fp32"], max_latency_ms=limits["max_latency_ms"],
        description=str(raw.get("description") or ""), source=str(p))


def load_scenarios(directory: str | Path | None = None) -> dict[str, Scenario]:
    """Every scenario in a folder (default configs/scenarios), by name, sorted by name."""
    d = Path(directory) if directory is not None else scenarios_dir()
    if not d.is_dir():
        raise FacequantError(f"{d}: no scenarios folder")
    files = sorted([*d.glob("*.yaml"), *d.glob("*.yml")])
    if not files:
        raise FacequantError(f"{d}: no scenario files (*.yaml)")
    return {f.stem: load_scenario_file(f) for f in files}


def get_scenario(name: str, directory: str | Path | None = None) -> Scenario:
    """A scenario by name, or by the path of its YAML file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return load_scenario_file(p)
    d = Path(directory) if directory is not None else scenarios_dir()
    for suffix in (".yaml", ".yml"):
        if (d / f"{name}{suffix}").is_file():
            return load_scenario_file(d / f"{name}{suffix}")
    known = sorted(f.stem for f in [*d.glob("*.yaml"), *d.glob("*.yml")]) if d.is_dir() else []
    raise FacequantError(f"scenario '{name}' unknown; known: {', '.join(known) or 'none'} (in {d})")


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Point:
    """One backend's TAR and FAR at one scenario distance."""

    distance_m: float
    face_px: float  # with the scenario's camera
    tar: float
    far: float
    how: str  # "measured", "interpolated" (log face px) or "held" (above the sweep's largest face)
    tar_ci_low: float = math.nan  # the sweep's Wilson 95 % interval, read the same way
    tar_ci_high: float = math.nan


@dataclass(frozen=True)
class BackendVerdict:
    backend: str
    verdict: str  # RECOMMENDED, COSTLIER or REJECTED
    reason: str
    worst_tar: float
    worst_distance_m: float
    shortfall: float  # required TAR - worst TAR: > 0 fails by this much, <= 0 is the margin
    worst_far: float
    latency_vs_fp32: float
    latency_basis: str
    file_bytes: float
    failures: tuple[str, ...] = ()  # each failed rule as text; empty for a backend that meets
    closest: bool = False
    points: tuple[Point, ...] = ()

    @property
    def meets(self) -> bool:
        return not self.failures

    @property
    def points_worst(self) -> Point:
        """The evaluated point with the lowest TAR (the farthest among equals)."""
        return min(self.points, key=lambda p: (p.tar, -p.distance_m))


@dataclass(frozen=True)
class ScenarioVerdict:
    scenario: Scenario
    recommended: str | None
    closest: str | None  # set only when nothing is recommended
    backends: tuple[BackendVerdict, ...]  # recommended, then costlier, then rejected
    summary: str  # one line: the answer
    tar_basis: str  # how TAR was read (same camera, or through face px)
    evaluated_m: tuple[float, ...]
    coverage: str  # "" when the whole range was evaluated, else what was not
    cost_basis: str
    far_limit: float
    notes: tuple[str, ...] = ()
    recipe: str | None = None  # from search.json, mentioned when nothing qualifies

    def table(self) -> pd.DataFrame:
        return _verdict_frame([self])


@dataclass(frozen=True)
class Recommendation:
    table: pd.DataFrame  # recommend.csv's rows
    verdicts: dict[str, ScenarioVerdict]
    #: Scenarios that could not be evaluated at all (no distance covered), with the reason.
    skipped: dict[str, str] = field(default_factory=dict)


class NotCoveredError(FacequantError):
    """No distance of the scenario lies within what the sweep measured."""


# ---------------------------------------------------------------- formatting (why it says so)


def _m(d: float) -> str:
    return f"{d:.1f}" if abs(round(d, 1) - d) < 1e-9 else f"{d:.2f}"


def _rate_vs(value: float, limit: float) -> tuple[str, str]:
    """value and value - limit with just enough decimals that a failure is visible: 0.986
    against 0.99 must not print as 0.99 < 0.99."""
    for nd in (2, 3, 4):
        if f"{value:.{nd}f}" != f"{limit:.{nd}f}" and round(value - limit, nd) != 0:
            return f"{value:.{nd}f}", f"{value - limit:+.{nd}f}"
    return f"{value:.5f}", f"{value - limit:+.5f}"


def _sig_vs(value: float, limit: float) -> str:
    for n in (2, 3, 4):
        if f"{value:.{n}g}" != f"{limit:.{n}g}":
            return f"{value:.{n}g}"
    return f"{value:.6g}"


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.2f} MB" if math.isfinite(nbytes) else "? MB"


# ---------------------------------------------------------------- reading the run


def _run_camera(run: Mapping[str, Any], where: str = "run.json") -> CameraProfile:
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


def _run_config(run: Mapping[str, Any], where: str = "run.json") -> tuple[float, float, float]:
    """(target FAR, inter-ocular mm, model input px) from run.json."""
    config = run.get("config") or {}
    model = run.get("model") or {}
    spec = model.get("spec") if isinstance(model, Mapping) else None
    if not isinstance(config, Mapping) or config.get("target_far") is None:
        raise FacequantError(f"{where}: has no config.target_far")
    size = (spec.get("input_size") if isinstance(spec, Mapping) else None) or [112, 112]
    iod = config.get("iod_mm") or DEFAULT_IOD_MM
    require(f"{where}: config.target_far", config["target_far"], FAR_RANGE)
    target = config["target_far"]
    if run.get("protocol") == "identification" and config.get("target_fpir") is not None:
        require(f"{where}: config.target_fpir", config["target_fpir"], FAR_RANGE)
        target = config["target_fpir"]  # FAR reads FPIR under this protocol
    require(f"{where}: config.iod_mm", iod, Range(0.0, 1000.0, low_open=True))
    if not isinstance(size, list) or not size:
        raise FacequantError(f"{where}: model.spec.input_size must be [height, width], got {size!r}")
    for v in size:
        require(f"{where}: model.spec.input_size", v, Range(1, 100_000), integer=True)
    return float(target), float(iod), float(min(size))


@dataclass(frozen=True)
class _Curve:
    """One backend's sweep rows as functions of log face px (ascending)."""

    log_px: np.ndarray
    values: dict[str, np.ndarray]  # tar, far, tar_ci_low, tar_ci_high

    def at(self, distance_m: float, px: float, model_px: float) -> Point | None:
        lp = math.log(px)
        near = np.flatnonzero(np.abs(self.log_px - lp) <= _LOG_PX_MATCH)
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


def _curves(sweep: pd.DataFrame, where: str = "sweep.csv") -> dict[str, _Curve]:
    missing = [c for c in ("backend", "distance_m", "face_px", "tar", "far") if c not in sweep.columns]
    if missing:
        raise FacequantError(f"{where} is missing column(s): {', '.join(missing)}")
    curves: dict[str, _Curve] = {}
    for backend, rows in sweep.groupby("backend", sort=False):
        rows = rows[np.isfinite(rows.tar.astype(float)) & (rows.face_px.astype(float) > 0)]
        if rows.empty:
            continue  # nothing measured (no genuine pairs anywhere): not a candidate
        rows = rows.assign(**{c: rows[c] if c in rows else math.nan for c in ("tar_ci_low", "tar_ci_high")})
        # One row per face size (a sweep has one per distance); sorted ascending for interp.
        keys = ["tar", "far", "tar_ci_low", "tar_ci_high"]
        rows = rows.groupby("face_px", as_index=False)[keys].mean().sort_values("face_px")
        curves[str(backend)] = _Curve(np.log(rows.face_px.to_numpy(dtype=np.float64)),
                                      {k: rows[k].to_numpy(dtype=np.float64) for k in keys})
    if not curves:
        raise FacequantError(f"{where} has no measured TAR")
    return curves


def _cost_rows(cost: pd.DataFrame | None, backends: Iterable[str]) -> dict[str, dict[str, Any]]:
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


def _degenerate(cliff: pd.DataFrame | None) -> dict[str, str]:
    if cliff is None or "degenerate" not in cliff:
        return {}
    out = {}
    for b, why in zip(cliff.backend, cliff.degenerate, strict=True):
        if isinstance(why, str) and why.strip():
            out[str(b)] = why.strip()
    return out


# ---------------------------------------------------------------- cost order


@dataclass(frozen=True)
class _Ranking:
    """Backends in tie groups, cheapest group first, each group in tie-break order."""

    groups: tuple[tuple[str, ...], ...]
    key: str  # the cost column latency was compared on ("" when none is known)
    tolerance: float
    basis: str

    @property
    def order(self) -> list[str]:
        return [b for g in self.groups for b in g]


def _rank(backends: Sequence[str], costs: Mapping[str, Mapping[str, Any]], latency_tolerance: float) -> _Ranking:
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
    return _Ranking(tuple(groups), key, tol, basis)


def cost_order(backends: Sequence[str], costs: Mapping[str, Mapping[str, Any]],
               latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE) -> tuple[list[str], str]:
    """``backends`` cheapest first, and the basis used, as text. ``costs`` maps each backend
    to device_ms, cpu_ms, ratio (latency_vs_fp32), file_bytes and wide_layers (16-bit + float).

    Latency first: device ms when every one of them has a device figure (measured on the
    target: compared exactly), else CPU p50 when every one has it (a proxy: within
    ``latency_tolerance`` of the cheapest remaining counts as a tie), else latency_vs_fp32.
    Ties: smaller file, then fewer 16-bit + float layers, then name. Unknown numbers sort last.
    """
    ranking = _rank(backends, costs, latency_tolerance)
    return ranking.order, ranking.basis


def _latency_text(c: Mapping[str, Any], key: str) -> str:
    if key == "device_ms":
        return f"{c['device_ms']:.2f} ms"
    value = c["cpu_ratio"] if key == "cpu_ms" else c["ratio"]
    return f"{value:.2f}x fp32" if math.isfinite(value) else "latency unknown"


def _costlier_reason(b: str, ranking: _Ranking, costs: Mapping[str, Mapping[str, Any]]) -> str:
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
        return head + f"larger file: {_mb(c['file_bytes'])} > {_mb(w['file_bytes'])}"
    if c["wide_layers"] != w["wide_layers"] and math.isfinite(c["wide_layers"]):
        return head + f"more 16-bit/float layers: {c['wide_layers']:.0f} > {w['wide_layers']:.0f}"
    return head + f"same file size and layers as {winner}; {winner} is ahead on latency or name"


# ---------------------------------------------------------------- one scenario


def _evaluation_distances(sweep: pd.DataFrame, scenario: Scenario) -> list[float]:
    """The sweep's distances inside the range, plus both ends of the range (the far end is
    the hardest point and must be checked even between two swept distances)."""
    grid = sorted({float(d) for d in sweep.distance_m.astype(float)})
    inside = [d for d in grid if scenario.near_m - _EPS <= d <= scenario.far_m + _EPS]
    points = sorted({round(d, 9) for d in [scenario.near_m, *inside, scenario.far_m]})
    return points


@dataclass
class _Check:
    """One backend against one scenario, before the cost order decides between those that pass."""

    points: tuple[Point, ...]
    worst: Point
    shortfall: float
    worst_far: float
    holds_to: float | None  # the last distance of the unbroken run from the near end that meets TAR
    failures: list[str]
    tar_fails: bool
    other_fails: bool  # FAR or budget (degenerate is kept apart)


def _read_points(curves: Mapping[str, _Curve], scenario: Scenario, distances: Sequence[float], iod: float,
                 model_px: float) -> tuple[dict[str, list[Point]], list[float], list[float]]:
    """Every backend's reading at each distance a scenario wants; a distance is evaluated
    only when every backend can be read there, so all are judged on the same points."""
    readings: dict[str, list[Point]] = {b: [] for b in curves}
    evaluated: list[float] = []
    uncovered: list[float] = []
    for d in distances:
        px = scenario.camera.face_px(d, iod)
        values = {b: c.at(d, px, model_px) for b, c in curves.items()}
        if any(v is None for v in values.values()):
            uncovered.append(d)
            continue
        evaluated.append(d)
        for b, v in values.items():
            assert v is not None
            readings[b].append(v)
    return readings, evaluated, uncovered


def _check(points: Sequence[Point], scenario: Scenario, far_limit: float, cost: Mapping[str, Any],
           degenerate: str | None, show_px: bool) -> _Check:
    # Worst point: the lowest TAR; among equals the farthest (the harder distance).
    worst = min(points, key=lambda p: (p.tar, -p.distance_m))
    failures: list[str] = []
    if degenerate:
        failures.append(f"degenerate: {degenerate}")
    failing = [p for p in points if p.tar < scenario.required_tar - _EPS]
    if failing:
        value, diff = _rate_vs(worst.tar, scenario.required_tar)
        px = f" ({worst.face_px:.0f} px)" if show_px else ""
        text = f"TAR {value} at {_m(worst.distance_m)} m{px} < {scenario.required_tar:g} ({diff})"
        others = [p for p in failing if p is not worst]
        if others:
            text += f", also fails at {', '.join(_m(p.distance_m) for p in others)} m"
        failures.append(text)
    n_tar = len(failures)
    fars = [p for p in points if math.isfinite(p.far)]
    over_far = [p for p in fars if p.far > far_limit * (1 + _EPS)]
    if over_far:
        p = max(over_far, key=lambda p: (p.far, -p.distance_m))
        more = "" if len(over_far) == 1 else f" (and {len(over_far) - 1} more distance(s))"
        failures.append(f"FAR {_sig_vs(p.far, far_limit)} > {far_limit:g} at {_m(p.distance_m)} m{more}")
    basis = f" ({cost['basis']})" if cost["basis"] else ""
    limit = scenario.max_latency_vs_fp32
    if limit is not None and math.isfinite(cost["ratio"]) and cost["ratio"] > limit + _EPS:
        failures.append(f"over budget: {cost['ratio']:.2f}x fp32{basis} > {limit:g}x")
    if scenario.max_latency_ms is not None:
        if not math.isfinite(cost["device_ms"]):
            failures.append(f"no device latency to check the {scenario.max_latency_ms:g} ms budget "
                            "(sweep with --device-profile, or recommend --device-profile)")
        elif cost["device_ms"] > scenario.max_latency_ms + _EPS:
            failures.append(f"over budget: {cost['device_ms']:.3g} ms on device > {scenario.max_latency_ms:g} ms")
    holds_to = None
    for p in points:
        if p.tar < scenario.required_tar - _EPS:
            break
        holds_to = p.distance_m
    return _Check(points=tuple(points), worst=worst, shortfall=scenario.required_tar - worst.tar,
                  worst_far=max((p.far for p in fars), default=math.nan), holds_to=holds_to,
                  failures=failures, tar_fails=bool(failing), other_fails=len(failures) > n_tar)


def evaluate_scenario(results: Mapping[str, Any], scenario: Scenario,
                      latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE) -> ScenarioVerdict:
    """The verdict on every backend of a results table (load_results' dict: sweep, cliff,
    cost, run, and optionally search) for one scenario. Pure. Raises NotCoveredError when the
    sweep reaches no distance of the scenario."""
    # The run's protocol: verification's TAR/FAR, or identification's TPIR/FPIR (load_results' "rates").
    sweep: pd.DataFrame = results.get("rates", results["sweep"])
    run: Mapping[str, Any] = results.get("run") or {}
    folder = f"{results['path']}/" if results.get("path") else ""
    target_far, iod, model_px = _run_config(run, f"{folder}run.json")
    run_cam = _run_camera(run, f"{folder}run.json")
    curves = _curves(sweep, f"{folder}sweep.csv")
    backends = list(curves)
    far_limit = scenario.max_far_vs_target * target_far

    same_camera = math.isclose(scenario.camera.focal, run_cam.focal, rel_tol=1e-6)
    if same_camera:
        tar_basis = f"sweep rows (scenario camera {scenario.camera.name} = run's {run_cam.name})"
    else:
        tar_basis = (f"face px: scenario camera {scenario.camera.name} (focal {scenario.camera.focal:.0f} px) "
                     f"read on the run's {run_cam.name} (focal {run_cam.focal:.0f} px), log-px interpolation")
    readings, evaluated, uncovered = _read_points(curves, scenario, _evaluation_distances(sweep, scenario),
                                                  iod, model_px)
    span = (f"the sweep spans {math.exp(min(c.log_px[0] for c in curves.values())):.0f}-"
            f"{math.exp(max(c.log_px[-1] for c in curves.values())):.0f} px faces")
    if not evaluated:
        raise NotCoveredError(
            f"scenario '{scenario.name}' ({_m(scenario.near_m)}-{_m(scenario.far_m)} m on {scenario.camera.name}: "
            f"{scenario.camera.face_px(scenario.far_m, iod):.0f}-{scenario.camera.face_px(scenario.near_m, iod):.0f} px) "
            f"lies outside the sweep ({span}); sweep those distances first")
    coverage = ""
    if uncovered:
        coverage = (f"evaluated {_m(evaluated[0])}-{_m(evaluated[-1])} m only: "
                    f"{', '.join(_m(d) for d in uncovered)} m not covered ({span})")

    costs = _cost_rows(results.get("cost"), backends)
    degenerate = _degenerate(results.get("cliff"))
    checked = {b: _check(readings[b], scenario, far_limit, costs[b], degenerate.get(b), not same_camera)
               for b in backends}

    meeting = [b for b in backends if not checked[b].failures]
    ranking = _rank(meeting, costs, latency_tolerance)
    order, cost_basis = ranking.order, ranking.basis
    recommended = order[0] if order else None
    closest: str | None = None
    if recommended is None:
        # Closest: smallest worst TAR shortfall, among healthy backends within FAR and budget
        # when there are any (a suggestion should be deployable), else among all healthy ones.
        healthy = [b for b in backends if b not in degenerate]
        pool = [b for b in healthy if not checked[b].other_fails] or healthy
        if pool:
            pool_order, cost_basis = cost_order(pool, costs, latency_tolerance)
            ranks = {b: i for i, b in enumerate(pool_order)}
            closest = min(pool, key=lambda b: (max(checked[b].shortfall, 0.0), ranks[b]))

    def make(b: str, verdict: str, reason: str) -> BackendVerdict:
        ch, c = checked[b], costs[b]
        return BackendVerdict(
            backend=b, verdict=verdict, reason=reason, worst_tar=ch.worst.tar,
            worst_distance_m=ch.worst.distance_m, shortfall=ch.shortfall, worst_far=ch.worst_far,
            latency_vs_fp32=c["ratio"], latency_basis=c["basis"], file_bytes=c["file_bytes"],
            failures=tuple(ch.failures), closest=b == closest, points=ch.points)

    verdicts: list[BackendVerdict] = []
    if recommended is not None:
        ch, c = checked[recommended], costs[recommended]
        lat = (f"{c['ratio']:.2f}x fp32" + (f" ({c['basis']})" if c["basis"] else "")
               if math.isfinite(c["ratio"]) else "latency unknown")
        text = (f"cheapest that meets: worst TAR {ch.worst.tar:.3f} at {_m(ch.worst.distance_m)} m "
                f"(>= {scenario.required_tar:g}), max FAR {ch.worst_far:.2g} (<= {far_limit:g}), "
                f"{lat}, {_mb(c['file_bytes'])}")
        if coverage:
            text += f" [{coverage.split(':')[0]}]"
        verdicts.append(make(recommended, RECOMMENDED, text))
        for b in order[1:]:
            verdicts.append(make(b, COSTLIER, _costlier_reason(b, ranking, costs)))
    # Rejected: the closest first, then healthy before degenerate, within FAR and budget
    # before not, smaller shortfall first.
    rejected = sorted((b for b in backends if checked[b].failures), key=lambda b: (
        b != closest, b in degenerate, checked[b].other_fails, max(checked[b].shortfall, 0.0), b))
    for b in rejected:
        reason = "; ".join(checked[b].failures)
        if b == closest:
            holds = checked[b].holds_to
            reach = f"meets TAR up to {_m(holds)} m" if holds is not None else "meets TAR nowhere in range"
            reason = f"closest ({reach}): {reason}"
        verdicts.append(make(b, REJECTED, reason))

    notes: list[str] = [coverage] if coverage else []
    no_latency = [b for b in backends if not math.isfinite(costs[b]["ratio"])]
    if scenario.max_latency_vs_fp32 is not None and no_latency:
        notes.append(f"no latency_vs_fp32 for {', '.join(no_latency)}: budget not checked for "
                     f"{'it' if len(no_latency) == 1 else 'them'}")
    recipe = _recipe(results.get("search"))
    if recommended is not None:
        summary = f"{scenario.name}: {recommended} - {verdicts[0].reason}"
    else:
        summary, more = _no_winner(scenario, closest, checked, degenerate, verdicts, recipe)
        notes.extend(more)
    close = _close_call(scenario, recommended or closest, checked, degenerate)
    if close:
        notes.append(close)
    return ScenarioVerdict(
        scenario=scenario, recommended=recommended, closest=closest, backends=tuple(verdicts), summary=summary,
        tar_basis=tar_basis, evaluated_m=tuple(evaluated), coverage=coverage, cost_basis=cost_basis,
        far_limit=far_limit, notes=tuple(notes), recipe=recipe if recommended is None else None)


def _no_winner(scenario: Scenario, closest: str | None, checked: Mapping[str, _Check],
               degenerate: Mapping[str, str], verdicts: Sequence[BackendVerdict],
               recipe: str | None) -> tuple[str, list[str]]:
    """The summary line and notes when no backend qualifies."""
    head = f"{scenario.name}: no backend meets {scenario.requirement().split('; camera')[0]}"
    if closest is not None:
        ch = checked[closest]
        reach = f"; meets TAR up to {_m(ch.holds_to)} m" if ch.holds_to is not None else ""
        summary = f"{head}; closest: {closest} ({'; '.join(ch.failures)}{reach})"
    else:
        summary = f"{head}; every backend is degenerate"
    notes: list[str] = []
    fp32 = checked.get("fp32")
    if fp32 is not None and fp32.tar_fails and "fp32" not in degenerate:
        notes.append(f"fp32 fails too (TAR {fp32.worst.tar:.2f} at {_m(fp32.worst.distance_m)} m): the limit is "
                     "the camera's resolution at this range, not quantization; a longer lens or more pixels "
                     "helps, another backend does not")
    for b, ch in checked.items():
        if b not in degenerate and not ch.tar_fails and ch.other_fails:
            notes.append(f"{b} meets TAR but fails: " + "; ".join(ch.failures))
    if recipe:
        if recipe in checked:
            v = next(v for v in verdicts if v.backend == recipe)
            notes.append(f"diagnostics' mixed-precision recipe {recipe} ({SEARCH_JSON}) was swept: {v.reason}")
        else:
            notes.append(f"diagnostics found a mixed-precision recipe ({SEARCH_JSON}): {recipe}; sweep it "
                         f"(facequant sweep --backends fp32,{recipe}) and run recommend again")
    return summary, notes


def _close_call(scenario: Scenario, chosen: str | None, checked: Mapping[str, _Check],
                degenerate: Mapping[str, str]) -> str:
    """A note when the required TAR lies inside the 95 % interval of the chosen backend's worst
    point, or of a backend rejected on TAR alone: the sweep's photos cannot separate them."""
    def straddles(b: str) -> bool:
        w = checked[b].worst
        return w.tar_ci_low <= scenario.required_tar <= w.tar_ci_high

    if chosen is None or not straddles(chosen):
        return ""
    w = checked[chosen].worst
    rivals = [b for b, ch in checked.items() if b != chosen and b not in degenerate and ch.tar_fails
              and not ch.other_fails and straddles(b)]
    text = (f"not resolved by these photos: {chosen}'s worst TAR {w.tar:.3f} at {_m(w.distance_m)} m has a "
            f"95 % interval {w.tar_ci_low:.3f}-{w.tar_ci_high:.3f} that contains the required "
            f"{scenario.required_tar:g}")
    if rivals:
        text += f"; so do those of {', '.join(rivals)}, rejected on TAR alone: the choice between them is noise"
    return text


def _recipe(search: object) -> str | None:
    if not isinstance(search, Mapping) or not search.get("recipe"):
        return None
    recipe = search["recipe"]
    return recipe if isinstance(recipe, str) else json.dumps(recipe, sort_keys=True)


# ---------------------------------------------------------------- many scenarios, files


def _verdict_frame(verdicts: Iterable[ScenarioVerdict]) -> pd.DataFrame:
    rows = []
    for sv in verdicts:
        for v in sv.backends:
            rows.append({
                "scenario": sv.scenario.name, "backend": v.backend, "verdict": v.verdict, "reason": v.reason,
                "worst_tar": v.worst_tar, "worst_distance_m": v.worst_distance_m, "shortfall": v.shortfall,
                "latency_vs_fp32": v.latency_vs_fp32, "file_bytes": v.file_bytes, "closest": v.closest,
                "required_tar": sv.scenario.required_tar,
                "worst_tar_ci_low": v.points_worst.tar_ci_low, "worst_tar_ci_high": v.points_worst.tar_ci_high,
                "worst_far": v.worst_far, "far_limit": sv.far_limit,
                "latency_basis": v.latency_basis, "evaluated_m": ";".join(_m(d) for d in sv.evaluated_m),
                "tar_basis": sv.tar_basis})
    table = pd.DataFrame(rows, columns=[*RECOMMEND_COLUMNS, *RECOMMEND_EXTRA_COLUMNS])
    if len(table) and table.file_bytes.notna().all():
        table["file_bytes"] = table.file_bytes.astype(np.int64)
    table["closest"] = table["closest"].astype(bool)
    return table


def recommend(results: Mapping[str, Any], scenarios: Sequence[Scenario] | None = None,
              latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE) -> Recommendation:
    """Verdicts for several scenarios (default: every file in configs/scenarios). Pure apart
    from reading the default scenarios. A scenario the sweep does not reach at all is
    listed in ``skipped``; when none is reachable, NotCoveredError."""
    chosen = list(scenarios) if scenarios is not None else list(load_scenarios().values())
    # Near to far (kiosk, corridor, far field) reads better than alphabetical.
    chosen.sort(key=lambda s: (s.near_m, s.far_m, s.name))
    verdicts: dict[str, ScenarioVerdict] = {}
    skipped: dict[str, str] = {}
    for s in chosen:
        try:
            verdicts[s.name] = evaluate_scenario(results, s, latency_tolerance)
        except NotCoveredError as exc:
            skipped[s.name] = str(exc)
    if not verdicts:
        raise NotCoveredError(next(iter(skipped.values())) if len(skipped) == 1 else
                              "no scenario lies within the sweep: " + "; ".join(skipped.values()))
    return Recommendation(table=_verdict_frame(verdicts.values()), verdicts=verdicts, skipped=skipped)


def load_search(out: str | Path) -> dict[str, Any] | None:
    """A precision search's search.json for a results directory, else None (it is optional:
    `facequant search-precision` writes it, a sweep does not). Looked for in the directory,
    then beside it when the directory is a search's own `final/` results."""
    out = Path(out)
    candidates = [out / SEARCH_JSON] + ([out.parent / SEARCH_JSON] if out.name == "final" else [])
    for path in candidates:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None


def with_device_profile(results: Mapping[str, Any], profile_path: str | Path) -> dict[str, Any]:
    """A copy of ``results`` whose cost table takes device latencies from a device profile
    (configs/devices/*.yaml) measured after the sweep; latency_vs_fp32 is recomputed."""
    from facequant.backends.cost import (  # onnxruntime: only when asked
        cost_table,
        load_device_profile,
    )

    profile = load_device_profile(profile_path)
    cost = results.get("cost")
    if cost is None:
        raise FacequantError(f"{profile_path}: the results have no cost.csv to apply a device profile to")
    latency = profile["latency_ms"]
    assert isinstance(latency, dict)
    rows = []
    for row in cost.to_dict("records"):
        if row["backend"] in latency:
            row["device_latency_ms"] = latency[row["backend"]]
            row["latency_source"] = profile["device"]
        rows.append(row)
    return {**results, "cost": cost_table(rows)}


def write_recommendation(rec: Recommendation, out: str | Path) -> Path:
    """recommend.csv into the results directory, atomically (the only file written; it is
    derived, so rewriting it is safe)."""
    target = Path(out) / RECOMMEND_CSV
    try:
        fd, tmp = tempfile.mkstemp(prefix=".recommend.", suffix=".csv", dir=target.parent)
        with os.fdopen(fd, "w", newline="") as fh:
            rec.table.to_csv(fh, index=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise FacequantError(f"{target}: cannot write ({exc.strerror or exc})") from exc
    return target


def recommend_dir(results_dir: str | Path, scenario: str | Sequence[str] | None = None,
                  scenarios_directory: str | Path | None = None, device_profile: str | Path | None = None,
                  latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE, write: bool = True) -> Recommendation:
    """Read a results directory, evaluate the scenarios (all, or the named ones: names or
    YAML paths), and write recommend.csv into it (unless ``write`` is False)."""
    from facequant.results.directory import load_results  # pulls in the sweep machinery; only here

    require("latency_tolerance", latency_tolerance, Range(0.0, 1.0))
    out = Path(results_dir)
    if not out.is_dir():
        raise FacequantError(f"{out}: no such results directory")
    names = [scenario] if isinstance(scenario, str) else list(scenario or [])
    chosen = ([get_scenario(n, scenarios_directory) for n in names] if names
              else list(load_scenarios(scenarios_directory).values()))
    results: dict[str, Any] = dict(load_results(out))
    results["search"] = load_search(out)
    if device_profile is not None:
        results = with_device_profile(results, device_profile)
    if names:
        # Asked for by name: a scenario the sweep cannot answer is an error, not a skip.
        verdicts = {s.name: evaluate_scenario(results, s, latency_tolerance) for s in chosen}
        rec = Recommendation(table=_verdict_frame(verdicts.values()), verdicts=verdicts)
    else:
        rec = recommend(results, chosen, latency_tolerance)
    if write:
        write_recommendation(rec, out)
    return rec


# ---------------------------------------------------------------- rendering (no printing)


_STYLE = {RECOMMENDED: "bold green", COSTLIER: "green", REJECTED: "red"}


def render(rec: Recommendation) -> list[RenderableType]:
    """rich renderables (a table and its notes per scenario) for the CLI or a TUI to print."""
    from rich.table import Table
    from rich.text import Text

    out: list[RenderableType] = []
    for sv in rec.verdicts.values():
        s = sv.scenario
        table = Table(title=f"{s.name}: {s.requirement()}", title_justify="left", expand=False)
        table.add_column("backend", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        table.add_column("worst TAR", justify="right", no_wrap=True)
        table.add_column("vs fp32", justify="right", no_wrap=True)
        table.add_column("why")
        for v in sv.backends:
            verdict = "closest" if v.closest else v.verdict
            lat = f"{v.latency_vs_fp32:.2f}x" if math.isfinite(v.latency_vs_fp32) else "-"
            table.add_row(v.backend, Text(verdict, style=_STYLE[v.verdict]),
                          f"{v.worst_tar:.3f} @{_m(v.worst_distance_m)}m", lat, v.reason)
        out.append(table)
        out.append(Text(sv.summary, style="bold green" if sv.recommended else "bold yellow"))
        for note in sv.notes:
            out.append(Text(f"  {note}", style="yellow"))
        out.append(Text(f"  TAR read from {sv.tar_basis}; cost order: {sv.cost_basis}", style="dim"))
    for name, why in rec.skipped.items():
        out.append(Text(f"{name}: not evaluated: {why}", style="yellow"))
    return out

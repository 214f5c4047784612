"""Deployment scenarios: one YAML file each (configs/scenarios/<name>.yaml), the file name is the
scenario's name; loading checks every key and names the file at fault."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from facequant import settings, yamlfiles
from facequant.analysis.recommend.wording import metres
from facequant.errors import FacequantError
from facequant.simulate.camera import CameraProfile, camera_from_spec

_SCENARIO_KEYS = ("description", "camera", "distance_m", "required_tar", "max_far_vs_target", "budget")
_REQUIRED_KEYS = ("camera", "distance_m", "required_tar")
_BUDGET_KEYS = ("max_latency_vs_fp32", "max_latency_ms")


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
        parts = [f"TAR >= {self.required_tar:g} at {metres(self.near_m)}-{metres(self.far_m)} m",
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
    f = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(f) and (f > low if low_open else f >= low) and f <= high):
        bound = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise FacequantError(f"{path}: {key} must be a number in {bound}, got {value!r}")
    return f


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
        raw = yamlfiles.safe_load(p.read_text())
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



"""Many scenarios over a results directory: recommend(), recommend_dir() and recommend.csv,
the only file it writes."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from facequant.analysis.recommend.evaluate import evaluate_scenario
from facequant.analysis.recommend.scenarios import Scenario, get_scenario, load_scenarios
from facequant.analysis.recommend.tables import LATENCY_CHOICES
from facequant.analysis.recommend.verdicts import (
    DEFAULT_LATENCY_TOLERANCE,
    RECOMMEND_CSV,
    SEARCH_JSON,
    NotCoveredError,
    Recommendation,
    ScenarioVerdict,
    verdict_frame,
)
from facequant.errors import FacequantError
from facequant.params import WHAT, param, validate
from facequant.ranges import FRACTION_RANGE, require


def _names(value: object) -> tuple[str, ...] | None:
    """--scenario: names (or YAML paths), comma-separated; None: every scenario."""
    names = [n.strip() for n in str(value or "").split(",") if n.strip()]
    return tuple(names) or None


@dataclass(frozen=True)
class RecommendConfig:
    """recommend: a results directory and the scenarios to judge it by (all of
    configs/scenarios, or names / YAML paths), with an optional device profile."""

    results: str = param(help="results directory of a sweep (required, here or in --config)", group=WHAT)
    scenarios: tuple[str, ...] | None = param(None, help="scenario name(s), comma-separated, or a scenario YAML path "
                                              "(default: every scenario)", group=WHAT, option="scenario",
                                              to_field=_names)
    scenarios_dir: str | None = param(None, help="folder of scenario YAML files (default configs/scenarios)",
                                      group=WHAT)
    device_profile: str | None = param(None, help="device latencies (configs/devices/*.yaml) to use instead of the "
                                       "sweep's CPU timing", group=WHAT)
    latency_tolerance: float = param(DEFAULT_LATENCY_TOLERANCE, help="CPU latencies within this fraction of each "
                                     "other are a tie, broken by file size; so are those within each other's spread "
                                     "across interleaved rounds", group=WHAT, range=FRACTION_RANGE)
    write: bool = True  # recommend.csv into the results directory (the TUI only views)
    # which latency orders the backends
    latency: str = param("auto", help="which latency orders the backends and checks the budget: cpu (this "
                         "machine's interleaved timing), device (the --device-profile's or the sweep's device "
                         "figures), off (file size, then 16-bit/float layers), auto: device when every backend has a "
                         "device figure, else cpu", group=WHAT, choices=LATENCY_CHOICES)

    def __post_init__(self) -> None:
        validate(self, "recommend")


def recommend(results: Mapping[str, Any], scenarios: Sequence[Scenario] | None = None,
              latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE, latency: str = "auto") -> Recommendation:
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
            verdicts[s.name] = evaluate_scenario(results, s, latency_tolerance, latency)
        except NotCoveredError as exc:
            skipped[s.name] = str(exc)
    if not verdicts:
        raise NotCoveredError(next(iter(skipped.values())) if len(skipped) == 1 else
                              "no scenario lies within the sweep: " + "; ".join(skipped.values()))
    return Recommendation(table=verdict_frame(verdicts.values()), verdicts=verdicts, skipped=skipped,
                          distances=_distances(results))


def _distances(results: Mapping[str, Any]) -> tuple[str, ...]:
    """cliff.csv's verdicts and distances with their intervals, as the sweep's summary says them."""
    from facequant.results.summary import distance_lines

    cliff = results.get("cliff")
    return tuple(distance_lines(cliff)) if isinstance(cliff, pd.DataFrame) and len(cliff) else ()


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


def recommendation_target(rec: Recommendation, out: str | Path, chosen: bool) -> tuple[Path, str]:
    """Where recommend writes: recommend.csv, unless the scenarios were chosen by name and
    recommend.csv already holds others (every scenario, from an earlier run): then
    recommend-<names>.csv beside it, so one scenario's answer never silently replaces the
    full table (the report and the TUI read recommend.csv). (path, why there; "" for recommend.csv)."""
    target = Path(out) / RECOMMEND_CSV
    if not chosen or not target.is_file():
        return target, ""
    try:
        held = [str(s) for s in dict.fromkeys(pd.read_csv(target)["scenario"].dropna())]
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        held = []  # not readable as ours: replacing it is replacing a derived file
    if not held or set(held) == set(rec.verdicts):
        return target, ""
    stem = "+".join(re.sub(r"[^A-Za-z0-9._-]", "_", name) for name in rec.verdicts)[:100]
    return (Path(out) / f"recommend-{stem}.csv",
            f"{RECOMMEND_CSV} keeps its {len(held)} scenario(s) ({', '.join(held)})")


def write_recommendation(rec: Recommendation, out: str | Path, target: Path | None = None) -> Path:
    """recommend.csv (or `target`) into the results directory, atomically (the only file
    written; it is derived, so rewriting it is safe)."""
    target = target or Path(out) / RECOMMEND_CSV
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
                  latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE, write: bool = True,
                  latency: str = "auto") -> Recommendation:
    """Read a results directory, evaluate the scenarios (all, or the named ones: names or
    YAML paths), and write recommend.csv into it (unless ``write`` is False). latency:
    LATENCY_CHOICES (auto: device figures when every backend has one, else the CPU's)."""
    from facequant.results.reading import load_results

    require("latency_tolerance", latency_tolerance, FRACTION_RANGE)
    if latency not in LATENCY_CHOICES:
        raise FacequantError(f"--latency must be one of {', '.join(LATENCY_CHOICES)}, got {latency!r}")
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
        verdicts = {s.name: evaluate_scenario(results, s, latency_tolerance, latency) for s in chosen}
        rec = Recommendation(table=verdict_frame(verdicts.values()), verdicts=verdicts, distances=_distances(results))
    else:
        rec = recommend(results, chosen, latency_tolerance, latency)
    if write:
        target, note = recommendation_target(rec, out, chosen=bool(names))
        rec = replace(rec, written=write_recommendation(rec, out, target), written_note=note)
    return rec



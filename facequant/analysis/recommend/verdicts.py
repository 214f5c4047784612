"""What a recommendation says: verdicts per backend and scenario, recommend.csv's columns, and
the recommend.csv table."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facequant.analysis.recommend.scenarios import Scenario
from facequant.analysis.recommend.wording import metres
from facequant.errors import FacequantError

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
#: Meets everything else, but its FAR (FPIR) is above the limit by a margin the impostors
#: (non-mated probes) cannot resolve: neither recommended nor rejected.
NOT_RESOLVED = "not-resolvable"

#: CPU latency ratios within this relative margin are a tie (see the module docstring).
DEFAULT_LATENCY_TOLERANCE = 0.10

RATE_EPS = 1e-9  # comparisons of rates against limits: exact equality meets the limit
LOG_PX_MATCH = 1e-6  # two face sizes this close (in log px) are the same sweep row
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
    far_ci_low: float = math.nan  # FAR's Wilson 95 % interval, and how many impostors it rests on
    far_ci_high: float = math.nan
    n_impostor: float = math.nan


@dataclass(frozen=True)
class BackendVerdict:
    backend: str
    verdict: str  # RECOMMENDED, COSTLIER, NOT_RESOLVED or REJECTED
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
    backends: tuple[BackendVerdict, ...]  # recommended, then costlier, then not resolvable, then rejected
    summary: str  # one line: the answer
    tar_basis: str  # how TAR was read (same camera, or through face px)
    evaluated_m: tuple[float, ...]
    coverage: str  # "" when the whole range was evaluated, else what was not
    cost_basis: str
    far_limit: float
    notes: tuple[str, ...] = ()
    recipe: str | None = None  # from search.json, mentioned when nothing qualifies
    words: tuple[str, str] = ("TAR", "FAR")  # the protocol's: ("TPIR", "FPIR") in identification

    def table(self) -> pd.DataFrame:
        return verdict_frame([self])


@dataclass(frozen=True)
class Recommendation:
    table: pd.DataFrame  # recommend.csv's rows
    verdicts: dict[str, ScenarioVerdict]
    #: Scenarios that could not be evaluated at all (no distance covered), with the reason.
    skipped: dict[str, str] = field(default_factory=dict)
    #: Each backend's verdict against fp32 and its distances with their intervals (cliff.csv).
    distances: tuple[str, ...] = ()
    #: Where its rows were written (None: not written), and why there when not recommend.csv.
    written: Path | None = None
    written_note: str = ""


class NotCoveredError(FacequantError):
    """No distance of the scenario lies within what the sweep measured."""


def verdict_frame(verdicts: Iterable[ScenarioVerdict]) -> pd.DataFrame:
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
                "latency_basis": v.latency_basis, "evaluated_m": ";".join(metres(d) for d in sv.evaluated_m),
                "tar_basis": sv.tar_basis})
    table = pd.DataFrame(rows, columns=[*RECOMMEND_COLUMNS, *RECOMMEND_EXTRA_COLUMNS])
    if len(table) and table.file_bytes.notna().all():
        table["file_bytes"] = table.file_bytes.astype(np.int64)
    table["closest"] = table["closest"].astype(bool)
    return table



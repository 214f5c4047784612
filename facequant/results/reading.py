"""Reading a results directory back: its CSVs and run.json checked as facequant writes them,
and the names tables show. Everything that reads results (the summary, recommend, the report,
compare, the TUI) reads through here; writing is facequant.results.directory's."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from facequant.errors import FacequantError
from facequant.evaluate.identification import as_rates_view
from facequant.results.pairs import is_multi_model, paired, pairs_view

SWEEP_CSV = "sweep.csv"
COST_CSV = "cost.csv"
CLIFF_CSV = "cliff.csv"
IDENTIFICATION_CSV = "identification.csv"
RUN_JSON = "run.json"


#: Columns a results directory's tables must have, and the columns that must hold numbers
#: when present (NaN and inf allowed: "not measured", "beyond the sweep").
_REQUIRED = {SWEEP_CSV: ("backend", "distance_m", "face_px", "tar", "far"), CLIFF_CSV: ("backend",),
             COST_CSV: ("backend",)}
_NUMERIC = ("distance_m", "face_px", "n_probes", "n_genuine", "n_impostor", "threshold", "tar", "tar_ci_low",
            "tar_ci_high", "far", "far_ci_low", "far_ci_high", "tar_close", "reliable_distance_m", "reliable_tar",
            "cliff_distance_m", "cliff_face_px", "cliff_prenorm", "cliff_prenorm_width", "distance_cost_m",
            "file_bytes", "cpu_latency_p50_ms", "cpu_latency_p95_ms", "device_latency_ms", "latency_vs_fp32",
            "worse_from_m", "reliable_distance_low_m", "reliable_distance_high_m", "cliff_distance_low_m",
            "cliff_distance_high_m", "distance_cost_low_m", "distance_cost_high_m", "cpu_latency_low_ms",
            "cpu_latency_high_ms", "cpu_vs_fp32", "cpu_vs_fp32_low", "cpu_vs_fp32_high", "latency_vs_fp32_low",
            "latency_vs_fp32_high")
#: What a run can write in each numeric column (NaN, "not measured", passes unless said):
#: rates in [0, 1], cosines in [-1, 1], distances and sizes positive and finite (a cliff beyond
#: the sweep is +inf), counts whole and >= 0, norms and costs >= 0. Anything else did not come
#: from facequant and is refused, not drawn or recommended on.
_RATES = ("tar", "tar_ci_low", "tar_ci_high", "far", "far_ci_low", "far_ci_high", "tar_close", "reliable_tar",
          "tar_far_end", "rank1", "rank1_ci_low", "rank1_ci_high", "tpir", "tpir_ci_low", "tpir_ci_high", "fpir",
          "fpir_ci_low", "fpir_ci_high")
_COSINES = ("threshold", "cos_to_fp32_mean", "genuine_cos_mean", "impostor_cos_mean", "mated_score_mean",
            "nonmated_top_mean")
_DISTANCES = ("distance_m", "face_px", "close_distance_m", "far_distance_m", "worse_from_m")
_REACH = ("cliff_distance_m", "cliff_face_px", "reliable_distance_m")  # +inf: beyond the sweep
#: An interval's ends: positive, or +-inf (beyond the sweep's farthest / before its closest distance).
_BOUNDS = ("reliable_distance_low_m", "reliable_distance_high_m", "cliff_distance_low_m", "cliff_distance_high_m")
_COUNTS = ("n_probes", "n_genuine", "n_impostor", "n_mated", "n_nonmated", "n_not_simulated", "n_genuine_fit",
           "layers_8bit", "layers_16bit", "layers_float", "latency_rounds")
_NON_NEGATIVE = ("prenorm_mean", "prenorm_p05", "prenorm_p50", "prenorm_p95", "cliff_prenorm", "cliff_prenorm_width",
                 "file_bytes", "cpu_latency_p50_ms", "cpu_latency_p95_ms", "device_latency_ms", "latency_vs_fp32",
                 "device_power_w", "cpu_latency_low_ms", "cpu_latency_high_ms", "cpu_vs_fp32", "cpu_vs_fp32_low",
                 "cpu_vs_fp32_high", "latency_vs_fp32_low", "latency_vs_fp32_high")
_SLACK = 1e-6
#: Columns that must hold a number in every row (a sweep row is at a distance).
_NEVER_MISSING = {SWEEP_CSV: ("distance_m", "face_px"), IDENTIFICATION_CSV: ("distance_m", "face_px")}


def _domain_problem(column: str, values: np.ndarray, required: bool) -> np.ndarray:
    """Per row: the value cannot have come from a run (see _RATES ...)."""
    missing = np.isnan(values)
    with np.errstate(invalid="ignore"):
        if column in _RATES:  # with float rounding's slack (a cosine of a vector with itself: 1.0000000000000002)
            bad = (values < -_SLACK) | (values > 1 + _SLACK) | np.isinf(values)
        elif column in _COSINES:
            bad = (values < -1 - _SLACK) | (values > 1 + _SLACK) | np.isinf(values)
        elif column in _DISTANCES:
            bad = (values <= 0) | np.isinf(values)
        elif column in _REACH:
            bad = (values <= 0) | np.isneginf(values)
        elif column in _BOUNDS:
            bad = (values <= 0) & np.isfinite(values)
        elif column in _COUNTS:
            bad = (values < 0) | np.isinf(values) | (~missing & (values != np.round(values)))
        elif column in _NON_NEGATIVE:
            bad = (values < 0) | np.isinf(values)
        else:
            bad = np.zeros(len(values), dtype=bool)
    return bad | (missing if required else False)


def _check_domains(path: Path, table: pd.DataFrame) -> None:
    required = _NEVER_MISSING.get(path.name, ())
    for column in table.columns:
        if column not in (*_RATES, *_COSINES, *_DISTANCES, *_REACH, *_BOUNDS, *_COUNTS, *_NON_NEGATIVE):
            continue
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = _domain_problem(str(column), values, column in required)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = ("a rate in [0, 1]" if column in _RATES else "a cosine in [-1, 1]" if column in _COSINES
                    else "a whole count >= 0" if column in _COUNTS else "a number >= 0" if column in _NON_NEGATIVE
                    else "a positive distance (inf: beyond the sweep)" if column in _REACH
                    else "a positive distance or +-inf (beyond the sweep)" if column in _BOUNDS
                    else "a positive, finite number")
            raise FacequantError(f"{path}:{row + 2}: column {column} holds {table[column].iloc[row]!r}, not {what}; "
                                 "not a value facequant writes")


def read_table(path: Path) -> pd.DataFrame:
    """One results CSV, checked: parseable, complete (a truncated file has no final newline),
    its required columns there and its numeric columns numbers. FacequantError naming the file."""
    try:
        raw = path.read_bytes()
        table = pd.read_csv(path, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FacequantError(f"{path}: cannot read as CSV ({_reason(exc)})") from exc
    if not raw.endswith((b"\n", b"\r")):
        raise FacequantError(f"{path}: truncated (the last line is incomplete)")
    missing = [c for c in _REQUIRED.get(path.name, ()) if c not in table.columns]
    if missing:
        raise FacequantError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in (c for c in _NUMERIC if c in table.columns):
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = numbers.isna() & table[column].notna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # the header is line 1
            raise FacequantError(f"{path}:{line}: column {column} holds {table[column][bad].iloc[0]!r}, not a number")
    _check_domains(path, table)
    return table


def _reason(exc: BaseException) -> str:
    """An exception as a short phrase: the OS's words, else its message's last line."""
    text = getattr(exc, "strerror", None) or str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def read_run_json(path: Path) -> dict[str, object]:
    """run.json as a mapping; FacequantError naming the file when it is not one."""
    try:
        run = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FacequantError(f"{path}: cannot read as JSON ({_reason(exc)})") from exc
    if not isinstance(run, dict):
        raise FacequantError(f"{path}: expected a JSON object, got a {type(run).__name__}")
    for key in ("config", "camera", "model"):
        if key in run and not isinstance(run[key], dict):
            raise FacequantError(f"{path}: {key} must be an object, got a {type(run[key]).__name__}")
    return run


def load_results(out: Path) -> dict[str, object]:
    """Read a results directory back (sweep, cliff, run) without recomputing anything."""
    out = Path(out)
    for name in (SWEEP_CSV, CLIFF_CSV, RUN_JSON):
        if not (out / name).is_file():
            raise FacequantError(f"{out}: not a facequant results directory (missing {name})")
    cliff = read_table(out / CLIFF_CSV)
    for column in ("degenerate", "verdict"):
        if column in cliff:  # CSV turns "" (healthy; fp32's verdict) into NaN; read it back as text
            cliff[column] = [v if isinstance(v, str) else "" for v in cliff[column]]
    sweep, run = read_table(out / SWEEP_CSV), read_run_json(out / RUN_JSON)
    ident = read_table(out / IDENTIFICATION_CSV) if (out / IDENTIFICATION_CSV).is_file() else None
    # What the run's protocol reads (cliff, recommendation, TUI colours): TAR, or TPIR.
    multi = is_multi_model(run)
    if multi:  # several models: every (model, backend) pair is a candidate of its own
        pairs = paired(sweep)  # never None for a table (`or` would ask a DataFrame for its truth value)
        sweep, ident = (pairs if pairs is not None else sweep), paired(ident)
    rates = as_rates_view(sweep, ident) if run.get("protocol") == "identification" and ident is not None else sweep
    loaded: dict[str, object] = {"sweep": sweep, "cliff": cliff, "identification": ident, "rates": rates,
              "cost": read_table(out / COST_CSV) if (out / COST_CSV).is_file() else None,
              "run": run, "path": out}
    return pairs_view(loaded) if multi else loaded


def backend_labels(backends: Iterable[object]) -> dict[str, str]:
    """How tables show each backend: `external:NAME=PATH` as NAME (the path stays in the CSVs
    and run.json; a long one would squeeze every other column), unless two share that NAME."""
    names = [str(b) for b in dict.fromkeys(backends)]
    short = {b: b[len("external:"):].partition("=")[0] if b.startswith("external:") and "=" in b else b for b in names}
    taken = Counter(short.values())
    return {b: s if taken[s] == 1 else b for b, s in short.items()}


def run_warnings(run: dict[str, object]) -> list[str]:
    """run.json's warnings (every warning of a run is there; an older run.json has none)."""
    warnings = run.get("warnings")
    return [str(w) for w in warnings] if isinstance(warnings, list) else []

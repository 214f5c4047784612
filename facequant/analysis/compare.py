"""Two results directories compared: did it get better?

Per backend present in both runs (matched by name: fp32 with fp32, int8-pt with int8-pt): its
reliable and cliff distance in each run with their intervals, the shift B - A with a 95 %
interval, the verdict against fp32 in each, and TAR per distance. People are the unit: the
shift's interval comes from resampling people, *paired* (the same resampled people in both
runs) when both runs scored the same genuine pairs of the same people at the same distances,
else independent resamples of each run's people, and said so. A shift whose interval holds
zero is no shift.

Runs that differ in what they measured (other photos or pairs, another camera, other
distances) are still compared, but the comparison says first that they are not comparable
and why; what differs in their provenance (model hash, calibration, runtime, versions) is
listed, since that is usually the question ("a new model", "another calibration set").
Pure apart from reading the two directories; writing is write_comparison's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facequant.errors import FacequantError
from facequant.evaluate import people
from facequant.evaluate.verdicts import VerdictSettings, bootstrap_distances
from facequant.results.reading import load_results, read_table, run_warnings

COMPARE_CSV = "compare.csv"
COMPARE_TAR_CSV = "compare_tar.csv"
COMPARE_JSON = "compare.json"
COMPARE_PLOT = "compare.png"
#: Config keys that decide what was measured: differing, the runs are not comparable.
MEASURED = ("data", "pairs", "genuine_mode", "protocol", "target_far", "target_fpir", "nonmated_fraction",
            "threshold", "gallery", "iod_mm", "degradation", "multi_face")
#: Config keys that say how the work was run, not what it measured: not even provenance.
IGNORED = ("out", "force", "quiet", "batch_size", "executor", "ray_address", "ray_timeout_s", "embedding_cache",
           "chunk_size")


@dataclass
class Comparison:
    a: Path
    b: Path
    table: pd.DataFrame  # per backend in both runs
    tar: pd.DataFrame  # per backend x distance: TAR in each run and the difference
    problems: list[str] = field(default_factory=list)  # why the runs are not comparable ([]: they are)
    provenance: list[tuple[str, str, str]] = field(default_factory=list)  # (what, in A, in B) that differ
    paired: bool = False
    pairing: str = ""  # how the intervals were made, in words
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    warnings_a: list[str] = field(default_factory=list)  # run.json warnings only one of the runs has
    warnings_b: list[str] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        return not self.problems


def _load(path: Path, which: str) -> dict[str, Any]:
    if not path.exists():
        raise FacequantError(f"{path}: no such results directory ({which})")
    if not path.is_dir():
        raise FacequantError(f"{path}: not a directory ({which} must be a results directory)")
    loaded = dict(load_results(path))
    loaded["probes"] = _probes(path / "probes.csv")
    return loaded


def _probes(path: Path) -> pd.DataFrame | None:
    """probes.csv, or None when absent or unreadable: the comparison then says its photos and
    pairing are unknown rather than failing over a file only pairing needs."""
    try:
        return read_table(path) if path.is_file() else None
    except FacequantError:
        return None


def _config(run: Mapping[str, Any]) -> dict[str, Any]:
    config = run.get("config")
    return dict(config) if isinstance(config, Mapping) else {}


def _photos(loaded: Mapping[str, Any]) -> set[tuple[str, str]] | None:
    probes = loaded.get("probes")
    if not isinstance(probes, pd.DataFrame) or not {"image", "identity"} <= set(probes.columns):
        return None
    return set(zip(probes["image"].astype(str), probes["identity"].astype(str), strict=True))


def _distances(loaded: Mapping[str, Any]) -> list[float]:
    return sorted({round(float(d), 6) for d in loaded["sweep"]["distance_m"]})


def comparability(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Why the two runs did not measure the same thing ([] when they did)."""
    problems = []
    photos_a, photos_b = _photos(a), _photos(b)
    if photos_a is not None and photos_b is not None and photos_a != photos_b:
        problems.append(f"other photos: {len(photos_a - photos_b)} only in A, {len(photos_b - photos_a)} only in B "
                        f"({len(photos_a & photos_b)} shared)")
    run_a, run_b = a["run"], b["run"]
    if (run_a.get("camera") or _config(run_a).get("camera")) != (run_b.get("camera") or _config(run_b).get("camera")):
        problems.append(f"other camera: {_camera(run_a)} vs {_camera(run_b)}")
    da, db = _distances(a), _distances(b)
    if da != db:
        problems.append(f"other distances: {', '.join(f'{d:g}' for d in da)} m vs {', '.join(f'{d:g}' for d in db)} m")
    pairs = _pair_counts(a), _pair_counts(b)
    shared = sorted(set(pairs[0]) & set(pairs[1]))
    differ = [d for d in shared if pairs[0][d] != pairs[1][d]]
    if differ:
        d = differ[0]
        problems.append(f"other pairs: {pairs[0][d]} vs {pairs[1][d]} genuine pairs at {d:g} m"
                        + (f" (and at {len(differ) - 1} more distance(s))" if len(differ) > 1 else ""))
    ca, cb = _config(run_a), _config(run_b)
    for key in MEASURED:
        if ca.get(key) != cb.get(key) and not (key == "data" and photos_a is not None and photos_a == photos_b):
            problems.append(f"other {key}: {ca.get(key)} vs {cb.get(key)}")
    if run_a.get("protocol", "verification") != run_b.get("protocol", "verification"):
        problems.append(f"other protocol: {run_a.get('protocol')} vs {run_b.get('protocol')}")
    return problems


def _pair_counts(loaded: Mapping[str, Any]) -> dict[float, int]:
    """Genuine pairs (mated probes) per distance of the reference backend, from the rates table."""
    rates = loaded["rates"]
    count = "n_genuine" if "n_genuine" in rates else "n_mated" if "n_mated" in rates else None
    if count is None or not len(rates):
        return {}
    names = rates["backend"].astype(str)
    first = rates[names == ("fp32" if (names == "fp32").any() else names.iloc[0])]
    return {round(float(d), 6): int(n) for d, n in zip(first["distance_m"], first[count], strict=True) if pd.notna(n)}


def _camera(run: Mapping[str, Any]) -> str:
    camera = run.get("camera") or _config(run).get("camera")
    return str(camera.get("name", camera)) if isinstance(camera, Mapping) else str(camera)


def _flat(value: object, prefix: str = "") -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(value, default=str) if isinstance(value, list | tuple) else str(value)}


def provenance_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(what, A, B) for every config value, version, model hash and runtime that differ."""
    run_a, run_b = a["run"], b["run"]
    wanted = {"config": (_config(run_a), _config(run_b)), "versions": (run_a.get("versions"), run_b.get("versions")),
              "model": (run_a.get("model"), run_b.get("model"))}
    out = []
    for head, (x, y) in wanted.items():
        fx, fy = _flat(x or {}, head), _flat(y or {}, head)
        for key in sorted(set(fx) | set(fy)):
            if key.split(".")[-1] in IGNORED:
                continue
            if fx.get(key) != fy.get(key):
                out.append((key, fx.get(key, "-"), fy.get(key, "-")))
    return out


def _counts(loaded: Mapping[str, Any], backends: list[str]) -> people.PersonCounts | None:
    """Per-person genuine outcomes of one run (its genuine.parquet at its threshold), or None
    when the run cannot give them (an old run, identification, several models)."""
    path = Path(loaded["path"]) / "genuine.parquet"
    probes = loaded.get("probes")
    run = loaded["run"]
    if (not path.is_file() or probes is None or run.get("protocol") == "identification"
            or run.get("multi_model") or not {"image", "identity"} <= set(probes.columns)):
        return None
    genuine = pd.read_parquet(path)
    genuine = genuine[genuine["backend"].astype(str).isin(backends)]
    person_of = dict(zip(probes["image"].astype(str), probes["identity"].astype(str), strict=False))
    threshold = float(loaded["rates"]["threshold"].iloc[0])
    try:
        return people.person_counts(people.outcomes(genuine, threshold), person_of, backends,
                                    _distances(loaded))
    except FacequantError:
        return None


def _difference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x - y for distances that may be +inf (beyond the sweep): both beyond is unknown (NaN)."""
    with np.errstate(invalid="ignore"):
        out = x - y
    return np.where(np.isinf(x) & np.isinf(y) & (x == y), np.nan, out)


def _shifts(a: Mapping[str, Any], b: Mapping[str, Any], shared: list[str], seed: int
            ) -> tuple[dict[str, dict[str, tuple[float, float]]], bool, str]:
    """Per backend, the 95 % interval of the reliable and cliff shift (B - A), whether paired,
    and how they were made."""
    backends = ["fp32", *[s for s in shared if s != "fp32"]] if "fp32" in shared else shared
    ca, cb = _counts(a, backends), _counts(b, backends)
    if ca is None or cb is None:
        return {}, False, ("no interval for the shifts: a run lacks genuine.parquet/probes.csv, is an "
                           "identification run or holds several models")
    settings = VerdictSettings(seed=seed)
    paired = (ca.people == cb.people and np.array_equal(ca.distances, cb.distances)
              and np.array_equal(ca.total, cb.total))
    da = bootstrap_distances(ca, settings)
    db = bootstrap_distances(cb, settings if paired else VerdictSettings(seed=seed + 1))
    how = (f"paired: the same {len(ca.people)} people resampled in both runs (same genuine pairs), "
           f"{settings.resamples} resamples" if paired else
           f"independent: each run's people resampled on their own ({len(ca.people)} and {len(cb.people)} people; "
           f"the runs do not share their genuine pairs), {settings.resamples} resamples")
    out = {}
    for name in shared:
        out[name] = {k: people.percentile_interval(_difference(db[name][k], da[name][k])) for k in ("reliable", "cliff")}
    return out, paired, how


def _verdict(row: pd.Series) -> str:
    flag = row.get("degenerate")
    if isinstance(flag, str) and flag.strip():
        return "degenerate"
    verdict = row.get("verdict")
    return verdict if isinstance(verdict, str) and verdict else ("reference" if row["backend"] == "fp32" else "-")


def _shift_words(point: float, low: float, high: float) -> str:
    """'no shift' when the interval holds zero, 'farther' / 'closer' when it does not, '' without one."""
    if math.isnan(low) or math.isnan(high):
        return ""
    if low <= 0.0 <= high:
        return "no shift"
    return "farther" if low > 0 else "closer"


def compare(a_dir: str | Path, b_dir: str | Path, seed: int = 0) -> Comparison:
    """The comparison of results directory B against A."""
    a_path, b_path = Path(a_dir), Path(b_dir)
    a, b = _load(a_path, "A"), _load(b_path, "B")
    names_a = [str(x) for x in a["cliff"]["backend"]]
    names_b = [str(x) for x in b["cliff"]["backend"]]
    shared = [n for n in names_a if n in names_b]
    if not shared:
        raise FacequantError(f"{b_path}: no backend in common with {a_path} ({', '.join(names_a)} vs "
                             f"{', '.join(names_b)})")
    intervals, paired, how = _shifts(a, b, shared, seed)
    rows = []
    for name in shared:
        ra = a["cliff"][a["cliff"]["backend"].astype(str) == name].iloc[0]
        rb = b["cliff"][b["cliff"]["backend"].astype(str) == name].iloc[0]
        row: dict[str, object] = {"backend": name, "verdict_a": _verdict(ra), "verdict_b": _verdict(rb)}
        row["verdict_changed"] = row["verdict_a"] != row["verdict_b"]
        for what in ("reliable", "cliff"):
            va, vb = float(ra[f"{what}_distance_m"]), float(rb[f"{what}_distance_m"])
            low, high = intervals.get(name, {}).get(what, (math.nan, math.nan))
            point = float(_difference(np.array([vb]), np.array([va]))[0])
            row.update({f"{what}_a_m": va, f"{what}_a_low_m": ra.get(f"{what}_distance_low_m", math.nan),
                        f"{what}_a_high_m": ra.get(f"{what}_distance_high_m", math.nan),
                        f"{what}_b_m": vb, f"{what}_b_low_m": rb.get(f"{what}_distance_low_m", math.nan),
                        f"{what}_b_high_m": rb.get(f"{what}_distance_high_m", math.nan),
                        f"{what}_shift_m": point, f"{what}_shift_low_m": low, f"{what}_shift_high_m": high,
                        f"{what}_shift": _shift_words(point, low, high)})
        row["paired"] = paired
        rows.append(row)
    warned_a, warned_b = run_warnings(a["run"]), run_warnings(b["run"])
    return Comparison(a_path, b_path, pd.DataFrame(rows), tar_table(a["rates"], b["rates"], shared),
                      comparability(a, b), provenance_differences(a, b), paired, how,
                      [n for n in names_a if n not in shared], [n for n in names_b if n not in shared],
                      [w for w in warned_a if w not in warned_b], [w for w in warned_b if w not in warned_a])


def tar_table(rates_a: pd.DataFrame, rates_b: pd.DataFrame, shared: list[str]) -> pd.DataFrame:
    """Per backend x distance (of either run): TAR with its interval in A and in B, and B - A."""
    keep = ["backend", "distance_m", "face_px", "tar", "tar_ci_low", "tar_ci_high", "far"]
    def part(rates: pd.DataFrame, tag: str) -> pd.DataFrame:
        frame = rates[rates["backend"].astype(str).isin(shared)][[c for c in keep if c in rates.columns]].copy()
        frame["backend"] = frame["backend"].astype(str)
        frame["distance_m"] = frame["distance_m"].astype(float).round(6)
        return frame.rename(columns={c: f"{c}_{tag}" for c in keep[2:]})
    merged = part(rates_a, "a").merge(part(rates_b, "b"), on=["backend", "distance_m"], how="outer")
    merged["tar_difference"] = merged["tar_b"] - merged["tar_a"]
    if {"far_a", "far_b"} <= set(merged.columns):
        merged["far_difference"] = merged["far_b"] - merged["far_a"]
    order = {n: i for i, n in enumerate(shared)}
    return merged.sort_values(["backend", "distance_m"], key=lambda s: s.map(order) if s.name == "backend" else s,
                              ignore_index=True)

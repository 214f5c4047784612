"""Several models in one run: each model's own results under models/<label>/, and beside them
the cross-model tables (the same tidy tables with the model column filled), models.csv (one
row per model x backend: the cliff table with what each model is) and cliff_by_model.png.

Every model sees the same photos, distances, camera and seeded degradations (the noise is
seeded per photo and face size, not per model); each sets its own threshold on its own fp32
close-range impostors, since cosine scales differ between models.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facequant.errors import FacequantError
from facequant.evaluate import metrics
from facequant.models.spec import format_channels
from facequant.names import ESCAPE, display
from facequant.results import directory, summary
from facequant.results.output import inputs_of, staged_output
from facequant.sweep.result import SweepResult
from facequant.values import as_float
from facequant.versions import versions

MODELS_DIR = "models"
MODELS_CSV = "models.csv"
MODELS_PLOT = "cliff_by_model.png"

#: models.csv: the cliff table's columns after these, which say what each model is.
MODEL_COLUMNS: tuple[str, ...] = ("model", "backend", "model_path", "embedding_dim", "input_px", "preprocessing")


def model_labels(models: Sequence[str]) -> list[str]:
    """A short, unique, folder-safe label per model: the file's stem (fr_feature, faceres);
    the parent folder's name joins it when two stems are equal, then a number."""
    def safe(text: str) -> str:
        return re.sub(r"[^\w.-]+", "_", display(text)).strip("._") or "model"

    paths = [Path(m) for m in models]
    labels = [safe(p.stem) for p in paths]
    count = Counter(labels)
    labels = [f"{safe(p.parent.name)}_{label}" if count[label] > 1 else label for p, label in zip(paths, labels, strict=True)]
    seen: Counter[str] = Counter()
    unique = []
    for label in labels:
        seen[label] += 1
        unique.append(label if seen[label] == 1 else f"{label}_{seen[label]}")
    return unique


@dataclass
class MultiModelResult:
    """One run of several models: each model's SweepResult and the cross-model tables."""

    results: list[SweepResult]
    labels: list[str]
    sweep: pd.DataFrame
    cliff: pd.DataFrame
    models: pd.DataFrame  # models.csv
    cost: pd.DataFrame | None
    identification: pd.DataFrame | None
    run: dict[str, Any] = field(default_factory=dict)
    recommendation: Any = None  # among (model, backend) pairs per scenario, once written
    not_covered: str = ""  # why there is no recommendation (no scenario within the sweep)


def _labelled(tables: Sequence[pd.DataFrame | None], labels: Sequence[str]) -> pd.DataFrame | None:
    present = [(t, label) for t, label in zip(tables, labels, strict=True) if t is not None]
    if not present:
        return None
    frames = []
    for table, label in present:
        frame = table.copy()
        if "model" in frame.columns:
            frame["model"] = label
        else:
            frame.insert(0, "model", label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _model_rows(result: SweepResult, label: str) -> pd.DataFrame:
    """models.csv rows of one model: its cliff table, with what the model is in front."""
    spec = result.spec
    chosen = result.run.get("preprocessing")
    how = chosen.get("chosen") if isinstance(chosen, dict) else None
    rows = result.cliff.copy()
    rows["model"] = label
    front = {"model_path": str(result.config.model), "embedding_dim": spec.embedding_dim,
             "input_px": min(spec.input_size), "preprocessing": str(how or f"{spec.channel_order} (x - {format_channels(spec.mean)}) / {format_channels(spec.std)}")}
    for i, (name, value) in enumerate(front.items()):
        rows.insert(2 + i, name, value)
    return rows


def combine(results: Sequence[SweepResult], labels: Sequence[str], record: dict[str, Any]) -> MultiModelResult:
    """The cross-model tables and run.json of per-model results (same order as `labels`)."""
    sweep = _labelled([r.sweep for r in results], labels)
    cliff = _labelled([r.cliff for r in results], labels)
    assert sweep is not None and cliff is not None
    models = pd.concat([_model_rows(r, label) for r, label in zip(results, labels, strict=True)], ignore_index=True)
    first = results[0]
    run: dict[str, Any] = {
        **record,
        "multi_model": True,
        "protocol": first.config.protocol,
        "models": [{"label": label, "path": str(r.config.model), "dir": f"{MODELS_DIR}/{label}",
                    "sha256": _entry(r.run, "model", "sha256"),
                    "embedding_dim": r.spec.embedding_dim, "input_size": list(r.spec.input_size),
                    "threshold": r.threshold, "preprocessing": _entry(r.run, "preprocessing", "chosen")}
                   for r, label in zip(results, labels, strict=True)],
        # The reference model's (the first listed): what the recommendation reads for FAR, camera and size.
        "model": first.run.get("model"),
        "camera": first.run.get("camera"),
        "distances_m": first.run.get("distances_m"),
        "dataset": first.run.get("dataset"),
        "warnings": [f"{label}: {w}" for r, label in zip(results, labels, strict=True)
                     for w in directory.run_warnings(r.run)],
    }
    return MultiModelResult(list(results), list(labels), sweep, cliff, models,
                            _labelled([r.cost for r in results], labels),
                            _labelled([r.identification for r in results], labels), run)


def multi_record(configs: Sequence[Any]) -> dict[str, Any]:
    """run.json's head for several models: the shared config with model = the list."""
    config = configs[0].to_dict()
    config["model"] = [c.model for c in configs]
    return {"command": "sweep", "config": config, "versions": versions()}


def write_multi(result: MultiModelResult, out: Path, force: bool = False) -> Path:
    """Everything into `out` atomically: the cross-model tables at the top, each model's
    complete results directory under models/<label>/ (readable on its own)."""
    out = Path(out)
    inputs = [i for r in result.results for i in inputs_of(r.config)]
    with staged_output(out, force, inputs) as staging:
        for r, label in zip(result.results, result.labels, strict=True):
            directory.write_into(r, staging / MODELS_DIR / label)
        result.sweep.to_csv(staging / directory.SWEEP_CSV, index=False, errors=ESCAPE)
        result.cliff.to_csv(staging / directory.CLIFF_CSV, index=False, errors=ESCAPE)
        result.models.to_csv(staging / MODELS_CSV, index=False, errors=ESCAPE)
        metrics.to_long(result.sweep).to_csv(staging / directory.RESULTS_CSV, index=False, errors=ESCAPE)
        if result.cost is not None:
            result.cost.to_csv(staging / directory.COST_CSV, index=False, errors=ESCAPE)
        if result.identification is not None:
            result.identification.to_csv(staging / directory.IDENTIFICATION_CSV, index=False, errors=ESCAPE)
        directory.write_run_json(result.run, staging / directory.RUN_JSON)
        plot_models(result.sweep, result.models, staging / MODELS_PLOT)
        directory.write_report_safely(staging)
    return out


def plot_models(sweep: pd.DataFrame, models: pd.DataFrame, path: Path) -> None:
    """Left: TAR vs distance, a colour per model, a line style per backend. Right: each
    pair's reliable distance (hatched: degenerate, its distances not a success)."""
    plt = directory.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    colours = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(sweep["model"]))}
    styles = {b: s for b, s in zip(dict.fromkeys(sweep["backend"]), ["-", "--", ":", "-."] * 8, strict=False)}
    for (model, backend), rows in sweep.groupby(["model", "backend"], sort=False):
        left.plot(rows.distance_m, rows.tar, marker="o", ms=3, color=colours[model], ls=styles[backend],
                  label=f"{model}/{backend}")
    left.set(xlabel="distance (m)", ylabel="TAR (each model at its own threshold)", ylim=(-0.02, 1.02),
             title="TAR vs distance per model and backend")
    left.grid(alpha=0.3)
    left.legend(fontsize="x-small", ncol=2)
    names = [f"{m}/{b}" for m, b in zip(models["model"], models["backend"], strict=True)]
    far_end = float(pd.to_numeric(sweep["distance_m"], errors="coerce").max())
    reach = pd.to_numeric(models["reliable_distance_m"], errors="coerce").to_numpy(float)
    reach = np.where(np.isinf(reach), far_end, np.nan_to_num(reach, nan=0.0))
    degenerate = [bool(d) if isinstance(d, str) else False for d in models.get("degenerate", [""] * len(models))]
    bars = right.barh(names, reach, color=[colours[m] for m in models["model"]])
    for bar, bad in zip(bars, degenerate, strict=True):
        if bad:
            bar.set_hatch("//")
            bar.set_alpha(0.4)
    right.invert_yaxis()
    right.set(xlabel="reliable to (m; hatched: degenerate)", title="Where each pair holds")
    right.tick_params(axis="y", labelsize="x-small")
    right.grid(alpha=0.3, axis="x")
    directory.save_figure(fig, path)


def _entry(run: dict[str, object], section: str, key: str) -> object:
    """run.json's section[key], None when the section is missing or not an object."""
    found = run.get(section)
    return found.get(key) if isinstance(found, dict) else None


def summary_rows(models: pd.DataFrame, cost: pd.DataFrame | None = None) -> list[tuple[str, ...]]:
    """(model, backend, dim/px, TAR close, reliable to, cliff at, CPU ms) per pair. The
    pre-norm cliff is left out: pre-norm scales differ between models, so it does not compare."""
    cpu: dict[tuple[str, str], float] = {}
    if cost is not None and {"model", "backend", "cpu_latency_p50_ms"} <= set(cost.columns):
        for c in cost.itertuples():
            cpu[(str(c.model), str(c.backend))] = as_float(c.cpu_latency_p50_ms)
    rows: list[tuple[str, ...]] = []
    for r in models.itertuples():
        flag = getattr(r, "degenerate", "")
        bad = bool(flag) if isinstance(flag, str) else False
        ms = cpu.get((str(r.model), str(r.backend)), float("nan"))
        rows.append((str(r.model), str(r.backend), f"{r.embedding_dim}/{r.input_px}", f"{r.tar_close:.3f}",
                     "DEGENERATE" if bad else summary.metres(r.reliable_distance_m),
                     "DEGENERATE" if bad else summary.metres(r.cliff_distance_m),
                     f"{ms:.1f}" if np.isfinite(ms) else "-"))
    return rows


def check_same_probes(configs: Sequence[Any]) -> None:
    """Every config of a multi-model run differs only in its model (same probes for all)."""
    base = {k: v for k, v in configs[0].to_dict().items() if k != "model"}
    for c in configs[1:]:
        other = {k: v for k, v in c.to_dict().items() if k != "model"}
        if other != base:
            raise FacequantError("several models: every model must run on the same settings")

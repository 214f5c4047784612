"""INT8 as deployed, measured: every runtime x post-training method on the three shared models,
and the answer to whether any method recovers hse-faceres, whose per-tensor INT8 collapses.

One sweep per model (fp32 reference, ONNX Runtime's int8-pt / int8-pc, NNCF with fast and full
bias correction and SmoothQuant on ONNX Runtime and on OpenVINO, OpenVINO f32 and bf16), each
backend's latency timed on its own runtime. Writes the tables, with the command, versions, CPU,
load and date, into docs/runtimes.md's measured block; the sweeps' results directories go under --out.

    python benchmarks/runtimes.py                       # all three models (~1 h on 2 busy cores)
    python benchmarks/runtimes.py --models faceplugin-fr --doc /tmp/runtimes.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from docs_table import replace_block

from facequant import settings
from facequant.backends.cpu import cpu_record, has_bf16
from facequant.evaluate.paired import pooled_tar_gain
from facequant.results.directory import write_results
from facequant.sweep.config import SweepConfig
from facequant.sweep.engine import SweepResult, run_sweep, versions

MODELS = {"faceplugin-fr": "faceplugin-fr/fr_feature.onnx", "human-mobileface": "human-mobileface/mobileface.onnx",
          "hse-faceres": "hse-faceres/faceres.onnx"}
SQ = "0.5"  # SmoothQuant alpha (NNCF's default for MatMul is 0.95; Conv has none: it is off for CNNs)
BACKENDS = ["fp32", "int8-pt", "int8-pc", "nncf-int8", "nncf-int8+bc:full", f"nncf-int8+sq:{SQ}", "ov-fp32",
            "ov-bf16", "ov-int8", "ov-int8+bc:full", f"ov-int8+sq:{SQ}"]
METHOD = {"fp32": "float (reference)", "int8-pt": "ORT QDQ, per-tensor, MinMax", "int8-pc": "ORT QDQ, per-channel, MinMax",
          "ov-fp32": "float, f32", "ov-bf16": "float, bf16"}


def _method(name: str) -> str:
    if name in METHOD:
        return METHOD[name]
    parts = {p.partition(":")[0]: p.partition(":")[2] for p in name.split("+")[1:]}
    bc = {"full": "full bias correction", "none": "no bias correction"}.get(parts.get("bc", ""), "fast bias correction")
    return "NNCF PTQ, " + bc + (f", SmoothQuant {parts['sq']}" if "sq" in parts else "")


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _runtime(result: SweepResult, name: str) -> str:
    return str(result.run["backends"][name].get("runtime", "onnxruntime"))  # type: ignore[index]


def _verdict(result: SweepResult, name: str) -> str:
    """Paired TAR difference from fp32 over the distances where fp32 still matches at all but
    the grid is not yet at fp32's close-range plateau: from fp32's reliable distance to its
    cliff, with a 95 % identity-bootstrap interval. "no difference" when the interval holds 0."""
    if name == "fp32":
        return "-"
    cliff = result.cliff.set_index("backend")
    if str(cliff.loc[name].get("degenerate", "") or ""):  # it "matches" impostors too: no TAR to compare
        return "not comparable: degenerate"
    d = np.array(sorted(result.distances_m))
    lo, hi = float(cliff.loc["fp32", "reliable_distance_m"]), float(cliff.loc["fp32", "cliff_distance_m"])
    hi = d[-1] if not math.isfinite(hi) else hi
    lo = d[0] if not math.isfinite(lo) else lo
    contested = [float(x) for x in d if lo <= x <= hi]
    if not contested:
        return "n/a"
    gain, low, high = pooled_tar_gain(result.genuine, result.threshold, "fp32", name, contested, seed=result.config.seed)
    if not math.isfinite(gain):
        return "n/a"
    word = "no difference" if low <= 0 <= high else ("better" if low > 0 else "worse")
    where = f"{contested[0]:g}-{contested[-1]:g} m" if len(contested) > 1 else f"{contested[0]:g} m"
    return f"{gain:+.3f} ({low:+.3f} to {high:+.3f}) over {where}: {word}"


def model_rows(label: str, result: SweepResult) -> list[dict[str, object]]:
    cliff = result.cliff.set_index("backend")
    cost = result.cost.set_index("backend") if result.cost is not None else None
    sweep = result.sweep
    far_d = max(result.distances_m)
    rows = []
    for name in cliff.index:
        s = sweep[sweep.backend == name].set_index("distance_m")
        c = cost.loc[name] if cost is not None and name in cost.index else None
        rows.append({
            "model": label, "backend": name, "runtime": _runtime(result, name), "method": _method(name),
            "tar_close": cliff.loc[name, "tar_close"], "reliable_m": cliff.loc[name, "reliable_distance_m"],
            "cliff_m": cliff.loc[name, "cliff_distance_m"], "distance_cost_m": cliff.loc[name, "distance_cost_m"],
            "cos_fp32_close": s.cos_to_fp32_mean.iloc[0], "cos_fp32_far": s.loc[far_d, "cos_to_fp32_mean"],
            "degenerate": str(cliff.loc[name].get("degenerate", "") or ""),
            "vs_fp32": _verdict(result, name),
            "ms_b1": float(c.cpu_latency_p50_ms) if c is not None else math.nan,
            "ms_per_item": float(c.cpu_ms_per_item) if c is not None else math.nan,
            "x_fp32": float(c.latency_vs_fp32) if c is not None else math.nan})
    return rows


def _fmt(v: object, spec: str = ".2f", unit: str = "") -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "beyond sweep"
        return "-" if math.isnan(v) else f"{v:{spec}}{unit}"
    return str(v)


def markdown(table: pd.DataFrame, meta: dict[str, object]) -> str:
    out = ["Written by `benchmarks/runtimes.py`; every number below was measured by the run described here.", "",
           f"- command: `{meta['command']}`", f"- date: {meta['date']} ({meta['seconds']:.0f} s)",
           f"- versions: {meta['versions']}", f"- CPU: {meta['cpu']}",
           f"- load average (1 / 5 / 15 min) before: {meta['load_before']}, after: {meta['load_after']} on "
           f"{os.cpu_count()} cores shared with other work: latency figures are noisy, compare within a run only",
           f"- sweep: {meta['sweep']}", "",
           "Columns (see What the numbers mean): TAR at the closest distance; reliable = the last distance of the "
           "unbroken run with TAR >= 90 % of fp32's close-range TAR; cliff = where TAR first falls to 50 % of the "
           "backend's close-range TAR; distance cost = fp32's cliff minus this backend's; "
           "cosine to fp32's embedding of the same probe (mean) at the closest and farthest distance; vs fp32 = paired "
           "TAR difference over fp32's reliable-to-cliff stretch with a 95 % identity-bootstrap interval (\"no "
           "difference\" when it holds 0); latency = p50 ms at batch 1 and ms per face at the sweep's batch, each "
           "backend on its own runtime (x fp32 = batch-1 latency over ORT fp32's).", ""]
    for model, rows in table.groupby("model", sort=False):
        out += [f"## {model}", "", "| backend | runtime | method | TAR close | reliable | cliff | distance cost | "
                "cos fp32 close / far | vs fp32 (paired TAR) | ms b1 | ms/face batch | x fp32 |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows.itertuples():
            flag = f" (degenerate: {r.degenerate})" if r.degenerate else ""
            out.append(f"| {r.backend}{flag} | {r.runtime} | {r.method} | {_fmt(r.tar_close, '.3f')} | "
                       f"{_fmt(r.reliable_m, '.2f', ' m')} | {_fmt(r.cliff_m, '.2f', ' m')} | "
                       f"{_fmt(r.distance_cost_m, '+.2f', ' m')} | {_fmt(r.cos_fp32_close, '.4f')} / "
                       f"{_fmt(r.cos_fp32_far, '.4f')} | {r.vs_fp32} | {_fmt(r.ms_b1, '.1f')} | "
                       f"{_fmt(r.ms_per_item, '.1f')} | {_fmt(r.x_fp32, '.2f', 'x')} |")
        out.append("")
    out += [meta["answer"], ""]  # type: ignore[list-item]
    return "\n".join(str(x) for x in out)


def hse_answer(table: pd.DataFrame) -> str:
    """Whether any post-training method recovers hse-faceres, read off the measured rows."""
    rows = table[table.model == "hse-faceres"].set_index("backend")
    if rows.empty:
        return "hse-faceres was not measured in this run."
    ref = rows.loc["fp32"]
    lines = ["## Does any post-training method recover hse-faceres?", ""]
    for name in rows.index.drop("fp32"):
        r = rows.loc[name]
        lines.append(f"- {name} ({r.runtime}, {r.method}): TAR close {_fmt(r.tar_close, '.3f')} (fp32 "
                     f"{_fmt(ref.tar_close, '.3f')}), reliable {_fmt(r.reliable_m, '.2f', ' m')} (fp32 "
                     f"{_fmt(ref.reliable_m, '.2f', ' m')}), cosine to fp32 {_fmt(r.cos_fp32_close, '.3f')} close; "
                     f"vs fp32: {r.vs_fp32}" + (f"; degenerate: {r.degenerate}" if r.degenerate else ""))
    recovered = [n for n in rows.index.drop("fp32") if n.startswith(("nncf", "ov-int8"))
                 and not rows.loc[n, "degenerate"] and rows.loc[n, "reliable_m"] >= ref.reliable_m - 0.5
                 and rows.loc[n, "tar_close"] >= 0.95 * ref.tar_close]
    lines += ["", ("Recovered (no degenerate flag, close-range TAR within 5 % of fp32's and reliable distance within "
                   f"0.5 m of it): {', '.join(recovered)}." if recovered else
                   "No NNCF method recovers it by that test (close-range TAR within 5 % of fp32's and reliable "
                   "distance within 0.5 m, not degenerate).")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--out", default="runs/runtimes", help="results directories, one per model")
    p.add_argument("--doc", default="docs/runtimes.md")
    args = p.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b and (b != "ov-bf16" or has_bf16())]
    t0, load_before = time.time(), _load()
    rows: list[dict[str, object]] = []
    sweep_note = ""
    for label in args.models.split(","):
        model = settings.shared_dir() / "models" / MODELS[label]
        config = SweepConfig(model=str(model), data=str(settings.default_dataset_path()), backends=tuple(backends))
        sweep_note = (f"celebs13 ({config.camera} camera, FAR {config.target_far:g}, seed {config.seed}, "
                      f"{config.calibration_size} calibration photos at the closest distance, batch {config.batch_size})")
        print(f"{label}: sweeping {len(backends)} backends", file=sys.stderr, flush=True)
        result = run_sweep(config)
        write_results(result, Path(args.out) / label, force=True)
        rows += model_rows(label, result)
    table = pd.DataFrame(rows)
    table.to_csv(Path(args.out) / "runtimes.csv", index=False)
    v = versions()
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "seconds": time.time() - t0,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "versions": ", ".join(f"{k} {v[k]}" for k in ("facequant", "onnxruntime", "openvino", "nncf", "onnx",
                                                          "numpy", "opencv", "python") if k in v),
            "cpu": json.dumps(cpu_record({"openvino"})), "load_before": load_before,
            "load_after": _load(), "sweep": sweep_note, "answer": hse_answer(table)}
    page = Path(args.doc)
    page.write_text(replace_block(page.read_text(), "runtimes", "runtimes.py", markdown(table, meta)))
    print(f"written {args.doc} and {Path(args.out) / 'runtimes.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

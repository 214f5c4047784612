"""facequant's mixed-precision search and NNCF's accuracy control, re-measured side by side.

Runs `search-precision --method both --gallery fp32` on the shared model (facequant's greedy
16-bit search from int8-pt, NNCF's quantize_with_accuracy_control from nncf-int8 validated on
held-out people at fp32's reliable distance), and `--method accuracy-control` on hse-faceres
(whose per-tensor INT8 collapses), accuracy control again on the shared model with a tighter
max drop, and writes what was re-measured on seed + 1 into docs/accuracy-control.md's measured
block with the command, versions, CPU, load and date.

    python benchmarks/accuracy_control.py        # ~40 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shlex
import sys
import time
from pathlib import Path

from docs_table import replace_block

from facequant import settings
from facequant.analysis.accuracy_control import AccuracyControlSettings
from facequant.analysis.search import (
    SearchResult,
    SearchSettings,
    search_precision,
    side_by_side,
    write_search,
)
from facequant.backends.cpu import cpu_features
from facequant.sweep.config import SweepConfig
from facequant.versions import versions

#: label -> (model, method, accuracy control's max drop). The tight drop makes NNCF revert layers
#: where its default INT8 is already within 0.01 (and 0.002) of the float model's far-range cosine.
RUNS = {"faceplugin-fr": ("faceplugin-fr/fr_feature.onnx", "both", 0.01),
        "faceplugin-fr, max drop 0.0005": ("faceplugin-fr/fr_feature.onnx", "accuracy-control", 0.0005),
        "hse-faceres": ("hse-faceres/faceres.onnx", "accuracy-control", 0.01)}


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _f(v: object, spec: str, unit: str = " m") -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "beyond sweep" if math.isinf(v) else "-"
    return f"{v:{spec}}{unit}" if isinstance(v, int | float) else str(v)


def section(label: str, method: str, result: SearchResult) -> list[str]:
    ac = result.accuracy_control
    drop = f" --max-drop {ac.settings.max_drop:g}" if ac is not None else ""
    out = [f"## {label} (`--method {method} --gallery fp32{drop}`)", ""]
    if ac is not None:
        v = ac.validation
        out.append(f"NNCF accuracy control from `{ac.settings.base}` ({v['metric']} at {v['distance_m']:g} m on "
                   f"{len(v['identities'])} held-out people, {v['pairs']} genuine pairs, max drop "  # type: ignore[arg-type]
                   f"{ac.settings.max_drop:g}, {ac.seconds:.0f} s): float {ac.metric['float']:.4f}, default INT8 "
                   f"{ac.metric['int8_default']:.4f}, accuracy-controlled {ac.metric['int8_accuracy_control']:.4f}; "
                   f"kept in float: {', '.join(ac.layers) or 'nothing'}.")
    if method != "accuracy-control":
        out.append(f"facequant's search from `{result.settings.base}`: {len(result.layers)} layer(s) to 16 bit "
                   f"({', '.join(result.layers) or 'none'}), goal {'met' if result.goal_met else 'not met'} in the search.")
    out += ["", "Re-measured on seed + 1 (another calibration draw and noise), one sweep:", "",
            "| method | recipe | layers changed | reliable (base -> recipe; fp32) | cliff (base -> recipe) | "
            "gain per layer | paired TAR gain over its base (95 % CI) |", "|---|---|---|---|---|---|---|"]
    for r in side_by_side(result).itertuples():
        tar = ("-" if not math.isfinite(r.tar_gain_vs_base) else
               f"{r.tar_gain_vs_base:+.3f} ({r.tar_gain_ci_low:+.3f} to {r.tar_gain_ci_high:+.3f}) over {r.contested_m} m")
        out.append(f"| {r.method} | `{r.recipe}` | {r.layers_changed} to {r.changed_to} | "
                   f"{_f(r.base_reliable_distance_m, '.2f')} -> {_f(r.reliable_distance_m, '.2f')}; "
                   f"{_f(r.fp32_reliable_distance_m, '.2f')} | {_f(r.base_cliff_distance_m, '.2f')} -> "
                   f"{_f(r.cliff_distance_m, '.2f')} | {_f(r.gain_per_layer_m, '+.2f')} | {tar} |")
    return [*out, ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="|".join(RUNS), help="'|'-separated, from: " + " | ".join(RUNS))
    p.add_argument("--out", default="runs/accuracy-control")
    p.add_argument("--doc", default="docs/accuracy-control.md")
    args = p.parse_args(argv)
    t0, before = time.time(), _load()
    body: list[str] = []
    for label in args.runs.split("|"):
        path, method, max_drop = RUNS[label]
        config = SweepConfig(model=str(settings.shared_dir() / "models" / path),
                             data=str(settings.default_dataset_path()), gallery="fp32")
        print(f"{label}: search-precision --method {method}", file=sys.stderr, flush=True)
        result = search_precision(config, SearchSettings(base="int8-pt", method=method,
                                                         accuracy_control=AccuracyControlSettings(max_drop=max_drop)))
        write_search(result, Path(args.out) / label.replace(", ", "-").replace(" ", "-"), force=True)
        body += section(label, method, result)
    v = versions()
    head = ["Written by `benchmarks/accuracy_control.py`; every number below was measured by the run described here.",
            "", f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
            f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} ({time.time() - t0:.0f} s)",
            "- versions: " + ", ".join(f"{k} {v[k]}" for k in ("facequant", "onnxruntime", "openvino", "nncf", "opencv")
                                       if k in v),
            f"- CPU: {cpu_features()['model']}; load average before {before}, after {_load()} on {os.cpu_count()} "
            "shared cores",
            "- celebs13, 1080p 90-degree camera, FAR 1e-3, gallery enrolled by fp32 (probes quantized); facequant's "
            "search defaults (tolerance 0.25 m, budget 6, 8 candidates, refined grid); accuracy control from nncf-int8, "
            "cosine, at fp32's reliable distance (the max drop per section)", ""]
    page = Path(args.doc)
    page.write_text(replace_block(page.read_text(), "accuracy control", "accuracy_control.py", "\n".join(head + body)))
    print(f"written {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

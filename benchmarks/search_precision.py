"""The mixed-precision search on the shared model, measured: `facequant search-precision` with
the same-backend gallery (the default), with an fp32 gallery, and from int8-npu with an fp32
gallery; what each confirmed, chose and re-measured on another seed, written to
docs/diagnostics-and-search.md with the commands, versions, date and load.

    python benchmarks/search_precision.py          # prints the block (~25 min on 2 busy cores)
    python benchmarks/search_precision.py --write  # and replaces it in docs/diagnostics-and-search.md
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from docs_table import Measurement, add_arguments, cliff_cells, read_cliff

SEARCHES = {"same-backend gallery (the default)": "facequant search-precision",
            "fp32 gallery": "facequant search-precision --gallery fp32",
            "int8-npu, fp32 gallery": "facequant search-precision --base int8-npu --gallery fp32"}


def _gain(entry: dict[str, object], against: str) -> str:
    gain, ci = entry.get("tar_gain"), entry.get("ci95")
    if gain is None or not isinstance(ci, list):
        return f"none vs {against} (the recipe is the base)" if gain == 0.0 else "-"
    word = "no difference" if ci[0] <= 0 <= ci[1] else ("better" if ci[0] > 0 else "worse")
    return f"{float(gain):+.3f} vs {against} ({ci[0]:+.3f} to {ci[1]:+.3f}): {word}"  # type: ignore[arg-type]


def section(label: str, command: str, out: Path) -> list[str]:
    summary = json.loads((out / "search.json").read_text())
    candidates = pd.read_csv(out / "candidates.csv")
    final = out / "final"
    cliff = read_cliff(final)
    cost = pd.read_csv(final / "cost.csv").set_index("backend")
    sweep = pd.read_csv(final / "sweep.csv")
    close, far = float(sweep.distance_m.min()), float(sweep.distance_m.max())
    base = summary["settings"]["base"]
    contested = summary["recipe_vs_base"].get("distances_m") or []
    where = f"{min(contested):g}-{max(contested):g} m" if contested else "no contested distance"
    confirmed = ", ".join(f"{r.layer} {r.gain:+.3f}" for r in candidates.itertuples())
    lines = [f"**{label}** (`{command}`): recipe `{summary['recipe']}`, goal "
             f"{'met' if summary['goal_met_in_search'] else 'not met'} in the search; candidates confirmed "
             f"(far-range cosine to fp32 gained over {base}): {confirmed or 'none'}. Paired TAR gain of the recipe over "
             f"{where} (95 % interval, bootstrap over people): {_gain(summary['recipe_vs_base'], base)}; "
             f"{_gain(summary['recipe_vs_fp32'], 'fp32')}.", "",
             "| backend (re-measured on seed + 1) | reliable to [95 %] | cliff at [95 %] | verdict vs fp32 | "
             "16-bit layers | file | CPU vs fp32 |", "|---|---|---|---|---|---|---|"]
    for r in cliff.itertuples():
        cells = cliff_cells(r, close, far)
        c = cost.loc[r.backend] if r.backend in cost.index else None
        size = "-" if c is None else f"{c.file_bytes / 1e6:.2f} MB"
        ratio = "-" if c is None or not math.isfinite(c.cpu_vs_fp32) else f"{c.cpu_vs_fp32:.2f}x"
        layers = "-" if c is None else str(int(c.layers_16bit))
        lines.append(f"| {r.backend} | {cells['reliable']} | {cells['cliff']} | {cells['verdict']} | {layers} | "
                     f"{size} | {ratio} |")
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    m = Measurement("search_precision.py", list(SEARCHES.values()))
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, command) in enumerate(SEARCHES.items()):
            print(command, file=sys.stderr, flush=True)
            out = Path(tmp) / f"search{i}"
            subprocess.run([sys.executable, "-m", "facequant.cli", *shlex.split(command)[1:], "--out", str(out),
                            "--quiet"], check=True, stdout=subprocess.DEVNULL)
            lines += section(label, command, out)
    m.write("diagnostics-and-search.md", "search", lines, write=args.write,
            note="celebs13, the shared model, 1080p 90-degree camera, FAR 1e-3; the search's defaults (tolerance "
                 "0.25 m, budget 6, 8 candidates, refined grid); CPU ratios: batch-1 latency in interleaved rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The README's measured table of the shared assets: one `facequant sweep` on celebs13 with the
shared model, its verdicts against fp32 and every distance with its interval, written into the
README between its markers with the command, versions and date (never typed by hand).

    python benchmarks/default_sweep.py                 # prints the block
    python benchmarks/default_sweep.py --write-readme  # and replaces it in README.md
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from facequant.results.summary import difference, interval, metres

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = "fp32,int8-pt,int8-pc,a16w8,insightface"
START, END = "<!-- measured: default sweep (benchmarks/default_sweep.py) -->", "<!-- /measured -->"


def run(out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "facequant.cli", "sweep", "--backends", BACKENDS, "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return ["facequant", *cmd[3:-3]]


def table(out: Path) -> list[str]:
    cliff = pd.read_csv(out / "cliff.csv", keep_default_na=False, na_values=[""])
    sweep = pd.read_csv(out / "sweep.csv")
    cost = pd.read_csv(out / "cost.csv").set_index("backend")
    lines = ["| backend | verdict vs fp32 | close TAR | reliable to [95 %] | cliff at [95 %] | cliff cost [95 %] | "
             "pre-norm at cliff (width) | cos to fp32, 0.5 / 12 m | CPU vs fp32 [p10, p90] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in cliff.itertuples():
        close, far = float(r.close_distance_m), float(r.far_distance_m)
        rows = sweep[sweep.backend == r.backend].sort_values("distance_m")
        verdict = "reference" if r.backend == "fp32" else str(r.verdict)
        if verdict == "worse":
            verdict += f" from {r.worse_from_m:g} m"
        cost_cell = "-" if r.backend == "fp32" else (
            f"{difference(r.distance_cost_m, r.distance_cost_low_m, r.distance_cost_high_m)} "
            f"{interval(r.distance_cost_low_m, r.distance_cost_high_m, signed=True)}")
        c = cost.loc[r.backend]
        cpu = f"{c.latency_vs_fp32:.2f}x" + ("" if r.backend == "fp32" else
                                             f" [{c.latency_vs_fp32_low:.2f}, {c.latency_vs_fp32_high:.2f}]")
        prenorm = (f"{r.cliff_prenorm:.2f} ({r.cliff_prenorm_width:.2f})" if math.isfinite(r.cliff_prenorm)
                   else "-")
        lines.append(
            f"| {r.backend} | {verdict} | {r.tar_close:.3f} | {metres(r.reliable_distance_m, far)} "
            f"{interval(r.reliable_distance_low_m, r.reliable_distance_high_m, close, far)} | "
            f"{metres(r.cliff_distance_m, far)} {interval(r.cliff_distance_low_m, r.cliff_distance_high_m, close, far)}"
            f" | {cost_cell} | {prenorm} | {rows.cos_to_fp32_mean.iloc[0]:.3f} / {rows.cos_to_fp32_mean.iloc[-1]:.3f} "
            f"| {cpu} |")
    return lines


def block(out: Path, command: list[str]) -> str:
    run_json = json.loads((out / "run.json").read_text())
    v = run_json["versions"]
    record = run_json["verdicts"]
    head = (f"`{' '.join(command)}`, run {time.strftime('%Y-%m-%d')} (facequant {v['facequant']}, onnxruntime "
            f"{v['onnxruntime']}, OpenCV {v['opencv']}, numpy {v['numpy']}; threshold "
            f"{run_json['threshold']['value']:.3f} at FAR {run_json['config']['target_far']:g}; "
            f"{record['people']} people, {record['bootstrap']['resamples']} bootstrap resamples, seed "
            f"{record['bootstrap']['seed']}; CPU timing on a shared 2-core machine, a proxy):")
    return "\n".join([START, head, "", *table(out), END])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-readme", action="store_true", help="replace the block in README.md")
    parser.add_argument("--keep", type=Path, help="results directory to keep (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "sweep"
        text = block(out, run(out))
    print(text)
    if args.write_readme:
        readme = ROOT / "README.md"
        body = readme.read_text()
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        if not pattern.search(body):
            raise SystemExit(f"{readme}: no measured block between {START} and {END}")
        readme.write_text(pattern.sub(lambda _: text, body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

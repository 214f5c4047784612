"""The measured table of the shared assets: one `facequant sweep` on celebs13 with the shared
model, its verdicts against fp32 and every distance with its interval, written into
docs/numbers.md between its markers with the command, versions and date (never typed by hand).

    python benchmarks/default_sweep.py          # prints the block
    python benchmarks/default_sweep.py --write  # and replaces it in docs/numbers.md
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from docs_table import Measurement, add_arguments

from facequant.results.summary import difference, interval, metres

BACKENDS = "fp32,int8-pt,int8-pc,a16w8,insightface"
COMMAND = f"facequant sweep --backends {BACKENDS}"


def run(out: Path) -> None:
    cmd = [sys.executable, "-m", "facequant.cli", *COMMAND.split()[1:], "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


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


def facts(out: Path) -> str:
    """What the data behind the table can support: people, comparisons, the threshold's FAR resolution."""
    run_json = json.loads((out / "run.json").read_text())
    sweep = pd.read_csv(out / "sweep.csv")
    fp32 = sweep[sweep.backend == "fp32"].sort_values("distance_m")
    t, record = run_json["threshold"], run_json["verdicts"]
    return (f"celebs13: {int(fp32.n_probes.iloc[0])} photos, {record['people']} people; "
            f"{int(fp32.n_genuine.iloc[0])} genuine and {int(fp32.n_impostor.iloc[0])} impostor comparisons at "
            f"{fp32.distance_m.iloc[0]:g} m; threshold {t['value']:.3f} at FAR {run_json['config']['target_far']:g} "
            f"(resolvable down to {t['min_resolvable_far']:.2g} by {t['n_impostor']} impostors); "
            f"{record['bootstrap']['resamples']} bootstrap resamples, seed {record['bootstrap']['seed']}; "
            f"1080p 90-degree camera; CPU ratios are batch-1 latency in interleaved rounds, a proxy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--keep", type=Path, help="results directory to keep (default: a temporary one)")
    args = parser.parse_args()
    measurement = Measurement("default_sweep.py", [COMMAND])
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "sweep"
        run(out)
        measurement.write("numbers.md", "default sweep", table(out), write=args.write, note=facts(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

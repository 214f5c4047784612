"""The calibration studies on the shared model, measured: `facequant study` of calibration size,
distance mix and method for int8-pt on celebs13, written to docs/backends.md with the commands,
versions, date and load.

    python benchmarks/calibration_studies.py          # prints the block (~20 min on 2 busy cores)
    python benchmarks/calibration_studies.py --write  # and replaces it in docs/backends.md
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from docs_table import Measurement, add_arguments, fmt

STUDIES = {
    "size": "facequant study calibration-size --recipe int8-pt --sizes 4,16,64",
    "distance": "facequant study calibration-distance --recipe int8-pt --mixes '0.5;0.5,3;0.5,3,6;0.5,3,6,10'",
    "method": "facequant study calibration-method --recipe int8-pt",
}


def run(command: str, out: Path) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "facequant.cli", *shlex.split(command)[1:], "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return pd.read_csv(out / "study.csv", keep_default_na=False, na_values=[""])


def rows(study: str, table: pd.DataFrame) -> list[str]:
    out = []
    for r in table.itertuples():
        flag = f" (DEGENERATE: {r.degenerate})" if str(r.degenerate or "") not in ("", "nan") else ""
        out.append(f"| {study} | {r.variant}{flag} | {int(r.n_calibration_crops)} | {r.tar_close:.3f} | "
                   f"{fmt(r.reliable_distance_m, '.2f', ' m')} | {fmt(r.cliff_distance_m, '.2f', ' m')} | "
                   f"{fmt(r.distance_cost_m, '+.2f', ' m')} | {r.far_max:.4f} | {r.cos_to_fp32_far:.3f} |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    m = Measurement("calibration_studies.py", list(STUDIES.values()))
    lines = ["| study | variant | calibration crops | TAR close | reliable to | cliff at | distance cost | "
             "max FAR at any distance | cos to fp32, far end |", "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for study, command in STUDIES.items():
            print(f"{command}", file=sys.stderr, flush=True)
            lines += rows(study, run(command, Path(tmp) / study))
    m.write("backends.md", "calibration studies", lines, write=args.write,
            note="celebs13, the shared model, 1080p 90-degree camera, the 12 default distances, FAR 1e-3, seed 0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does the distance simulation match real captures? A resolution series of one celebs13 photo
(person01/img1.jpg shrunk to 1/3 ... 1/10 with area interpolation, as a farther camera would
see it), saved lossless (PNG) and as JPEG quality 85, checked with `facequant validate-sim`:
lossless, JPEG with the simulation unaware of the codec, and JPEG with `--jpeg 85`. Written to
docs/simulation.md with the commands, versions, date and load.

    python benchmarks/simulation_fidelity.py          # prints the block (~2 min)
    python benchmarks/simulation_fidelity.py --write  # and replaces it in docs/simulation.md
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import pandas as pd
from docs_table import Measurement, add_arguments

from facequant import settings

PHOTO = "person01/img1.jpg"
FACTORS = (3, 4, 5, 6, 7, 8, 9, 10)
RUNS = {"lossless (PNG) captures": ("png", ""), "JPEG 85 captures, simulation without JPEG": ("jpg", ""),
        "JPEG 85 captures, simulated with --jpeg 85": ("jpg", " --jpeg 85")}


def captures(reference: Path, folder: Path) -> None:
    """The photo shrunk by each factor, once lossless and once as JPEG 85."""
    image = cv2.imread(str(reference))
    for kind in ("png", "jpg"):
        (folder / kind).mkdir(parents=True)
    for f in FACTORS:
        small = cv2.resize(image, (image.shape[1] // f, image.shape[0] // f), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / "png" / f"x1_{f:02d}.png"), small)
        cv2.imwrite(str(folder / "jpg" / f"x1_{f:02d}.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 85])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    reference = settings.default_dataset_path() / PHOTO
    commands = {label: f"facequant validate-sim --reference {reference} --captures CAPTURES/{kind}{extra}"
                for label, (kind, extra) in RUNS.items()}
    m = Measurement("simulation_fidelity.py", list(commands.values()))
    lines = ["| captures | backend | captures used (face px) | max abs delta_cos | mean delta_cos | "
             "simulation at least as close (sim_cos >= real_cos) |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        captures(reference, folder / "CAPTURES")
        for i, (label, command) in enumerate(commands.items()):
            out = folder / f"run{i}"
            argv = shlex.split(command.replace("CAPTURES/", f"{folder / 'CAPTURES'}/"))[1:]
            subprocess.run([sys.executable, "-m", "facequant.cli", *argv, "--out", str(out), "--quiet"], check=True,
                           stdout=subprocess.DEVNULL)
            table = pd.read_csv(out / "fidelity.csv")
            table = table[table.backend.notna()]
            for backend, rows in table.groupby("backend", sort=False):
                lines.append(f"| {label} | {backend} | {len(rows)} ({rows.face_px.max():.0f} down to "
                             f"{rows.face_px.min():.0f} px) | {rows.delta_cos.abs().max():.4f} | "
                             f"{rows.delta_cos.mean():+.4f} | {int((rows.sim_cos >= rows.real_cos).sum())} of {len(rows)} |")
    m.write("simulation.md", "simulation fidelity", lines, write=args.write,
            note=f"{PHOTO} of celebs13 shrunk to 1/{FACTORS[0]} ... 1/{FACTORS[-1]} (CAPTURES: made by the script); "
                 "the shared model, fp32 and int8-pt (calibrated on the reference and the captures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The three shared models on the same probes, measured: one `facequant sweep` of all three
(fp32, int8-pt, int8-pc; no override: each model's preprocessing chosen by the check), written
to docs/bring-your-own-model.md (what the check chose and what each backend gives) and
docs/several-models.md (the cross-model table and the recommendation per scenario), with the
command, versions, date and load.

    python benchmarks/shared_models.py          # prints the blocks (~15 min on 2 busy cores)
    python benchmarks/shared_models.py --write  # and replaces them in docs/
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from docs_table import Measurement, add_arguments, cliff_cells, fmt, read_cliff

MODELS = ("../shared/models/faceplugin-fr/fr_feature.onnx,../shared/models/human-mobileface/mobileface.onnx,"
          "../shared/models/hse-faceres/faceres.onnx")
COMMAND = f"facequant sweep --model {MODELS}"
ROOT = Path(__file__).resolve().parent.parent


def run(out: Path) -> None:
    cmd = [sys.executable, "-m", "facequant.cli", *COMMAND.split()[1:], "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)  # the command's paths: from the checkout


def _degenerate(value: object) -> bool:
    return str(value or "") not in ("", "nan")


def per_model(out: Path) -> list[str]:
    """What the preprocessing check chose for each model, and what each backend gives on it."""
    lines = ["| model | preprocessing (the check's choice and why) | threshold | photos not simulated at the two "
             "closest distances | fp32: TAR close | int8-pt: TAR close, highest FAR | int8-pc: TAR close, highest FAR |",
             "|---|---|---|---|---|---|---|"]
    run_json = json.loads((out / "run.json").read_text())
    for entry in run_json["models"]:
        folder = out / entry["dir"]
        model_run = json.loads((folder / "run.json").read_text())
        cliff = read_cliff(folder).set_index("backend")
        sweep = pd.read_csv(folder / "sweep.csv")
        t = model_run["threshold"]
        resolved = "" if t.get("far_resolved", True) else f", FAR {model_run['config']['target_far']:g} NOT resolved"
        fp32 = sweep[sweep.backend == "fp32"].sort_values("distance_m")
        cells = []
        for backend in ("int8-pt", "int8-pc"):
            if _degenerate(cliff.loc[backend, "degenerate"]):
                cells.append(f"DEGENERATE: {cliff.loc[backend, 'degenerate']}")
            else:
                far = sweep[sweep.backend == backend].far.max()
                cells.append(f"{cliff.loc[backend, 'tar_close']:.3f}, FAR {far:.4f} ({cliff.loc[backend, 'verdict']})")
        lines.append(f"| {entry['label']} | {model_run['preprocessing']['summary']} | {t['value']:.3f} "
                     f"({t['n_impostor']} impostors{resolved}) | "
                     f"{int(fp32.n_not_simulated.iloc[0])} / {int(fp32.n_not_simulated.iloc[1])} of "
                     f"{int(fp32.n_probes.iloc[0] + fp32.n_not_simulated.iloc[0])} | "
                     f"{cliff.loc['fp32', 'tar_close']:.3f} | {cells[0]} | {cells[1]} |")
    warnings = [w for w in run_json.get("warnings", [])]
    return lines + ([""] + [f"- warning: {w}" for w in warnings] if warnings else [])


def cross_model(out: Path) -> list[str]:
    models = pd.read_csv(out / "models.csv", keep_default_na=False, na_values=[""])
    cost = pd.read_csv(out / "cost.csv").set_index(["model", "backend"])
    sweep = pd.read_csv(out / "sweep.csv")
    close, far = float(sweep.distance_m.min()), float(sweep.distance_m.max())
    lines = ["| model | backend | dim / input px | verdict vs its fp32 | TAR close | reliable to [95 %] | cliff at [95 %] "
             "| CPU ms, batch 1 |", "|---|---|---|---|---|---|---|---|"]
    for r in models.itertuples():
        cells = cliff_cells(r, close, far)
        ms = cost.loc[(r.model, r.backend), "cpu_latency_p50_ms"] if (r.model, r.backend) in cost.index else None
        lines.append(f"| {r.model} | {r.backend} | {r.embedding_dim} / {r.input_px} | {cells['verdict']} | "
                     f"{r.tar_close:.3f} | {cells['reliable']} | {cells['cliff']} | {fmt(ms, '.1f')} |")
    return lines


def recommendation(out: Path) -> list[str]:
    rec = pd.read_csv(out / "recommend.csv", keep_default_na=False, na_values=[""])
    lines = ["| scenario | required TAR | recommended (model/backend) | its worst TAR [95 %] at | closest other |",
             "|---|---|---|---|---|"]
    for scenario, rows in rec.groupby("scenario", sort=False):
        chosen = rows[rows.verdict == "recommended"]
        pick = chosen.iloc[0] if len(chosen) else None
        others = rows[rows.verdict != "recommended"].sort_values("shortfall", na_position="last")
        other = others.iloc[0] if len(others) else None
        what = "none" if pick is None else pick.backend
        worst = "-" if pick is None else (f"{pick.worst_tar:.3f} [{pick.worst_tar_ci_low:.3f}, "
                                          f"{pick.worst_tar_ci_high:.3f}] at {pick.worst_distance_m:g} m")
        lines.append(f"| {scenario} | {rows.required_tar.iloc[0]:g} | {what} | {worst} | "
                     f"{'-' if other is None else f'{other.backend}: {other.verdict}, {other.reason}'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--keep", type=Path, help="results directory to keep (default: a temporary one)")
    args = parser.parse_args()
    m = Measurement("shared_models.py", [COMMAND])
    note = ("celebs13, fp32 + int8-pt + int8-pc (the default backends), 0.5-12 m, 1080p 90-degree camera, "
            "FAR 1e-3, seed 0; CPU latency: batch 1 in interleaved rounds, a proxy")
    with tempfile.TemporaryDirectory() as tmp:
        out = (args.keep or Path(tmp) / "three").resolve()
        run(out)
        m.write("bring-your-own-model.md", "shared models", per_model(out), write=args.write, note=note)
        m.write("several-models.md", "several models", cross_model(out), write=args.write, note=note)
        m.write("several-models.md", "several models recommendation", recommendation(out), write=args.write,
                note=note + "; scenarios of configs/scenarios/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

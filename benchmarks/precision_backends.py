"""Every precision backend on the shared model, measured: one `facequant sweep` of eleven
backends on celebs13, written to docs/backends.md (the table) and docs/numbers.md (the healthy
ranges the degenerate flag is set against), with the command, versions, date and load.

    python benchmarks/precision_backends.py           # prints the blocks (~15 min on 2 busy cores)
    python benchmarks/precision_backends.py --write   # and replaces them in docs/
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from docs_table import Measurement, add_arguments, cliff_cells, fmt, read_cliff

BACKENDS = ("fp32,fp16,int8-dyn,int8-pt,int8-pc,a16w8,a16w16,int8-sym,int8-npu,int8-pt+16bit:last3,"
            "int8-pc+16bit:last3")
COMMAND = f"facequant sweep --backends {BACKENDS}"
COS_AT = (1.0, 6.0, 12.0)


def run(out: Path) -> None:
    cmd = [sys.executable, "-m", "facequant.cli", *COMMAND.split()[1:], "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def table(out: Path) -> list[str]:
    cliff = read_cliff(out)
    sweep = pd.read_csv(out / "sweep.csv")
    cost = pd.read_csv(out / "cost.csv").set_index("backend")
    close, far = float(sweep.distance_m.min()), float(sweep.distance_m.max())
    lines = ["| backend | verdict vs fp32 | TAR close | reliable to [95 %] | cliff at [95 %] | cliff cost [95 %] | "
             f"cos to fp32 at {' / '.join(f'{d:g}' for d in COS_AT)} m | layers 8/16/float bit | file | "
             "CPU vs fp32 [p10, p90] |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in cliff.itertuples():
        cells = cliff_cells(r, close, far)
        rows = sweep[sweep.backend == r.backend].set_index("distance_m")
        cos = " / ".join(fmt(rows.cos_to_fp32_mean.get(d), ".4f") for d in COS_AT)
        c = cost.loc[r.backend]
        cpu = f"{c.cpu_vs_fp32:.2f}x" + ("" if r.backend == "fp32" else f" [{c.cpu_vs_fp32_low:.2f}, {c.cpu_vs_fp32_high:.2f}]")
        lines.append(f"| {r.backend} | {cells['verdict']} | {r.tar_close:.3f} | {cells['reliable']} | {cells['cliff']} | "
                     f"{cells['cost']} | {cos} | {int(c.layers_8bit)}/{int(c.layers_16bit)}/{int(c.layers_float)} | "
                     f"{c.file_bytes / 1e6:.2f} MB | {cpu} |")
    return lines


def healthy(out: Path) -> list[str]:
    """The ranges a healthy backend keeps here, against which the degenerate flag's thresholds sit."""
    cliff = read_cliff(out)
    ok = set(cliff.backend[cliff.degenerate.fillna("").astype(str) == ""])
    sweep = pd.read_csv(out / "sweep.csv")
    sweep = sweep[sweep.backend.isin(ok)]
    probes = pd.read_csv(out / "probes.csv")
    probes = probes[probes.backend.isin(ok) & probes.simulated.astype(bool)]
    cv = probes.groupby(["backend", "distance_m"]).prenorm.agg(lambda x: x.std() / x.mean())
    close = probes[probes.distance_m == probes.distance_m.min()]
    return [f"Over the {len(ok)} healthy backends of that sweep ({', '.join(sorted(ok))}) at every distance:", "",
            f"- impostor cosine mean {sweep.impostor_cos_mean.min():.3f} to {sweep.impostor_cos_mean.max():.3f}; "
            f"genuine cosine mean {sweep.genuine_cos_mean.min():.2f} to {sweep.genuine_cos_mean.max():.2f}",
            f"- FAR at the shared threshold at most {sweep.far.max():.4f} (target 0.001)",
            f"- pre-norm CV across photos {cv.min():.3f} to {cv.max():.3f}",
            f"- pre-norm at the closest distance {close.prenorm.min():.2f} to {close.prenorm.max():.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--keep", type=Path, help="results directory to keep (default: a temporary one)")
    args = parser.parse_args()
    m = Measurement("precision_backends.py", [COMMAND])
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "sweep"
        run(out)
        note = "celebs13, 1080p 90-degree camera, FAR 1e-3, seed 0; CPU ratios: batch-1 latency in interleaved rounds"
        m.write("backends.md", "precision backends", table(out), write=args.write, note=note)
        m.write("numbers.md", "healthy ranges", healthy(out), write=args.write, note=note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""diagnose vs sweep: the time `diagnose` takes on every layer at the 12 default distances,
against one sweep of the same backends (run_sweep, measure_cost=False), in one run, and their
ratio (goal <= 2: a layer diagnosis costs about what a sweep does, not one pass per layer), and
what the diagnosis found per backend (SNR by distance, the worst layer, head against backbone).
With --write both go to docs/diagnostics-and-search.md with the command, versions, date and load.

    python benchmarks/diagnose_vs_sweep.py [--backends int8-pt,int8-pc,a16w8] [--repeats 1] [--write]

Both start from warm caches (aligned crops, normalized and quantized models), so what is timed is
the work itself; the sweep does not read the embedding cache (it computes every embedding). CPU seconds (all threads) are printed beside wall seconds: on a shared machine
the wall ratio moves with the load, the CPU ratio much less.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from docs_table import Measurement, add_arguments

from facequant import settings
from facequant.analysis.diagnose.run import DiagnoseConfig, diagnose_backends, run_diagnose
from facequant.backends.registry import BackendFactory
from facequant.sweep.config import SweepConfig
from facequant.sweep.engine import run_sweep
from facequant.sweep.probes import prepare_probes


def timed(fn) -> tuple[float, float, object]:  # noqa: ANN001 - any callable
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def snr_table(summary: pd.DataFrame, at: tuple[float, ...]) -> list[str]:
    """Per backend: mean SNR and the embedding output's SNR at three distances, the worst layer,
    layers below 10 dB and head against backbone at the farthest."""
    far = at[-1]
    lines = [f"| backend | mean SNR {' / '.join(f'{d:g}' for d in at)} m | worst layer at {far:g} m | "
             f"layers < 10 dB at {far:g} m | embedding output SNR {' / '.join(f'{d:g}' for d in at)} m | "
             f"head / backbone mean SNR at {far:g} m |", "|---|---|---|---|---|---|"]
    for backend, rows in summary.groupby("backend", sort=False):
        r = rows.set_index("distance_m")
        last = r.loc[far]
        mean = " / ".join(f"{r.loc[d, 'mean_snr_db']:.1f}" for d in at)
        output = " / ".join(f"{r.loc[d, 'output_snr_db']:.1f}" for d in at)
        lines.append(f"| {backend} | {mean} dB | "
                     f"{last.min_snr_layer} ({last.min_snr_db:.1f} dB) | {int(last.layers_below_threshold)} of "
                     f"{int(last.n_layers)} | {output} dB | "
                     f"{last.head_mean_snr_db:.1f} / {last.backbone_mean_snr_db:.1f} dB |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--model", default=str(settings.default_model_path()))
    parser.add_argument("--data", default=str(settings.default_dataset_path()))
    parser.add_argument("--backends", default="int8-pt,int8-pc,a16w8")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    measurement = Measurement("diagnose_vs_sweep.py", [f"facequant diagnose --backends {args.backends}"])
    backends = tuple(diagnose_backends([b.strip() for b in args.backends.split(",") if b.strip()]))
    # No embedding cache: the sweep must compute its embeddings as diagnose computes its tensors
    # (a warm cache made the sweep 11 s against diagnose's 511 s, a ratio of 48 that timed nothing).
    sweep_config = SweepConfig(model=args.model, data=args.data, backends=("fp32", *backends), measure_cost=False,
                               embedding_cache=False)
    diagnose_config = DiagnoseConfig(SweepConfig(model=args.model, data=args.data, backends=backends))

    # Warm-up: aligned crops and quantized models are cached; neither run should pay for them.
    ps = prepare_probes(sweep_config)
    factory = BackendFactory(ps.normalized, ps.model_sha, ps.spec, ps.calibration_tensors)
    for name in sweep_config.backends:
        factory.make(name)

    ratios, cpu_ratios = [], []
    for i in range(args.repeats):
        sweep_wall, sweep_cpu, _ = timed(lambda: run_sweep(sweep_config))
        diag_wall, diag_cpu, result = timed(lambda: run_diagnose(diagnose_config))
        run = result.run  # type: ignore[attr-defined]
        layers = result.layers  # type: ignore[attr-defined]
        n_layers = layers.groupby(["backend", "distance_m"]).size().iloc[0]
        print(f"run {i + 1}: {len(backends)} backends x {len(result.distances_m)} distances x "  # type: ignore[attr-defined]
              f"{n_layers} layers, {len(ps.images)} photos, batch {run['probes']['batch']}")
        print(f"  sweep    (fp32 + {', '.join(backends)}): {sweep_wall:7.1f} s wall {sweep_cpu:7.1f} s CPU")
        print(f"  diagnose ({', '.join(backends)}):        {diag_wall:7.1f} s wall {diag_cpu:7.1f} s CPU   "
              f"(tensor comparison {run['timings']['diagnose_s']:.1f} s, augmenting {run['timings']['augment_s']:.1f} s)")
        ratios.append(diag_wall / sweep_wall)
        cpu_ratios.append(diag_cpu / sweep_cpu)
        print(f"  ratio diagnose / sweep: {ratios[-1]:.2f} wall, {cpu_ratios[-1]:.2f} CPU   (goal <= 2)")
    if args.repeats > 1:
        print(f"median ratio: {float(np.median(ratios)):.2f} wall, {float(np.median(cpu_ratios)):.2f} CPU")
    summary = result.summary  # type: ignore[attr-defined]
    distances = sorted(set(summary.distance_m))
    at = (distances[0], min(distances, key=lambda d: abs(d - 6.0)), distances[-1])
    timing = (f"Time, warm caches, {len(backends)} backends x {len(result.distances_m)} distances x "  # type: ignore[attr-defined]
              f"{n_layers} layers on {len(ps.images)} photos: diagnose took {float(np.median(ratios)):.2f}x the wall "
              f"time of one sweep of fp32 and the same backends ({float(np.median(cpu_ratios)):.2f}x its CPU time; "
              f"median of {args.repeats} run(s); goal <= 2).")
    measurement.write("diagnostics-and-search.md", "diagnose", [*snr_table(summary, at), "", timing], write=args.write,
                      note=f"celebs13, all photos, the shared model, 1080p 90-degree camera; {n_layers} reported "
                           "tensors per backend")


if __name__ == "__main__":
    main()

"""diagnose vs sweep: the time `diagnose` takes on every layer at the 12 default distances,
against one sweep of the same backends (run_sweep, measure_cost=False), in one run, and their
ratio (goal <= 2: a layer diagnosis costs about what a sweep does, not one pass per layer).

    python benchmarks/diagnose_vs_sweep.py [--backends int8-pt,int8-pc,a16w8] [--repeats 1]

Both start from warm caches (aligned crops, normalized and quantized models), so what is timed is
the work itself. CPU seconds (all threads) are printed beside wall seconds: on a shared machine
the wall ratio moves with the load, the CPU ratio much less.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(settings.default_model_path()))
    parser.add_argument("--data", default=str(settings.default_dataset_path()))
    parser.add_argument("--backends", default="int8-pt,int8-pc,a16w8")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    backends = tuple(diagnose_backends([b.strip() for b in args.backends.split(",") if b.strip()]))
    sweep_config = SweepConfig(model=args.model, data=args.data, backends=("fp32", *backends), measure_cost=False)
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


if __name__ == "__main__":
    main()

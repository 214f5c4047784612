"""Throughput: the sweep's embeddings per second vs bare ONNX Runtime on the same model and
batch, in one run, and their ratio (goal >= 0.9: the sweep adds little on top of inference).

    python benchmarks/throughput.py [--data DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

from facequant import settings
from facequant.models.normalize import normalize_model
from facequant.models.spec import inspect_model
from facequant.sweep.config import SweepConfig
from facequant.sweep.engine import run_sweep


def bare_ort(model: str, batch: int, n: int) -> float:
    """Embeddings per second of a plain session fed preprocessed random tensors."""
    spec = inspect_model(model)
    session = ort.InferenceSession(str(normalize_model(model)), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, *spec.input_size)).astype(np.float32)
    session.run(None, {spec.input_name: x})  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < n:
        session.run(None, {spec.input_name: x})
        done += batch
    return done / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(settings.default_model_path()))
    parser.add_argument("--data", default=str(settings.default_dataset_path()))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    # no embedding cache: every run computes its embeddings, which is what is timed
    config = SweepConfig(model=args.model, data=args.data, backends=("fp32",), embedding_cache=False)
    run_sweep(config)  # warm-up: caches aligned crops and the normalized model
    sweep_rates, bare_rates = [], []
    for _ in range(args.repeats):
        result = run_sweep(config)
        usable = int(result.run["dataset"]["usable"])  # type: ignore[index]
        n = usable * (len(result.distances_m) + 1)
        sweep_rates.append(float(result.run["timings"]["embeddings_per_s"]))  # type: ignore[index]
        bare_rates.append(bare_ort(args.model, min(config.batch_size, usable), n))
    sweep, bare = float(np.median(sweep_rates)), float(np.median(bare_rates))
    print(f"threads: {settings.ort_threads()}   batch: {min(config.batch_size, usable)}   embeddings per run: {n}")
    print(f"sweep (simulation + inference + metrics): {sweep:8.1f} embeddings/s")
    print(f"bare onnxruntime (inference only):         {bare:8.1f} embeddings/s")
    print(f"ratio sweep / bare: {sweep / bare:.3f}   (goal >= 0.9)")


if __name__ == "__main__":
    main()

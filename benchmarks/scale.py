"""Scale: time, throughput and peak memory of a sweep as the photo count grows, in one run.

For each N it builds an identity-folder set of N photos from the shared celebs13 (perturbed
copies in new identity folders: facequant.datasets.scaled), then runs, each in a fresh
process so its peak RSS is its own:

  cold   `facequant sweep` with an empty cache (faces detected, models quantized, every
         embedding computed);
  warm   the same command again (crops, models and embeddings from the cache);

and, in this process, bare ONNX Runtime on the same models and batch size (preprocessed
inputs, nothing else). Printed per N: wall times, the sweep stage's embeddings per second
against bare ONNX Runtime's (ratio), peak RSS of each sweep process, the warm speed-up, and a
projection for LFW (13,233 photos x 12 distances x 4 backends) locally and on k Ray workers.

    python benchmarks/scale.py                      # N = 61, 610, 2440
    python benchmarks/scale.py --sizes 61,305 --keep /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from facequant import settings
from facequant.backends.base import session_options
from facequant.datasets.scaled import build_scaled_set
from facequant.models.spec import inspect_model

BACKENDS = "fp32,int8-pt,int8-pc"
LFW_PHOTOS, LFW_DISTANCES, LFW_BACKENDS = 13_233, 12, 4


def run_sweep(data: Path, out: Path, cache: Path, extra: list[str]) -> tuple[float, float, dict[str, object]]:
    """(wall s, peak RSS MB, run.json) of one `facequant sweep` in its own process."""
    env = {**os.environ, settings.CACHE_ENV: str(cache)}
    cmd = [sys.executable, "-m", "facequant.cli", "sweep", "--data", str(data), "--backends", BACKENDS,
           "--no-latency", "--quiet", "--out", str(out), *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sweep failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss / 1024, json.loads((out / "run.json").read_text())


def bare_rate(run: dict[str, object], n_per_backend: int, batch: int) -> float:
    """Embeddings per second of plain ONNX Runtime sessions on the sweep's model files, the same
    number of inputs per backend as the sweep embedded (capped), at the sweep's batch size."""
    model = run["model"]
    assert isinstance(model, dict)
    spec = inspect_model(model["path"])
    seconds, total = 0.0, 0
    for info in run["backends"].values():  # type: ignore[union-attr]
        session = ort.InferenceSession(str(info["model"]), session_options(), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, 3, *spec.input_size)).astype(np.float32)
        session.run(None, {spec.input_name: x})  # warm-up
        t0, done = time.perf_counter(), 0
        while done < n_per_backend:
            session.run(None, {spec.input_name: x[: min(batch, n_per_backend - done)]})
            done += min(batch, n_per_backend - done)
        seconds += time.perf_counter() - t0
        total += done
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="61,610,2440", help="photo counts (default 61,610,2440)")
    parser.add_argument("--bare-cap", type=int, default=6000, help="most inputs per backend for bare ORT (default 6000)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the sets and results here")
    parser.add_argument("--workers", default="1,2,4,8", help="Ray worker counts for the LFW projection")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="facequant-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        data = root / f"set{n}"
        if not data.exists():
            build_scaled_set(settings.default_dataset_path(), data, n, seed=n)
        cache = root / f"cache{n}"
        shutil.rmtree(cache, ignore_errors=True)
        for sub in ("cold", "warm"):
            shutil.rmtree(root / f"out{n}-{sub}", ignore_errors=True)
        cold_wall, cold_rss, cold = run_sweep(data, root / f"out{n}-cold", cache, [])
        warm_wall, warm_rss, warm = run_sweep(data, root / f"out{n}-warm", cache, [])
        timings = cold["timings"]
        assert isinstance(timings, dict)
        photos = int(cold["dataset"]["usable"])  # type: ignore[index]
        per_backend = photos * (len(cold["distances_m"]) + 1)  # type: ignore[arg-type]
        bare = bare_rate(cold, min(per_backend, args.bare_cap), int(cold["config"]["batch_size"]))  # type: ignore[index]
        rows.append({"n": photos, "cold_s": cold_wall, "faces_s": timings["faces_s"], "backends_s": timings["backends_s"],
                     "sweep_s": timings["sweep_s"], "sweep_rate": timings["embeddings_per_s"], "bare_rate": bare,
                     "cold_rss": cold_rss, "warm_s": warm_wall, "warm_rss": warm_rss,
                     "warm_computed": warm["timings"]["embeddings_computed"]})  # type: ignore[index]
        print(f"N={photos}: cold {cold_wall:.0f} s, warm {warm_wall:.1f} s, peak RSS {cold_rss:.0f} MB", flush=True)

    print(f"\nthreads {settings.ort_threads()}, backends {BACKENDS}, {len(cold['distances_m'])} distances + enrolment")
    print(f"{'N':>6} {'cold s':>8} {'faces s':>8} {'sweep s':>8} {'sweep e/s':>10} {'bare e/s':>9} {'ratio':>6} "
          f"{'RSS MB':>7} {'warm s':>7} {'x faster':>8} {'warm RSS':>8}")
    for r in rows:
        print(f"{r['n']:>6} {r['cold_s']:8.1f} {r['faces_s']:8.1f} {r['sweep_s']:8.1f} {r['sweep_rate']:10.1f} "
              f"{r['bare_rate']:9.1f} {r['sweep_rate'] / r['bare_rate']:6.2f} {r['cold_rss']:7.0f} "
              f"{r['warm_s']:7.1f} {r['cold_s'] / r['warm_s']:8.1f} {r['warm_rss']:8.0f}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(f"peak RSS {a['cold_rss']:.0f} -> {b['cold_rss']:.0f} MB for {b['n'] / a['n']:.0f}x the photos "
              f"(+{(b['cold_rss'] - a['cold_rss']) / (b['n'] - a['n']) * 1000:.0f} kB per photo)")
    last = rows[-1]
    embeddings = LFW_PHOTOS * (LFW_DISTANCES + 1) * LFW_BACKENDS
    faces = last["faces_s"] / last["n"] * LFW_PHOTOS
    inference = embeddings / last["sweep_rate"]
    print(f"\nLFW projection ({LFW_PHOTOS} photos x {LFW_DISTANCES} distances x {LFW_BACKENDS} backends = "
          f"{embeddings:,} embeddings, from N={last['n']}):")
    for k in (int(v) for v in args.workers.split(",")):
        total = faces + inference / k
        print(f"  {k} worker(s) like this machine: faces {faces / 60:.0f} min + embeddings {inference / k / 3600:.1f} h "
              f"= {total / 3600:.1f} h")
    print(f"results kept in {root}" if args.keep else "")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

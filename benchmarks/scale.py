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

With --baseline DIR, another checkout of facequant (e.g. a worktree of main) runs the same
cold and warm sweeps on the same sets right after this one's, each in its own cache, so the
two are compared within one run. --write puts the table into docs/performance.md between its
markers, with the command, versions, date and machine load.

    python benchmarks/scale.py                      # N = 61, 610, 2440
    python benchmarks/scale.py --sizes 61,305 --keep /tmp/scale
    python benchmarks/scale.py --sizes 610,2440 --baseline ../main --write

--warm-only times warm re-runs alone on the sets and caches an earlier `--keep DIR` run left
(each size three times, in fresh processes), into its own block: a change to the warm path is
measured in minutes instead of a cold run's hour.

    python benchmarks/scale.py --sizes 610,2440 --keep /tmp/scale --warm-only --write
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from throughput import measurement, sweep_process  # benchmarks/ is the script's folder

from facequant import settings
from facequant.backends.base import session_options
from facequant.datasets.scaled import build_scaled_set
from facequant.models.spec import inspect_model

BACKENDS = "fp32,int8-pt,int8-pc"
LFW_PHOTOS, LFW_DISTANCES, LFW_BACKENDS = 13_233, 12, 4


def run_sweep(data: Path, out: Path, cache: Path, source: Path | None = None) -> tuple[float, float, dict[str, object]]:
    """(wall s, peak RSS MiB, run.json) of one `facequant sweep` in its own process (`source`:
    another checkout's facequant)."""
    return sweep_process(["--data", str(data), "--backends", BACKENDS], out, cache, source)


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


WARM_ROUNDS = 3


def warm_only(args: argparse.Namespace) -> None:
    """Warm re-runs on the sets and caches an earlier --keep run left: wall time (median and
    range of WARM_ROUNDS fresh processes), peak RSS, and how much came from the caches."""
    if args.keep is None:
        raise SystemExit("--warm-only: give --keep DIR, the folder an earlier --keep run left")
    root = Path(args.keep)
    m = measurement("scale.py", [f"facequant sweep --data SET --backends {BACKENDS} --no-latency --quiet"])
    lines = ["| N | warm s (median [min, max]) | peak RSS MiB | faces s | sweep s | embeddings from cache | "
             "score cells from cache |", "|---|---|---|---|---|---|---|"]
    for n in (int(v) for v in args.sizes.split(",")):
        data, cache = root / f"set{n}", root / f"cache{n}-this"
        if not data.is_dir() or not cache.is_dir():
            raise SystemExit(f"--warm-only: {data} or {cache} not found; run scale.py --sizes {n} --keep {root} first")
        walls, peaks = [], []
        for _ in range(WARM_ROUNDS):
            wall, peak, run = sweep_process(["--data", str(data), "--backends", BACKENDS], root / f"out{n}-warm-only",
                                            cache)
            walls.append(wall)
            peaks.append(peak)
        execution, timings = run["execution"], run["timings"]
        assert isinstance(execution, dict) and isinstance(timings, dict)
        emb, cells = execution["embedding_cache"], execution["score_cache"]
        photos = int(run["dataset"]["usable"])  # type: ignore[index]
        walls.sort()
        lines.append(f"| {photos} | {walls[len(walls) // 2]:.1f} [{walls[0]:.1f}, {walls[-1]:.1f}] | {max(peaks):.0f} | "
                     f"{timings['faces_s']:.1f} | {timings['sweep_s']:.1f} | {emb['hits']} of "
                     f"{emb['hits'] + emb['misses']} | {cells['hits']} of {cells['hits'] + cells['misses']} |")
        print(lines[-1], flush=True)
    m.write("performance.md", "scale, warm re-runs", [*lines, "", "goal: a warm 2440-photo re-run under 30 s"],
            write=args.write, note=f"warm: on the cache an earlier cold run left, {WARM_ROUNDS} times per set, "
                                   "each in its own process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="61,610,2440", help="photo counts (default 61,610,2440)")
    parser.add_argument("--bare-cap", type=int, default=6000, help="most inputs per backend for bare ORT (default 6000)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the sets and results here")
    parser.add_argument("--workers", default="1,2,4,8", help="Ray worker counts for the LFW projection")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another facequant checkout to run beside this one (e.g. a worktree of main)")
    parser.add_argument("--warm-only", action="store_true",
                        help="time warm re-runs only, on the sets and caches of an earlier --keep DIR")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()
    if args.warm_only:
        warm_only(args)
        return
    root = Path(args.keep or tempfile.mkdtemp(prefix="facequant-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Path | None] = {"this": None}
    if args.baseline is not None:
        sources["baseline"] = args.baseline.resolve()
    m = measurement("scale.py", [f"facequant sweep --data SET --backends {BACKENDS} --no-latency --quiet"])
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        data = root / f"set{n}"
        if not data.exists():
            build_scaled_set(settings.default_dataset_path(), data, n, seed=n)
        for who, source in sources.items():
            cache = root / f"cache{n}-{who}"
            shutil.rmtree(cache, ignore_errors=True)
            cold_wall, cold_rss, cold = run_sweep(data, root / f"out{n}-{who}-cold", cache, source)
            warm_wall, warm_rss, warm = run_sweep(data, root / f"out{n}-{who}-warm", cache, source)
            timings = cold["timings"]
            assert isinstance(timings, dict)
            photos = int(cold["dataset"]["usable"])  # type: ignore[index]
            per_backend = photos * (len(cold["distances_m"]) + 1)  # type: ignore[arg-type]
            bare = bare_rate(cold, min(per_backend, args.bare_cap), int(cold["config"]["batch_size"]))  # type: ignore[index]
            rows.append({"who": who, "n": photos, "cold_s": cold_wall, "faces_s": timings["faces_s"],
                         "backends_s": timings["backends_s"], "sweep_s": timings["sweep_s"],
                         "sweep_rate": timings["embeddings_per_s"], "bare_rate": bare, "cold_rss": cold_rss,
                         "warm_s": warm_wall, "warm_rss": warm_rss,
                         "warm_computed": warm["timings"]["embeddings_computed"]})  # type: ignore[index]
            print(f"{who} N={photos}: cold {cold_wall:.0f} s, warm {warm_wall:.1f} s, peak RSS {cold_rss:.0f} MiB, "
                  f"ratio {timings['embeddings_per_s'] / bare:.2f}", flush=True)

    head = (f"threads {settings.ort_threads()}, backends {BACKENDS}, {len(cold['distances_m'])} distances + "  # type: ignore[arg-type]
            "enrolment; ratio: the sweep stage's embeddings/s over bare ONNX Runtime's on the same model files and "
            "batch, measured right after it")
    table = ["| code | N | cold s | faces s | sweep s | sweep e/s | bare e/s | ratio | peak RSS MiB | warm s | "
             "x faster | warm RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        code = "this checkout" if r["who"] == "this" else f"baseline ({args.baseline})"
        table.append(f"| {code} | {r['n']} | {r['cold_s']:.1f} | {r['faces_s']:.1f} | {r['sweep_s']:.1f} | "
                     f"{r['sweep_rate']:.1f} | {r['bare_rate']:.1f} | {r['sweep_rate'] / r['bare_rate']:.2f} | "
                     f"{r['cold_rss']:.0f} | {r['warm_s']:.1f} | {r['cold_s'] / r['warm_s']:.1f} | "
                     f"{r['warm_rss']:.0f} |")
    mine = [r for r in rows if r["who"] == "this"]
    notes = [head, "", *table, "", "goals: ratio >= 0.9 at 610 and 2440 photos; peak RSS no higher than before; "
             "warm 2440-photo re-run < 30 s"]
    if len(mine) > 1:
        a, b = mine[0], mine[-1]
        notes.append(f"peak RSS {a['cold_rss']:.0f} -> {b['cold_rss']:.0f} MiB for {b['n'] / a['n']:.0f}x the photos "
                     f"(+{(b['cold_rss'] - a['cold_rss']) / (b['n'] - a['n']) * 1000:.0f} kB per photo)")
    m.write("performance.md", "scale", notes, write=args.write,
            note="cold, then warm, each in its own process")
    rows = mine
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

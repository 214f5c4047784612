"""Throughput: a sweep's embeddings per second against bare ONNX Runtime on the same model and
batch, its peak memory and a warm re-run's time, in one run.

Each round times, in an order that alternates between rounds (so drift in the machine's load
falls on each alike):

  bare       a plain ONNX Runtime session on the normalized model, fed preprocessed random
             tensors at the sweep's batch size, as many as the sweep embeds (this process);
  sweep      `facequant sweep --backends fp32 --no-embedding-cache` in a fresh process: its
             sweep stage's embeddings per second (run.json; simulation, inference, scoring),
             and the process's peak RSS;
  streamed   the same sweep with --crop-memory 0: its crops read back from the crop cache at
             every distance instead of held in memory;
  baseline   the same command run by another checkout of facequant (--baseline DIR), when
             given: how the code before a change compares, measured beside it.

The ratio is taken within each round (sweep / the same round's bare), then the median over
rounds. Then a warm re-run: the same sweep with the embedding cache, once to fill it, once
timed (wall clock of the whole command).

    python benchmarks/throughput.py [--rounds 5] [--distances 1,4,8] [--baseline ../main] [--write]

--write puts the table into docs/performance.md between its markers, with the command,
versions, date and machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from facequant import settings

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "performance.md"
END = "<!-- /measured -->"


def start_marker(name: str, script: str) -> str:
    return f"<!-- measured: {name} (benchmarks/{script}) -->"


class LocalMeasurement:
    """The provenance a measured block carries (command, versions, date, load). Stands in for
    benchmarks/docs_table.py's Measurement where that helper is not in this checkout."""

    def __init__(self, script: str, commands: Sequence[str] = ()) -> None:
        self.script, self.commands = script, list(commands)
        self.started, self.load_before = time.time(), _load()

    def write(self, page: str, name: str, lines: Sequence[str], *, write: bool, note: str = "") -> str:
        from facequant.versions import versions

        v = versions()
        named = ", ".join(f"{k} {v[k]}" for k in ("facequant", "onnxruntime", "opencv", "numpy", "python") if k in v)
        ran = "; ".join(f"`{c}`" for c in self.commands)
        body = "\n".join([
            f"- written by `python {' '.join(sys.argv)}`, which ran {ran}",
            f"- date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC ({time.time() - self.started:.0f} s)",
            f"- versions: {named}",
            f"- machine: {os.cpu_count()} cores shared with other work, load average (1 / 5 / 15 min) "
            f"{self.load_before} before, {_load()} after: timings are noisy, compare within a run only",
            *([f"- {note}"] if note else []), "", *lines])
        start = start_marker(name, self.script)
        print(f"\n{start}  -> docs/{page}\n{body}\n{END}", flush=True)
        if write:
            path = ROOT / "docs" / page
            text = path.read_text()
            a, b = text.find(start), text.find(END, text.find(start))
            if a < 0 or b < 0:
                raise SystemExit(f"docs/{page}: no block {start} ... {END}")
            path.write_text(text[:a] + f"{start}\n{body.strip()}\n" + text[b:])
            print(f"written: docs/{page} ({name})", file=sys.stderr)
        return body


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def measurement(script: str, commands: Sequence[str]) -> LocalMeasurement:
    """benchmarks/docs_table.py's Measurement when present, else the local stand-in."""
    try:
        from docs_table import Measurement  # type: ignore[import-not-found]
    except ModuleNotFoundError:
        return LocalMeasurement(script, commands)
    return Measurement(script, commands)  # type: ignore[no-any-return]


def sweep_process(args: Sequence[str], out: Path, cache: Path, source: Path | None = None
                  ) -> tuple[float, float, dict[str, object]]:
    """(wall s, peak RSS MiB, run.json) of one `facequant sweep` in its own process; `source`:
    run another checkout's facequant (its folder first on PYTHONPATH)."""
    env = {**os.environ, settings.CACHE_ENV: str(cache), settings.SHARED_ENV: str(settings.shared_dir())}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "facequant.cli", "sweep", *args, "--no-latency", "--quiet", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sweep failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss / 1024, json.loads((out / "run.json").read_text())


def bare_rate(model: str, batch: int, n: int) -> float:
    """Embeddings per second of a plain session (ONNX Runtime's defaults) on the normalized model."""
    from facequant.models.normalize import normalize_model
    from facequant.models.spec import inspect_model

    spec = inspect_model(model)
    session = ort.InferenceSession(str(normalize_model(model)), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, *spec.input_size)).astype(np.float32)
    session.run(None, {spec.input_name: x})  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < n:
        session.run(None, {spec.input_name: x[: min(batch, n - done)]})
        done += min(batch, n - done)
    return done / (time.perf_counter() - t0)


def rate(run: dict[str, object]) -> float:
    return float(run["timings"]["embeddings_per_s"])  # type: ignore[index]


#: How a sweep could run on this machine: (intra-op threads, spinning, preparation beside inference).
ORT_VARIANTS = ((None, "1", True), (None, "0", True), (1, "0", True), (None, "1", False))


class InlinePool:
    """A stand-in for the Embedder's one-thread pool that prepares each chunk when it is asked
    for, on the calling thread: the sweep without preparation beside inference."""

    def __init__(self, *_: object, **__: object) -> None:
        pass

    def submit(self, fn, *args):  # noqa: ANN001, ANN201 - ThreadPoolExecutor.submit's shape
        from concurrent.futures import Future

        done: Future[object] = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as the pool would
            done.set_exception(exc)
        return done

    def shutdown(self, *_: object, **__: object) -> None:
        pass


def _variant_name(threads: int | None, spinning: str, overlap: bool) -> str:
    return (f"{threads or settings.ort_threads()} thread(s), spinning {'on' if spinning == '1' else 'off'}, "
            f"preparation {'beside inference' if overlap else 'inline'}")


def ort_variants(args: argparse.Namespace) -> list[str]:
    """The fp32 sweep (in this process) with its ONNX Runtime sessions made under each of
    ORT_VARIANTS, and with chunk preparation beside inference or inline, interleaved with bare
    ONNX Runtime in rotating order: embeddings/s and the ratio to the same round's bare rate.
    The sessions' options and the Embedder's pool are swapped in for the measurement only
    (facequant.backends.base.session_options and facequant.sweep.embed.ThreadPoolExecutor are
    what the sweep uses)."""
    from facequant.backends import base, runtime
    from facequant.sweep import embed
    from facequant.sweep.config import SweepConfig
    from facequant.sweep.engine import run_sweep

    real, real_pool = base.session_options, embed.ThreadPoolExecutor

    def options_for(threads: int | None, spinning: str):  # noqa: ANN202 - a session_options stand-in
        def options(_threads: int | None = None) -> ort.SessionOptions:
            opts = real(threads)
            opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
            return opts
        return options

    distances = tuple(float(d) for d in args.distances.split(",")) if args.distances else None
    config = SweepConfig(model=args.model, data=args.data, backends=("fp32",), embedding_cache=False,
                         measure_cost=False, **({"distances_m": distances} if distances else {}))
    names = {_variant_name(*v): v for v in ORT_VARIANTS}
    first = run_sweep(config)  # warm-up: crop cache, normalized model
    usable = int(first.run["dataset"]["usable"])  # type: ignore[index]
    n = usable * (len(first.distances_m) + 1)
    rates: dict[str, list[float]] = {k: [] for k in [*names, "bare"]}
    ratios: dict[str, list[float]] = {k: [] for k in names}
    try:
        for r in range(args.rounds):
            order = [*names, "bare"]
            order = order[r % len(order):] + order[:r % len(order)]
            got: dict[str, float] = {}
            for who in order:
                if who == "bare":
                    got[who] = bare_rate(args.model, min(config.batch_size, usable), n)
                    continue
                threads, spinning, overlap = names[who]
                base.session_options = runtime.session_options = options_for(threads, spinning)
                embed.ThreadPoolExecutor = real_pool if overlap else InlinePool  # type: ignore[misc,assignment]
                got[who] = rate(run_sweep(config).run)
            for who, value in got.items():
                rates[who].append(value)
                if who != "bare":
                    ratios[who].append(value / got["bare"])
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.2f}/s" for k, v in got.items()), flush=True)
    finally:
        base.session_options = runtime.session_options = real
        embed.ThreadPoolExecutor = real_pool  # type: ignore[misc]
    lines = [f"{usable} photos ({Path(args.data).name}), backend fp32, {len(first.distances_m)} distances + "
             f"enrolment = {n} embeddings per sweep; medians of {args.rounds} rounds in rotating order", "",
             "| how the sweep runs | embeddings/s | ratio to bare ORT [min, max over rounds] |", "|---|---|---|",
             f"| bare ONNX Runtime (its defaults) | {statistics.median(rates['bare']):.2f} | 1 |"]
    lines += [f"| sweep, {who} | {statistics.median(rates[who]):.2f} | {statistics.median(ratios[who]):.3f} "
              f"[{min(ratios[who]):.3f}, {max(ratios[who]):.3f}] |" for who in names]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(settings.default_model_path()))
    parser.add_argument("--data", default=str(settings.default_dataset_path()))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--distances", default=None, help="the sweep's distances, e.g. 1,4,8 (default: the sweep's)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another facequant checkout to time beside this one (e.g. a worktree of main)")
    parser.add_argument("--ort-variants", action="store_true",
                        help="instead: the sweep under ONNX Runtime thread and spinning settings and with chunk "
                             "preparation beside inference or inline, in this process")
    parser.add_argument("--write", action="store_true", help="write the table into docs/performance.md")
    args = parser.parse_args()
    if args.rounds < 1:
        raise SystemExit("--rounds: must be at least 1")
    if args.ort_variants:
        m = measurement("throughput.py", ["run_sweep(fp32) in this process under each session setting and preparation"])
        m.write("performance.md", "ORT threads and spinning", ort_variants(args), write=args.write)
        return
    root = Path(tempfile.mkdtemp(prefix="facequant-throughput-"))
    sweep_args = ["--model", args.model, "--data", args.data, "--backends", "fp32",
                  *(["--distances", args.distances] if args.distances else [])]
    cold = [*sweep_args, "--no-embedding-cache"]
    m = measurement("throughput.py", [f"facequant sweep {' '.join(cold[4:])} --no-latency --quiet"])
    try:
        sources: dict[str, Path | None] = {"sweep": None, "streamed": None}
        if args.baseline is not None:
            sources["baseline"] = args.baseline.resolve()
        cache = root / "cache"
        _, _, run = sweep_process(cold, root / "warmup", cache)  # the crop cache and normalized model
        usable = int(run["dataset"]["usable"])  # type: ignore[index]
        n = usable * (len(run["distances_m"]) + 1)  # type: ignore[arg-type]
        batch = min(int(run["config"]["batch_size"]), usable)  # type: ignore[index]
        rates: dict[str, list[float]] = {k: [] for k in ("bare", *sources)}
        ratios: dict[str, list[float]] = {k: [] for k in sources}
        rss: dict[str, list[float]] = {k: [] for k in sources}
        for r in range(args.rounds):
            order = ["bare", *sources] if r % 2 == 0 else [*reversed(sources), "bare"]
            got: dict[str, float] = {}
            for who in order:
                if who == "bare":
                    got[who] = bare_rate(args.model, batch, n)
                else:
                    extra = ["--crop-memory", "0"] if who == "streamed" else []
                    _, peak, run = sweep_process([*cold, *extra], root / who, cache, sources[who])
                    got[who] = rate(run)
                    rss[who].append(peak)
            for who, value in got.items():
                rates[who].append(value)
                if who != "bare":
                    ratios[who].append(value / got["bare"])
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.2f}/s" for k, v in got.items()), flush=True)
        warm: dict[str, float] = {}
        for who, source in sources.items():
            if who == "streamed":
                continue  # the warm re-run reads no crops
            sweep_process(sweep_args, root / f"{who}-fill", root / f"cache-{who}", source)
            warm[who], _, _ = sweep_process(sweep_args, root / f"{who}-warm", root / f"cache-{who}", source)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    lines = [f"{usable} photos ({Path(args.data).name}), backend fp32, {len(run['distances_m'])} distances + enrolment = "  # type: ignore[arg-type]
             f"{n} embeddings per sweep, batch {batch}, {settings.ort_threads()} ORT threads; medians of "
             f"{args.rounds} interleaved rounds", "",
             "| | embeddings/s | ratio to bare ORT [min, max over rounds] | peak RSS MiB | warm re-run s |",
             "|---|---|---|---|---|",
             f"| bare ONNX Runtime | {statistics.median(rates['bare']):.2f} | 1 | | |"]
    label = {"sweep": "this checkout", "streamed": "this checkout, streamed (--crop-memory 0)",
             "baseline": f"baseline ({args.baseline})"}
    for who in sources:
        warm_s = f"{warm[who]:.1f}" if who in warm else "-"
        lines.append(f"| {label[who]} | {statistics.median(rates[who]):.2f} | {statistics.median(ratios[who]):.3f} "
                     f"[{min(ratios[who]):.3f}, {max(ratios[who]):.3f}] | {statistics.median(rss[who]):.0f} | {warm_s} |")
    lines.append("")
    lines.append("goal: ratio >= 0.95 with one backend at 61 photos")
    m.write("performance.md", "throughput", lines, write=args.write)


if __name__ == "__main__":
    main()

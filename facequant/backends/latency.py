"""Timing a backend on its own runtime: any callable that runs one batch (Backend.batch_runner),
at batch 1 and at the sweep's batch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def time_runs(run_one: Callable[[], Any], runs: int, warmup: int) -> np.ndarray:
    """Milliseconds of each of `runs` calls of `run_one` (one batch on a backend's runtime),
    after `warmup` discarded calls."""
    for _ in range(warmup):
        run_one()
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = time.perf_counter()
        run_one()
        times[i] = (time.perf_counter() - t0) * 1e3
    return times


#: Runs timed at the sweep's batch: fewer than at batch 1 (a batch of 64 takes 64 times longer).
BATCH_RUNS, BATCH_WARMUP = 5, 1


def runner_latency(runner: Callable[[int], Callable[[], Any] | None], batch: int, runs: int = 50,
                   warmup: int = 5) -> dict[str, float | int] | None:
    """p50 / p95 ms of one batch-1 inference, and p50 of one inference of `batch` inputs,
    on a backend's own runtime (`runner` is Backend.batch_runner); None when nothing runs here."""
    one = runner(1)
    if one is None:
        return None
    t1 = time_runs(one, runs, warmup)
    out: dict[str, float | int] = {"p50_ms": float(np.percentile(t1, 50)), "p95_ms": float(np.percentile(t1, 95)),
                                   "batch": int(batch), "batch_p50_ms": math.nan}
    big = runner(batch) if batch > 1 else None
    if big is not None:
        out["batch_p50_ms"] = float(np.percentile(time_runs(big, BATCH_RUNS, BATCH_WARMUP), 50))
    elif batch == 1:
        out["batch_p50_ms"] = out["p50_ms"]
    return out

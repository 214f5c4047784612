"""Latency that does not flip with the machine's load: backends timed in interleaved rounds.

Timing one backend after another lets a burst of load land on one of them: two identical runs
measured int8-pt at 0.72x and 1.22x fp32. Here every round runs each backend's one-batch call
`per_round` times, in an order rotated from round to round (no backend always runs first, or
always right after the same one), and keeps each backend's median of that round. Load that
comes and goes hits all backends of a round alike, so the per-round *ratio* to the reference is
steadier than either time. Across rounds the median is the figure and the 10th-90th percentile
range its spread, for both the milliseconds and the ratio.

Generic over "a callable that runs one batch": ONNX Runtime's (facequant.backends.base.
Backend.batch_runner) or any other runtime's. The clock is injectable (time.perf_counter by
default), so a test drives it with a stand-in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from facequant.errors import FacequantError

Runner = Callable[[], object]
Clock = Callable[[], float]

#: Percentiles of the per-round figures that make the spread.
SPREAD = (10.0, 90.0)


@dataclass(frozen=True)
class TimingSettings:
    """How latency is timed: rounds x calls per round after warmup calls, ORT intra-op threads."""

    rounds: int = 9
    per_round: int = 5
    warmup: int = 3
    #: One thread: a multi-threaded batch-1 call on a shared machine times the scheduler as much
    #: as the model, and a fixed count keeps runs comparable.
    threads: int = 1

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.per_round < 1 or self.warmup < 0 or self.threads < 1:
            raise FacequantError(f"timing: need rounds, per_round and threads >= 1 and warmup >= 0, got {self}")

    def describe(self) -> dict[str, object]:
        return {**asdict(self), "batch": 1, "order": "rotated every round",
                "figure": "median of the per-round medians", "spread": f"p{SPREAD[0]:g}-p{SPREAD[1]:g} across rounds",
                "ratio": "per round, backend / reference, then the median across rounds"}


@dataclass(frozen=True)
class Latency:
    """One backend's timing: ms figures, and its ratio to the reference round by round."""

    p50_ms: float  # median of the per-round medians
    low_ms: float  # spread across rounds
    high_ms: float
    p95_ms: float  # of every timed call
    ratio: float  # median over rounds of (this round's median / the reference's); NaN without a reference
    ratio_low: float
    ratio_high: float
    rounds: int
    batch: int = 1  # the sweep's batch, timed too (cost.cpu_latencies)
    batch_p50_ms: float = math.nan  # median of one call of `batch` inputs


def interleaved(runners: Mapping[str, Runner], settings: TimingSettings = TimingSettings(),  # noqa: B008 - frozen
                clock: Clock = time.perf_counter, reference: str = "fp32") -> dict[str, Latency]:
    """Time every runner in interleaved rounds (see the module docstring)."""
    names = list(runners)
    if not names:
        return {}
    for name in names:
        for _ in range(settings.warmup):  # allocation, kernel choice and caches settle first
            runners[name]()
    medians = np.empty((settings.rounds, len(names)))
    calls: dict[str, list[float]] = {n: [] for n in names}
    for r in range(settings.rounds):
        shift = r % len(names)
        order = names[shift:] + names[:shift]
        if (r // len(names)) % 2:  # every other cycle backwards: each one follows each other one
            order = order[::-1]
        for name in order:
            times = []
            for _ in range(settings.per_round):
                t0 = clock()
                runners[name]()
                times.append((clock() - t0) * 1e3)
            calls[name].extend(times)
            medians[r, names.index(name)] = float(np.median(times))
    ref = names.index(reference) if reference in names else None
    out = {}
    for k, name in enumerate(names):
        low, high = np.percentile(medians[:, k], SPREAD)
        if ref is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios = medians[:, k] / medians[:, ref]
            ratio, (r_low, r_high) = float(np.median(ratios)), np.percentile(ratios, SPREAD)
        else:
            ratio, r_low, r_high = np.nan, np.nan, np.nan
        out[name] = Latency(float(np.median(medians[:, k])), float(low), float(high),
                            float(np.percentile(calls[name], 95)), ratio, float(r_low), float(r_high), settings.rounds)
    return out

"""Latency that does not flip: interleaved timing (facequant.backends.timing) driven by a
stand-in clock, and the recommendation built on it. No real timing here: the clock and the
"inference" calls are simulated, so every number is known."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from test_recommend import flat, make_results, scenario

from facequant.analysis import recommend as rc
from facequant.backends.cost import cost_table
from facequant.backends.timing import TimingSettings, interleaved
from facequant.errors import FacequantError


class StandInClock:
    """A clock that only moves when a stand-in inference call makes it: each call takes its
    backend's time times the machine's load at that moment, plus noise."""

    def __init__(self, load: Callable[[float], float] | None = None, noise: float = 0.0, seed: int = 0) -> None:
        self.now = 0.0
        self.load = load or (lambda t: 1.0)
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> float:
        return self.now

    def runner(self, ms: float) -> Callable[[], None]:
        """A zero-argument call, like an inference session's, taking `ms` at no load."""
        def run() -> None:
            jitter = math.exp(self.rng.normal(0.0, self.noise)) if self.noise else 1.0
            self.now += ms / 1e3 * self.load(self.now) * jitter
        return run


def _step_load(at_s: float) -> Callable[[float], float]:
    """The machine is idle, then another job takes half of it (everything runs twice as slow)."""
    return lambda t: 1.0 if t < at_s else 2.0


def test_interleaved_rounds_cancel_load_that_sequential_timing_mistakes_for_speed():
    settings = TimingSettings(rounds=9, per_round=5, warmup=0)
    # one backend after the other: fp32 is timed idle, int8-pt under load, and looks 2x slower
    clock = StandInClock(_step_load(0.5))
    alone = {name: interleaved({name: clock.runner(10.0)}, settings, clock)[name].p50_ms for name in ("fp32", "int8")}
    assert alone["int8"] / alone["fp32"] == pytest.approx(2.0)
    # interleaved: the load arrives in the middle of the same run, and hits both alike
    clock = StandInClock(_step_load(0.5))
    timed = interleaved({"fp32": clock.runner(10.0), "int8-pt": clock.runner(10.0)}, settings, clock)
    assert timed["int8-pt"].ratio == pytest.approx(1.0)
    assert timed["int8-pt"].low_ms == pytest.approx(10.0) and timed["int8-pt"].high_ms == pytest.approx(20.0)
    assert timed["fp32"].ratio == 1.0 and timed["int8-pt"].rounds == 9


def test_a_real_difference_is_seen_through_load_and_noise():
    clock = StandInClock(lambda t: 1.0 + 0.8 * math.sin(t * 7.0), noise=0.1, seed=3)
    timed = interleaved({"fp32": clock.runner(10.0), "int8-pt": clock.runner(6.0)}, TimingSettings(), clock)
    assert timed["int8-pt"].ratio == pytest.approx(0.6, rel=0.1)
    assert timed["int8-pt"].ratio_high < 0.8  # the spread stays clear of 1: a gap, not noise


def _costs(seed: int, int8_ms: float = 10.0) -> pd.DataFrame:
    """cost.csv rows of fp32 and int8-pt timed by a stand-in clock: load that comes and goes and
    15 % noise on every call."""
    clock = StandInClock(lambda t: 1.0 + 0.5 * math.sin(t * 3.0 + seed), noise=0.15, seed=seed)
    timed = interleaved({"fp32": clock.runner(10.0), "int8-pt": clock.runner(int8_ms)}, TimingSettings(), clock)
    rows = [{"backend": name, "file_bytes": size, "layers_8bit": 50 if name != "fp32" else 0, "layers_16bit": 0,
             "layers_float": 50 if name == "fp32" else 0, "cpu_latency_p50_ms": timed[name].p50_ms,
             "cpu_latency_p95_ms": timed[name].p95_ms, "latency_source": "stand-in clock",
             "device_latency_ms": math.nan, "cpu_latency_low_ms": timed[name].low_ms,
             "cpu_latency_high_ms": timed[name].high_ms, "cpu_vs_fp32": timed[name].ratio,
             "cpu_vs_fp32_low": timed[name].ratio_low, "cpu_vs_fp32_high": timed[name].ratio_high,
             "latency_rounds": timed[name].rounds}
            for name, size in (("fp32", 4_900_000), ("int8-pt", 1_400_000))]
    return cost_table(rows)


def _recommend(cost: pd.DataFrame) -> rc.ScenarioVerdict:
    results = make_results({"fp32": flat(0.99), "int8-pt": flat(0.99)})
    results["cost"] = cost
    return rc.evaluate_scenario(results, scenario())


def test_timings_that_differ_only_by_noise_give_the_same_recommendation_and_say_so():
    picks, notes = [], []
    for seed in range(6):  # six runs of the same two equally fast backends, each with its own noise
        v = _recommend(_costs(seed))
        picks.append(v.recommended)
        notes.append(" ".join(v.notes))
        ratio = float(v.backends[0].latency_vs_fp32)
        assert 0.8 < ratio < 1.25  # the noise moves the figure ...
    assert set(picks) == {"int8-pt"}  # ... never the pick: a tie on latency goes to the smaller file
    assert all("latency within noise decided nothing between " in n and "fp32 1.00x fp32" in n
               and "ties go to the smaller file" in n and "which chose int8-pt" in n for n in notes), notes


def test_a_gap_beyond_the_noise_still_decides():
    v = _recommend(_costs(0, int8_ms=5.0))
    assert v.recommended == "int8-pt" and not any("within noise" in n for n in v.notes)
    fp32 = {b.backend: b for b in v.backends}["fp32"]
    assert "slower than int8-pt by more than 10% and beyond the spread of interleaved rounds" in fp32.reason


def test_latency_choice_off_and_device():
    results = make_results({"fp32": flat(0.99), "int8-pt": flat(0.99)},
                           cost={"fp32": {"cpu_latency_p50_ms": 5.0, "file_bytes": 900_000},
                                 "int8-pt": {"cpu_latency_p50_ms": 10.0}})
    assert rc.evaluate_scenario(results, scenario()).recommended == "fp32"  # the CPU says fp32 is faster
    off = rc.evaluate_scenario(results, scenario(), latency="off")
    assert off.recommended == "fp32" and off.cost_basis.startswith("latency off: file size")
    assert any("--latency off: the 1.5x fp32 budget is not checked" in n for n in off.notes)
    with pytest.raises(FacequantError, match="--latency device: no device latency for fp32, int8-pt"):
        rc.evaluate_scenario(results, scenario(), latency="device")


def test_budget_exceeded_only_within_the_spread_is_no_rejection():
    results = make_results({"fp32": flat(0.99), "slow": flat(0.99)})
    cost = results["cost"]
    cost.loc[cost.backend == "slow", ["latency_vs_fp32", "latency_vs_fp32_low", "latency_vs_fp32_high"]] = [1.6, 1.4,
                                                                                                            1.8]
    results["cost"] = cost
    v = rc.evaluate_scenario(results, scenario(budget=1.5))
    slow = {b.backend: b for b in v.backends}["slow"]
    assert slow.verdict != rc.REJECTED
    cost.loc[cost.backend == "slow", ["latency_vs_fp32_low"]] = 1.55
    v = rc.evaluate_scenario(results, scenario(budget=1.5))
    assert {b.backend: b for b in v.backends}["slow"].reason == "over budget: 1.60x fp32 (cpu) > 1.5x"


def test_recommend_latency_off_in_a_config_file_is_the_choice_not_false(tmp_path):
    from facequant.config import WHAT, Option, read_config

    option = Option("latency", "which latency", WHAT, choices=("cpu", "device", "off"))
    path = tmp_path / "recommend.yaml"
    path.write_text("latency: off\n")  # YAML 1.1 reads an unquoted off as false
    assert read_config(path, [option]) == {"latency": "off"}
    path.write_text("latency: yes\n")
    with pytest.raises(FacequantError, match="latency: expected a value for --latency, got True"):
        read_config(path, [option])

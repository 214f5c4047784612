"""A sweep without a model: run_sweep's calling contract (progress, a callback per distance, a
cancel event, a partial result) over fake rows, for the TUI's and the output rules' tests."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pandas as pd


def fake_sweep_rows(distances: list[float]) -> pd.DataFrame:
    rows = [{"model": "m.onnx", "backend": b, "distance_m": d, "face_px": 192 / d, "n_probes": 10, "n_genuine": 10,
             "n_impostor": 90, "prenorm_mean": 4 - d / 4, "prenorm_p05": 3.0, "prenorm_p50": 4 - d / 4,
             "prenorm_p95": 5.0, "cos_to_fp32_mean": 1.0, "genuine_cos_mean": 0.7, "impostor_cos_mean": 0.0,
             "threshold": 0.4, "tar": max(0.0, 1 - d / 10), "tar_ci_low": 0.5, "tar_ci_high": 1.0, "far": 0.0,
             "far_ci_low": 0.0, "far_ci_high": 0.01, "n_not_simulated": 0}
            for b in ("fp32", "int8-pt") for d in distances]
    return pd.DataFrame(rows)


def fake_result(config: object, done: list[float], planned: list[float]) -> object:
    """A SweepResult over fake rows, as run_sweep returns it (partial when done < planned)."""
    from facequant.evaluate import cliff as cliff_table
    from facequant.models.spec import ModelSpec
    from facequant.simulate.camera import CameraProfile
    from facequant.sweep.result import GENUINE_COLUMNS, SweepResult

    rows = fake_sweep_rows(done)
    spec = ModelSpec("m.onnx", "in", "out", (112, 112), 127.5, 127.5, "RGB", 512, 13, "batch")
    genuine = pd.DataFrame({c: pd.Series(dtype=float) for c in GENUINE_COLUMNS})
    run: dict[str, object] = {"config": config.to_dict(), "distances_m": done}  # type: ignore[attr-defined]
    if len(done) < len(planned):
        run.update({"partial": True, "distances_planned": planned,
                    "partial_reason": f"cancelled after {len(done)} of {len(planned)} distances"})
    return SweepResult(config, "m.onnx", spec, CameraProfile("c", 1920, 90.0), tuple(done), 0.4,  # type: ignore[arg-type]
                       pd.DataFrame(), genuine, rows, cliff_table.cliff_table(rows, genuine, "m.onnx"), run)


def fake_run_sweep(distances: list[float], gate: threading.Event | None = None, fail: bool = False,
                    seen: list[float] | None = None) -> Callable[..., object]:
    """run_sweep's contract without a model: faces (Cancelled when the event is set then), a
    callback per distance, and after a distance, a partial result once `cancel` is set. With a
    gate, every distance after the first waits for it: the test decides when the sweep may go on,
    so a loaded machine cannot finish every distance before a key lands."""
    from facequant.errors import Cancelled

    def fake(config: object, progress: Callable[..., None] | None, on_distance: Callable[..., None],
             cancel: threading.Event | None = None) -> object:
        progress = progress or (lambda *_: None)
        progress("faces", 1, 1)
        if cancel is not None and cancel.is_set():
            raise Cancelled("faces")
        if fail:
            raise RuntimeError("a bug in the sweep")
        done: list[float] = []
        for i, d in enumerate(distances):
            if i and gate is not None and not gate.wait(30):
                raise AssertionError("the test never opened the gate")
            done.append(d)
            on_distance(d, fake_sweep_rows(done))
            if seen is not None:
                seen.append(d)
            progress("distances", i + 1, len(distances))
            if cancel is not None and cancel.is_set():
                break
        return fake_result(config, done, distances)

    return fake

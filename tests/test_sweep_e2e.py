"""End to end on the real model and photos: the CLI a user runs, the files they get."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facequant.cli import main
from facequant.sweep.config import SweepConfig
from facequant.sweep.engine import run_sweep

SWEEP_COLUMNS = ["model", "backend", "distance_m", "face_px", "n_probes", "n_genuine", "n_impostor",
                 "prenorm_mean", "prenorm_p05", "prenorm_p50", "prenorm_p95", "cos_to_fp32_mean",
                 "genuine_cos_mean", "impostor_cos_mean", "threshold", "tar", "tar_ci_low", "tar_ci_high", "far"]
CLIFF_COLUMNS = ["model", "backend", "threshold", "tar_close", "reliable_distance_m", "cliff_distance_m",
                 "cliff_face_px", "cliff_prenorm", "cliff_prenorm_width", "distance_cost_m"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, model_path: Path, celebs13: Path) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "first"
    code = main(["sweep", "--model", str(model_path), "--data", str(celebs13),
                 "--backends", "fp32,int8-pt,int8-pc", "--out", str(out), "--quiet"])
    assert code == 0
    return out


@pytest.mark.slow
def test_outputs_exist_with_contract_columns(run_dir: Path):
    for name in ("sweep.csv", "cliff.csv", "results.csv", "probes.csv", "genuine.parquet", "identification.csv", "run.json",
                 "tar_vs_distance.png", "match_vs_prenorm.png"):
        assert (run_dir / name).stat().st_size > 0, name
    sweep = pd.read_csv(run_dir / "sweep.csv")
    cliff = pd.read_csv(run_dir / "cliff.csv")
    assert list(sweep.columns[: len(SWEEP_COLUMNS)]) == SWEEP_COLUMNS
    assert list(cliff.columns[: len(CLIFF_COLUMNS)]) == CLIFF_COLUMNS
    assert list(sweep.backend.unique()) == ["fp32", "int8-pt", "int8-pc"]
    assert len(sweep) == 3 * 12
    assert (run_dir / "tar_vs_distance.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_fp32_matches_close_and_falls_with_distance(run_dir: Path):
    sweep = pd.read_csv(run_dir / "sweep.csv")
    fp32 = sweep[sweep.backend == "fp32"].sort_values("distance_m")
    close, far = fp32.iloc[0], fp32.iloc[-1]
    assert close.tar >= 0.9
    assert close.far <= 0.01
    assert far.tar < close.tar - 0.5
    # falling overall: strongly negative rank correlation of TAR with distance
    assert fp32.tar.corr(fp32.distance_m, method="spearman") < -0.8
    assert fp32.face_px.is_monotonic_decreasing


@pytest.mark.slow
def test_int8_drifts_from_fp32_with_distance(run_dir: Path):
    sweep = pd.read_csv(run_dir / "sweep.csv")
    pt = sweep[sweep.backend == "int8-pt"].sort_values("distance_m")
    assert pt.cos_to_fp32_mean.iloc[-1] < pt.cos_to_fp32_mean.iloc[0]
    pc = sweep[sweep.backend == "int8-pc"].sort_values("distance_m")
    # per-channel weights stay closer to the float model than per-tensor at every distance
    assert np.all(pc.cos_to_fp32_mean.to_numpy() > pt.cos_to_fp32_mean.to_numpy())


@pytest.mark.slow
def test_cliff_report_is_consistent_with_sweep(run_dir: Path):
    sweep = pd.read_csv(run_dir / "sweep.csv")
    cliff = pd.read_csv(run_dir / "cliff.csv").set_index("backend")
    fp32 = sweep[sweep.backend == "fp32"].sort_values("distance_m")
    assert cliff.loc["fp32", "tar_close"] == pytest.approx(fp32.tar.iloc[0])
    d = cliff.loc["fp32", "cliff_distance_m"]
    half = cliff.loc["fp32", "tar_close"] / 2
    # TAR is above half before the cliff and below it at the next sweep distance past it
    assert (fp32[fp32.distance_m < d].tar >= half).all()
    assert fp32[fp32.distance_m > d].tar.iloc[0] < half
    assert cliff.loc["fp32", "reliable_distance_m"] < d
    assert cliff.loc["fp32", "distance_cost_m"] == 0
    assert 0 < cliff.loc["fp32", "cliff_prenorm"] < sweep.prenorm_p95.max()


@pytest.mark.slow
def test_run_json_records_config_versions_calibration(run_dir: Path):
    run = json.loads((run_dir / "run.json").read_text())
    assert run["config"]["seed"] == 0
    assert run["config"]["backends"] == ["fp32", "int8-pt", "int8-pc"]
    assert run["versions"]["onnxruntime"]
    assert len(run["calibration"]["images"]) == 32
    assert run["model"]["spec"]["opset"] == 9 and run["model"]["sha256"]
    assert run["dataset"]["usable"] + len(run["skipped_images"]) == 61
    assert run["threshold"]["value"] == pytest.approx(pd.read_csv(run_dir / "sweep.csv").threshold.iloc[0])
    assert run["timings"]["embeddings_per_s"] > 0


@pytest.mark.slow
def test_existing_results_are_never_overwritten(run_dir: Path, capsys: pytest.CaptureFixture[str]):
    before = (run_dir / "sweep.csv").read_bytes()
    code = main(["sweep", "--out", str(run_dir), "--distances", "1", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(run_dir) in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert (run_dir / "sweep.csv").read_bytes() == before


@pytest.mark.slow
def test_sweep_is_reproducible(model_path: Path, celebs13: Path):
    from facequant.simulate.camera import Degradation

    config = SweepConfig(model=str(model_path), data=str(celebs13), backends=("fp32", "int8-pt"),
                         distances_m=(1.0, 6.0), degradation=Degradation(0.6, 3.0, 70), seed=3,
                         measure_cost=False)
    a, b = run_sweep(config), run_sweep(config)
    pd.testing.assert_frame_equal(a.sweep, b.sweep)
    pd.testing.assert_frame_equal(a.probes, b.probes)


@pytest.mark.slow
def test_bad_photos_are_recorded_not_dropped(tmp_path: Path, model_path: Path, celebs13: Path, multi_face: Path):
    data = tmp_path / "data"
    for person in ("person01", "person02"):
        (data / person).mkdir(parents=True)
        for photo in sorted((celebs13 / person).iterdir())[:3]:
            shutil.copy(photo, data / person / photo.name)
    (data / "person01" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 20)
    import cv2

    cv2.imwrite(str(data / "person02" / "blank.png"), np.full((480, 640, 3), 128, np.uint8))
    (data / "person03").mkdir()
    shutil.copy(multi_face / "couple.jpg", data / "person03" / "couple.jpg")
    out = tmp_path / "run"
    code = main(["sweep", "--model", str(model_path), "--data", str(data), "--backends", "fp32",
                 "--distances", "1,4", "--out", str(out), "--quiet"])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    reasons = {s["image"]: s["reason"] for s in run["skipped_images"]}
    assert "corrupt" in reasons["person01/corrupt.jpg"] or "decode" in reasons["person01/corrupt.jpg"]
    assert reasons["person02/blank.png"] == "no face found"
    assert any(m["image"] == "person03/couple.jpg" and m["faces"] > 1 for m in run["multi_face_images"])
    assert run["dataset"]["usable"] == 7


def test_missing_model_and_data_give_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], celebs13: Path):
    code = main(["sweep", "--model", str(tmp_path / "nope.onnx"), "--data", str(celebs13), "--out",
                 str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nope" in err and len(err.splitlines()) == 1
    code = main(["sweep", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "r2"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nodata" in err and "not found" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_nan_embeddings_are_refused_naming_the_backend():
    from facequant.errors import FacequantError
    from facequant.sweep.engine import checked

    raw = np.ones((3, 4), np.float32)
    assert checked({"fp32": raw})["fp32"] is raw
    raw[1, 2] = np.nan
    with pytest.raises(FacequantError, match="int8-pt: 1 of 3 embeddings are NaN"):
        checked({"fp32": np.ones((3, 4)), "int8-pt": raw})


@pytest.mark.slow
def test_calibration_folder_is_used_and_recorded(model_path: Path, celebs13: Path, multi_face: Path):
    base = SweepConfig(model=str(model_path), data=str(celebs13), backends=("fp32", "int8-pt"), distances_m=(2.0,),
                       measure_cost=False)
    own = run_sweep(base)
    other = run_sweep(SweepConfig(**{**base.to_dict(), "degradation": base.degradation,
                                     "calibration_data": str(multi_face), "calibration_size": 2}))
    cal = other.run["calibration"]
    assert cal["source"] == str(multi_face) and len(cal["images"]) == 2
    assert all((multi_face / name).is_file() for name in cal["images"])
    assert own.run["backends"]["int8-pt"]["model"] != other.run["backends"]["int8-pt"]["model"]
    a = own.probes[own.probes.backend == "int8-pt"].cos_to_fp32.to_numpy()
    b = other.probes[other.probes.backend == "int8-pt"].cos_to_fp32.to_numpy()
    assert not np.allclose(a, b)


@pytest.mark.slow
def test_cost_table_written_with_layer_counts(run_dir: Path):
    from facequant.results.directory import load_results

    cost = pd.read_csv(run_dir / "cost.csv").set_index("backend")
    assert cost.loc["fp32", "layers_float"] == 50 and cost.loc["fp32", "layers_8bit"] == 0
    assert cost.loc["int8-pt", "layers_8bit"] == 50
    assert cost.loc["int8-pt", "file_bytes"] < cost.loc["fp32", "file_bytes"] / 3
    assert cost.loc["fp32", "latency_vs_fp32"] == pytest.approx(1.0)
    assert (cost.cpu_latency_p50_ms > 0).all() and (cost.cpu_latency_p95_ms >= cost.cpu_latency_p50_ms).all()
    loaded = load_results(run_dir)
    assert (loaded["cliff"].degenerate == "").all()  # healthy backends, read back as empty, not NaN
    assert "cpu_latency" in json.loads((run_dir / "run.json").read_text())["cost"]


def test_summary_hides_distances_of_a_degenerate_backend():
    from facequant.results.summary import summary_rows

    cliff = pd.DataFrame({"backend": ["fp32", "broken"], "tar_close": [0.99, 1.0], "reliable_distance_m": [5.0, 12.0],
                          "cliff_distance_m": [7.0, float("inf")], "cliff_prenorm": [3.1, float("nan")],
                          "cliff_prenorm_width": [0.7, float("nan")], "degenerate": ["", "pre-norm CV 0.001 (constant)"]})
    rows = {r[0]: r for r in summary_rows(cliff)}
    assert rows["fp32"][2] == "5.00 m" and rows["fp32"][1] == "ref."
    assert rows["broken"][2] == "DEGENERATE" and rows["broken"][3] == "DEGENERATE"


@pytest.mark.slow
def test_pow2_moves_travel_with_the_results(tmp_path: Path, model_path: Path, celebs13: Path):
    from facequant.results.directory import write_results

    result = run_sweep(SweepConfig(model=str(model_path), data=str(celebs13), backends=("fp32", "int8-npu"),
                                   distances_m=(1.0,), measure_cost=False))
    out = write_results(result, tmp_path / "npu")
    moves = json.loads((out / "pow2_moves_int8-npu.json").read_text())["moves"]
    assert len(moves) > 50
    assert all(abs(m["log2_ratio"]) <= 0.5 + 1e-9 for m in moves if m["kind"] == "activation")  # nearest
    assert all(abs(m["log2_ratio"]) < 1.0 for m in moves if m["kind"] == "weight")  # below or above
    run = json.loads((out / "run.json").read_text())
    assert run["backends"]["int8-npu"]["pow2_scales"]["moves_file"] == "pow2_moves_int8-npu.json"


@pytest.mark.slow
def test_default_sweep_verdicts_and_intervals_do_not_depend_on_the_bootstrap_seed(run_dir: Path):
    """Issue 15's done-when on the default celebs13 sweep: each backend's distances with their
    intervals, a verdict per backend, the same verdicts for bootstrap seeds 0..4."""
    from facequant.evaluate import people, verdicts
    from facequant.results.summary import summary_rows

    cliff = pd.read_csv(run_dir / "cliff.csv", keep_default_na=False, na_values=[""])
    sweep = pd.read_csv(run_dir / "sweep.csv")
    run = json.loads((run_dir / "run.json").read_text())
    interval_columns = ["reliable_distance_low_m", "reliable_distance_high_m", "cliff_distance_low_m",
                        "cliff_distance_high_m", "distance_cost_low_m", "distance_cost_high_m"]
    assert set(["verdict", "worse_from_m", *interval_columns]) <= set(cliff.columns)
    for r in cliff.itertuples():
        assert r.reliable_distance_low_m <= r.reliable_distance_m <= r.reliable_distance_high_m
        assert r.cliff_distance_low_m <= r.cliff_distance_m <= r.cliff_distance_high_m
    judged = cliff[cliff.backend != "fp32"]
    assert set(judged.verdict) <= {"same", "worse", "better", "degenerate"} and len(judged) == 2
    assert run["verdicts"]["bootstrap"]["resamples"] == people.DEFAULT_RESAMPLES and run["verdicts"]["people"] == 13
    rows = {r[0]: r for r in summary_rows(cliff, sweep)}
    for backend in judged.backend:  # the summary: verdict, and the reliable distance over its interval
        assert rows[backend][1].split("\n")[0] == judged.set_index("backend").loc[backend, "verdict"]
        assert rows[backend][2].count("[") == 1
    # the same verdicts (and nearly the same intervals) for bootstrap seeds 0..4, from the files read back
    probes = pd.read_csv(run_dir / "probes.csv")
    counts = people.person_counts(people.outcomes(pd.read_parquet(run_dir / "genuine.parquet"), cliff.threshold[0]),
                                  dict(zip(probes.image, probes.identity, strict=False)), list(cliff.backend),
                                  sorted(sweep.distance_m.unique()))
    base = cliff.drop(columns=list(verdicts.VERDICT_COLUMNS))
    for seed in range(5):
        again, _ = verdicts.judge(base, sweep, counts, 1e-3, verdicts.VerdictSettings(seed=seed))
        assert again.verdict.fillna("").tolist() == cliff.verdict.fillna("").tolist()
        for column in interval_columns:
            assert np.allclose(again[column], cliff[column], atol=0.25), column


@pytest.mark.slow
def test_cancel_is_the_cores_and_a_partial_run_is_written_by_the_one_writer(tmp_path: Path, model_path: Path,
                                                                           celebs13: Path):
    import threading

    from facequant import api
    from facequant.errors import Cancelled
    from facequant.results import directory

    config = SweepConfig(model=str(model_path), data=str(celebs13), backends=("fp32", "int8-pt"),
                         distances_m=(1.0, 3.0, 6.0, 9.0), measure_cost=False)
    cancel = threading.Event()
    seen: list[float] = []

    def on_distance(distance: float, rows: pd.DataFrame) -> None:
        seen.append(distance)
        cancel.set()  # pressed while the first distance finishes: it is kept, the rest never run

    result = api.sweep(config, api.Output(tmp_path / "partial"), on_distance=on_distance, cancel=cancel)
    assert result.partial and seen == [1.0] and result.distances_m == (1.0,)
    loaded = directory.load_results(tmp_path / "partial")
    run = loaded["run"]
    assert isinstance(run, dict) and run["partial"] is True and run["distances_planned"] == [1.0, 3.0, 6.0, 9.0]
    assert run["partial_reason"] == "cancelled after 1 of 4 distances" and run["distances_m"] == [1.0]
    # the same files a complete run has, over the distance done
    for name in ("sweep.csv", "cliff.csv", "results.csv", "probes.csv", "genuine.parquet", "tar_vs_distance.png"):
        assert (tmp_path / "partial" / name).is_file(), name
    assert sorted(pd.read_csv(tmp_path / "partial" / "sweep.csv").distance_m.unique()) == [1.0]

    with pytest.raises(Cancelled):  # set before the first distance: nothing to keep, nothing written
        api.sweep(config, api.Output(tmp_path / "early"), cancel=cancel)
    assert not (tmp_path / "early").exists()

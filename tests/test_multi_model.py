"""Several models in one run (issue 12, part 5): `sweep --model a,b,c` runs the same probes
through each model into one results directory, with the model column filled, models.csv,
cliff_by_model.png, and a recommendation among (model, backend) pairs per scenario."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest
from corpus import one_line_error, shared_asset

from facequant import settings
from facequant.cli import main
from facequant.errors import FacequantError
from facequant.models.sources import split_models
from facequant.results.directory import load_results
from facequant.results.multi_model import model_labels

MODELS = ("faceplugin-fr/fr_feature.onnx", "human-mobileface/mobileface.onnx", "hse-faceres/faceres.onnx")


def _shared_models() -> list[Path]:
    paths = [settings.shared_dir() / "models" / rel for rel in MODELS]
    return [shared_asset(path) for path in paths]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- naming models


def test_split_models_reads_a_comma_list_and_keeps_an_existing_path_whole(tmp_path: Path):
    assert split_models("a.onnx,b.onnx") == ["a.onnx", "b.onnx"]
    assert split_models("faceplugin") == ["faceplugin"]
    odd = tmp_path / "my,model.onnx"
    odd.write_bytes(b"x")
    assert split_models(str(odd)) == [str(odd)]


@pytest.mark.parametrize("value, named", [("a.onnx,,b.onnx", "an empty item"), ("a.onnx,a.onnx", "listed twice")])
def test_split_models_refuses_empty_items_and_repeats(value: str, named: str):
    with pytest.raises(FacequantError, match=named):
        split_models(value)


def test_model_labels_are_short_unique_and_folder_safe():
    assert model_labels(["x/fr_feature.onnx", "y/faceres.onnx"]) == ["fr_feature", "faceres"]
    assert model_labels(["a/model.onnx", "b/model.onnx"]) == ["a_model", "b_model"]
    assert model_labels(["a/m.onnx", "b/a_m.onnx", "c/a/m.onnx"])[0] != model_labels(["a/m.onnx", "b/a_m.onnx", "c/a/m.onnx"])[2]
    assert all("/" not in label and " " not in label for label in model_labels(["a b/c d.onnx", "e/f.onnx"]))


def test_sweep_refuses_a_repeated_model_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["sweep", "--model", "faceplugin,faceplugin", "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2
    one_line_error(capsys, "--model", "listed twice")
    assert not (tmp_path / "r").exists()


def test_a_missing_second_model_is_refused_before_the_first_one_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("facequant.sweep.engine.run_sweep", lambda *a, **k: pytest.fail("work started"))
    first = _shared_models()[0]
    code = main(["sweep", "--model", f"{first},{tmp_path / 'missing.onnx'}", "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2
    one_line_error(capsys, "missing.onnx")
    assert not (tmp_path / "r").exists()


def test_other_commands_say_several_models_are_for_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    a, b = _shared_models()[:2]
    code = main(["export-probes", "--model", f"{a},{b}", "--out", str(tmp_path / "p"), "--quiet"])
    assert code == 2
    one_line_error(capsys, "facequant sweep", "several models")
    assert not (tmp_path / "p").exists()


# --------------------------------------------------------------------------- a three-model run


@pytest.fixture(scope="module")
def three_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    paths = _shared_models()
    out = tmp_path_factory.mktemp("multi") / "three"
    code, text, err = _run(["sweep", "--model", ",".join(map(str, paths)), "--data", str(settings.default_dataset_path()),
                            "--distances", "0.5,3,8", "--no-latency", "--quiet", "--out", str(out)])
    assert code == 0, err
    return out, " ".join(text.split())


@pytest.mark.slow
def test_three_models_write_one_directory_with_the_model_column_filled(three_models: tuple[Path, str]):
    out, _ = three_models
    sweep = pd.read_csv(out / "sweep.csv")
    assert list(dict.fromkeys(sweep.model)) == ["fr_feature", "mobileface", "faceres"]
    assert len(sweep) == 3 * 3 * 3  # models x backends x distances
    tidy = pd.read_csv(out / "results.csv")
    assert set(tidy.model) == set(sweep.model) and {"tar", "far"} <= set(tidy.metric)
    models = pd.read_csv(out / "models.csv", keep_default_na=False)
    assert list(models.columns[:6]) == ["model", "backend", "model_path", "embedding_dim", "input_px", "preprocessing"]
    dims = models.groupby("model").embedding_dim.first().to_dict()
    assert dims == {"fr_feature": 512, "mobileface": 256, "faceres": 1024}
    assert models.groupby("model").input_px.first().to_dict()["faceres"] == 224
    # each model chose its own preprocessing on data, and set its own threshold
    run = json.loads((out / "run.json").read_text())
    assert run["multi_model"] is True and [m["label"] for m in run["models"]] == ["fr_feature", "mobileface", "faceres"]
    assert {m["label"]: m["preprocessing"] for m in run["models"]}["faceres"] == "bgr-caffe"
    assert len({round(m["threshold"], 4) for m in run["models"]}) == 3
    assert (out / "cliff_by_model.png").stat().st_size > 10_000


@pytest.mark.slow
def test_three_models_see_the_same_probes_and_keep_their_own_results(three_models: tuple[Path, str]):
    out, _ = three_models
    probes = {label: pd.read_csv(out / "models" / label / "probes.csv") for label in ("fr_feature", "mobileface", "faceres")}
    keys = {label: p.loc[p.backend == "fp32", ["image", "distance_m", "face_px"]].reset_index(drop=True)
            for label, p in probes.items()}
    pd.testing.assert_frame_equal(keys["fr_feature"], keys["mobileface"])
    pd.testing.assert_frame_equal(keys["fr_feature"], keys["faceres"])
    # each model's folder is a results directory of its own, the same rows as the combined table
    sweep = pd.read_csv(out / "sweep.csv")
    own = load_results(out / "models" / "faceres")["sweep"]
    assert own.tar.tolist() == sweep.loc[sweep.model == "faceres", "tar"].tolist()


@pytest.mark.slow
def test_three_models_report_model_specific_damage_and_recommend_among_pairs(three_models: tuple[Path, str]):
    out, text = three_models
    models = pd.read_csv(out / "models.csv", keep_default_na=False).set_index(["model", "backend"])
    # SOURCE.md: faceres per-tensor INT8 collapses, per-channel holds; the others do not collapse
    assert models.loc[("faceres", "int8-pt"), "degenerate"] != ""
    assert models.loc[("faceres", "int8-pc"), "degenerate"] == ""
    assert models.loc[("fr_feature", "fp32"), "tar_close"] > models.loc[("mobileface", "fp32"), "tar_close"]
    rec = pd.read_csv(out / "recommend.csv")
    assert set(rec.scenario) >= {"kiosk", "corridor"}
    assert rec.backend.str.contains("/").all()  # candidates are (model, backend) pairs
    chosen = rec.loc[rec.verdict == "recommended", "backend"]
    assert "faceres/int8-pt" not in set(chosen)  # a degenerate pair is never chosen
    assert "recommendation per scenario, among (model, backend) pairs" in text
    assert "3 models on the same probes" in text
    # the directory reads back as pairs for the recommendation and the TUI
    loaded = load_results(out)
    assert "faceres/int8-pc" in set(loaded["sweep"].backend) and loaded["model_px"]["faceres/int8-pc"] == 224.0


@pytest.mark.slow
def test_force_replaces_a_multi_model_directory_after_recommend_on_one_model(three_models: tuple[Path, str]):
    from facequant.results.output import check_output_dir, marker_problem

    out, _ = three_models
    code, _, err = _run(["recommend", "--results", str(out / "models" / "mobileface")])
    assert code == 0, err
    assert (out / "models" / "mobileface" / "recommend.csv").is_file()
    assert marker_problem(out) is None  # recommend.csv beside a run.json facequant wrote is its own
    check_output_dir(out, force=True)
    stray = out / "models" / "faceres" / "notes.txt"
    stray.write_text("mine")
    try:
        assert "models/faceres/notes.txt" in (marker_problem(out) or "")
    finally:
        stray.unlink()


@pytest.mark.slow
def test_identification_rates_and_the_tui_read_a_multi_model_directory_as_pairs(three_models: tuple[Path, str],
                                                                                 tmp_path: Path):
    import shutil

    from facequant.analysis.recommend.directory import recommend_dir
    from tui import state

    out, _ = three_models
    copy = tmp_path / "ident"
    shutil.copytree(out, copy)
    run = json.loads((copy / "run.json").read_text())
    run["protocol"] = "identification"  # the same tables read under the other protocol
    (copy / "run.json").write_text(json.dumps(run))
    loaded = load_results(copy)
    ident = pd.read_csv(copy / "identification.csv")
    rates = loaded["rates"].set_index(["backend", "distance_m"])
    for row in ident.itertuples():  # each pair's TPIR, not another model's with the same backend name
        assert rates.loc[(f"{row.model}/{row.backend}", row.distance_m), "tar"] == pytest.approx(row.tpir, nan_ok=True)
    assert recommend_dir(copy, write=False).verdicts
    data = state.load_run(out)  # the TUI's results screen
    assert len(data.sweep.backend.unique()) == 9 and data.sweep.backend.str.contains("/").all()

"""Issue 19's option frictions, each as a new user met it: --model's help per command, every
default shown in --help, export-precision's --calib-method, and the options a study ignores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from facequant.cli import main

SEVERAL = "Several, comma-separated"
ONE_MODEL = ("study", "diagnose", "search-precision", "export-probes", "export-precision", "validate-sim", "tui")


def help_text(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return capsys.readouterr().out


def option_help(text: str, option: str) -> str:
    """One option's entry in --help, on one line (from its name to the next option's)."""
    found = re.search(rf"^  {option}(?=[ \n])(.*?)(?=^  -|^\S|\Z)", text, flags=re.M | re.S)
    assert found, option
    return " ".join(found.group(1).split())


def test_model_help__only_sweep_takes_several(capsys: pytest.CaptureFixture[str]):
    assert SEVERAL in option_help(help_text(capsys, "sweep"), "--model")
    for command in ONE_MODEL:
        text = option_help(help_text(capsys, command), "--model")
        assert "ONNX" in text and SEVERAL not in text and "comma-separated" not in text, command
    assert SEVERAL not in " ".join(help_text(capsys, "models", "check").split())


@pytest.mark.parametrize("command,option,default", [
    ("sweep", "--far", "0.001"), ("sweep", "--fpir", "0.01"), ("sweep", "--batch-size", "64"),
    ("sweep", "--camera", "1080p-90"), ("sweep", "--executor", "local"), ("diagnose", "--snr-threshold", "10"),
    ("search-precision", "--tolerance", "0.25"), ("recommend", "--latency-tolerance", "0.1"),
    ("recommend", "--latency", "auto"), ("validate-sim", "--backends", "fp32,int8-pt"),
    ("study", "--recipe", "int8-pt"), ("models check", "--photos", "32"),
])
def test_defaults_shown_in_help(command: str, option: str, default: str, capsys: pytest.CaptureFixture[str]):
    assert f"(default {default})" in option_help(help_text(capsys, *command.split()), option)


def test_export_precision__calib_method_entropy_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]):
    """As diagnose and search-precision take it: parsed, checked (a bad name refused in one
    line) and carried in the export's config (the slow test below runs the export)."""
    seen: list[object] = []
    written = {"warnings": [], "ort": "o", "precision": "p", "hailo": "h", "run": "r"}
    monkeypatch.setattr("facequant.api.export_precision",
                        lambda config, output, progress: seen.append(config) or written)
    args = ["export-precision", "int8-pt", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--quiet"]
    assert main([*args, "--calib-method", "magic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --calib-method" in err and not seen
    assert main([*args, "--calib-method", "entropy"]) == 0
    assert seen[0].sweep.calibration_method == "entropy"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_export_precision__calib_method_entropy_used(tmp_path: Path, model_path: Path, celebs13: Path):
    """The exported recipe is calibrated with entropy: run.json's recipe says so."""
    out = tmp_path / "exports"
    args = ["export-precision", "int8-pt+16bit:last1", "--model", str(model_path), "--data", str(celebs13),
            "--calib-size", "4", "--distances", "1", "--out", str(out), "--quiet"]
    assert main([*args, "--calib-method", "entropy"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["recipe"]["calibration_method"] == "entropy"
    assert run["config"]["sweep"]["calibration_method"] == "entropy"


STUDY_REFUSALS = {  # id: (argv after `study`, the option refused, the option the study varies)
    "method-with-sizes": (["calibration-method", "--sizes", "16"], "--sizes", "--methods"),
    "method-with-mixes": (["calibration-method", "--mixes", "0.5"], "--mixes", "--methods"),
    "method-with-calib-method": (["calibration-method", "--calib-method", "entropy"], "--calib-method", "--methods"),
    "size-with-calib-size": (["calibration-size", "--calib-size", "8", "--sizes", "4"], "--calib-size", "--sizes"),
    "size-with-methods": (["calibration-size", "--methods", "minmax"], "--methods", "--sizes"),
    "distance-with-calib-distances": (["calibration-distance", "--calib-distances", "1"], "--calib-distances",
                                      "--mixes"),
}


@pytest.mark.parametrize("argv,refused,varied", STUDY_REFUSALS.values(), ids=STUDY_REFUSALS.keys())
def test_study__an_option_the_study_ignores_is_refused(argv: list[str], refused: str, varied: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]):
    """A study varies one thing: an option it would ignore is refused before any work, in one
    line naming it and what the study varies (as argparse refuses an option "not allowed with"
    another), whether it came from the command line or a --config file."""
    monkeypatch.setattr("facequant.api.study", lambda *a, **k: pytest.fail("work started"))
    base = ["study", *argv, "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facequant: error: study ") and refused in err and varied in err
    config = tmp_path / "c.yaml"
    at = argv.index(refused)
    config.write_text(f"{refused[2:]}: {argv[at + 1]}\n")
    given = [*argv[:at], *argv[at + 2:]]
    assert main(["study", *given, "--config", str(config), "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert refused in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_study__its_own_options_and_defaults_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """What each study varies, and the other studies' defaults (never given), are not refused."""
    seen: list[object] = []
    monkeypatch.setattr("facequant.api.study", lambda config, output, progress: seen.append(config))
    monkeypatch.setattr("facequant.render.study.render_study", lambda *a, **k: [])
    (tmp_path / "p").mkdir()
    for argv in (["calibration-size", "--sizes", "4,8"], ["calibration-method", "--methods", "minmax,entropy"],
                 ["calibration-distance", "--mixes", "0.5;0.5,3"]):
        assert main(["study", *argv, "--data", str(tmp_path / "p"), "--out", str(tmp_path / argv[0]), "--quiet"]) == 0
    assert [c.kind for c in seen] == ["calibration-size", "calibration-method", "calibration-distance"]  # type: ignore[attr-defined]
    assert seen[0].sizes == (4, 8) and seen[1].methods == ("minmax", "entropy")  # type: ignore[attr-defined]
    assert seen[2].mixes == ((0.5,), (0.5, 3.0)) and seen[0].sweep.backends == ("fp32",)  # type: ignore[attr-defined]


def test_tui_form__lfw_pairs_accepted_as_the_cli_does(tmp_path: Path):
    from tui import state

    base = state.config_from_dict({"model": "m", "data": "d", "backends": ["fp32"], "distances_m": [1, 2]})
    for spec in ("lfw", "lfw-pairs"):
        form = state.SetupValues("m", spec, "720p-60", "1,2", "fp32", "", base, "test")
        config, _ = state.config_from_setup(form, tmp_path)
        assert config.data == spec
    bad = state.SetupValues("m", str(tmp_path / "missing"), "720p-60", "1,2", "fp32", "", base, "test")
    with pytest.raises(Exception, match="dataset folder not found"):
        state.config_from_setup(bad, tmp_path)
    nan = state.SetupValues("m", "lfw", "720p-60", "1,nan", "fp32", "", base, "test")
    with pytest.raises(Exception, match="distances"):  # the CLI's converter and its reason
        state.config_from_setup(nan, tmp_path)

"""One command surface (issue 10): the same options mean the same in every command, each
command's --help lists only what it uses, and each finding of a new user's first session is
fixed. Named test_<finding>__<case>."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from facequant import config
from facequant.cli import main
from facequant.cli.common import values
from facequant.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
WRITERS = ("sweep", "study", "diagnose", "search-precision", "export-probes", "export-precision", "validate-sim")
#: What each writer needs on the command line besides options (positional arguments, required ones).
REQUIRED = {"study": ["calibration-size"], "export-precision": ["int8-pt"],
            "validate-sim": ["--reference", "r.jpg", "--captures", "c"]}


def help_text(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def listed_options(text: str) -> set[str]:
    return set(re.findall(r"^  (--[a-z0-9-]+)", text, flags=re.M))


# --------------------------------------------------------------------------- the shared options


@pytest.mark.parametrize("command", WRITERS)
def test_shared_options__mean_the_same_in(command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    text = help_text(capsys, command)
    assert {"--out", "--force", "--config", "--quiet", "--seed"} <= listed_options(text)
    assert "facequant wrote" in " ".join(text.split())  # --force replaces only a folder facequant wrote, in every command
    # a --config file sets them as the command line does; the command line wins
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"seed: 7\nquiet: true\nout: {tmp_path / 'from-file'}\n")
    args = build_parser().parse_args([command, *REQUIRED.get(command, []), "--config", str(cfg), "--seed", "3"])
    given = values(args)
    assert given["seed"] == 3 and given["quiet"] is True and Path(str(given["out"])) == tmp_path / "from-file"


@pytest.mark.parametrize("command", WRITERS)
def test_shared_options__default_out_is_under_runs(command: str, capsys: pytest.CaptureFixture[str]):
    out_help = re.search(r"^  --out OUT\s+(.*?)(?=^  --|\Z)", help_text(capsys, command), flags=re.M | re.S)
    assert out_help is not None and "(default runs/" in " ".join(out_help.group(1).split())


def test_outputs_in_the_checkout__are_ignored_by_git():
    """Every folder the README's commands write into (and every default, under runs/) is in
    .gitignore: a user's results never show up in `git status`."""
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".gitignore").read_text().splitlines()
               if line.strip().endswith("/")}
    readme = (ROOT / "README.md").read_text()
    outs = set(re.findall(r"--out (\S+)", readme))
    assert {"runs/first", "probes/", "exports/"} <= outs
    tops = {Path(o).parts[0] for o in outs if not o.startswith(("DIR", "<"))}
    assert tops <= ignored, tops - ignored
    assert "runs" in ignored


# --------------------------------------------------------------------------- each --help lists what it uses


SWEEP_ONLY = {"--far", "--gallery", "--genuine", "--threshold", "--pairs", "--no-latency", "--device-profile",
              "--backends", "--calib-method", "--batch-size"}


def test_help_lists_only_used_options__export_probes(capsys: pytest.CaptureFixture[str]):
    listed = listed_options(help_text(capsys, "export-probes"))
    assert listed & (SWEEP_ONLY | {"--calib-size", "--calib-data", "--calib-distances"}) == set()
    assert {"--model", "--data", "--camera", "--distances", "--face-px", "--jpeg", "--multi-face"} <= listed


def test_help_lists_only_used_options__export_precision(capsys: pytest.CaptureFixture[str]):
    listed = listed_options(help_text(capsys, "export-precision"))
    assert listed & (SWEEP_ONLY - {"--calib-method"}) == set()  # it calibrates: issue 19 gave it --calib-method
    assert {"--calib-size", "--calib-data", "--calib-distances", "--calib-method", "--name-map", "--model",
            "--data"} <= listed


def test_help_lists_only_used_options__study_and_search_take_no_backends(capsys: pytest.CaptureFixture[str]):
    for command in ("study", "search-precision"):  # they sweep fp32 and their own recipes
        assert "--backends" not in listed_options(help_text(capsys, command)), command
    assert main(["study", "calibration-size", "--backends", "fp32"]) == 2
    assert "unrecognized arguments: --backends" in capsys.readouterr().err


def test_help_lists_only_used_options__every_listed_option_reaches_the_config():
    """Each sweep option a command lists sets a field of the config it runs (or is one of the
    run options): nothing is listed and then dropped."""
    run_options = {"config", "out", "force", "quiet"}
    for option in config.SWEEP_OPTIONS:
        assert option.field is not None or option.name in run_options, option.name
    swept = config.sweep_config({"data": str(ROOT), "seed": 9, "jpeg": 70, "no_latency": True, "far": 0.01})
    assert (swept.seed, swept.degradation.jpeg_quality, swept.measure_cost, swept.target_far) == (9, 70, False, 0.01)


def test_help_wording__export_probes_force_names_the_export_folder(capsys: pytest.CaptureFixture[str]):
    text = " ".join(help_text(capsys, "export-probes").split())
    assert "--force replace an existing export folder" in text and "results directory" not in text


def test_help_wording__validate_sim_seed(capsys: pytest.CaptureFixture[str]):
    text = " ".join(help_text(capsys, "validate-sim").split())
    assert "--seed SEED seed of the simulated noise (default 0)" in text


def test_tui_takes_the_sweep_options__help_and_parse(capsys: pytest.CaptureFixture[str]):
    listed = listed_options(help_text(capsys, "tui"))
    assert {"--model", "--data", "--backends", "--camera", "--distances", "--face-px", "--config"} <= listed
    args = build_parser().parse_args(["tui", "--model", "m.onnx", "--data", "photos", "--distances", "1,2"])
    assert (args.model, args.data, args.distances) == ("m.onnx", "photos", (1.0, 2.0))
    assert main(["tui", "--distances", "near"]) == 2  # checked where parsed, as for sweep
    assert "--distances" in capsys.readouterr().err


# --------------------------------------------------------------------------- findings


def test_study_sizes__above_the_photos_run_once_and_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from facequant.analysis import studies
    from facequant.cli.show import show
    from facequant.render.study import render_study
    from facequant.sweep.config import SweepConfig

    for i in range(5):
        (tmp_path / "data" / f"p{i % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / f"p{i % 2}" / f"{i}.jpg").write_bytes(b"")
    base = SweepConfig(model="m.onnx", data=str(tmp_path / "data"))
    chosen = studies.variants(studies.StudyConfig("calibration-size", "int8-pt", base, sizes=(2, 8, 16)))
    assert [v.label for v in chosen] == ["N=2", "N=5 (all)"]
    assert [v.config.calibration_size for v in chosen] == [2, 5]
    assert chosen[1].note == "--sizes 8,16: only 5 calibration photos available; run once as N=5 (all)"
    fits = studies.size_variants(base, [2, 5])
    assert [v.label for v in fits] == ["N=2", "N=5"] and not any(v.note for v in fits)  # N=5 asked: no note

    row = dict.fromkeys(studies.STUDY_COLUMNS, 0.5) | {"study": "calibration-size", "variant": "N=5 (all)",
                                                        "backend": "int8-pt", "n_calibration_crops": 5,
                                                        "degenerate": ""}
    result = studies.StudyResult("calibration-size", "int8-pt", pd.DataFrame([row]), {}, [chosen[1].note])
    show(render_study(result))
    assert f"warning: {chosen[1].note}" in " ".join(capsys.readouterr().out.split())
    studies.write_study(result, tmp_path / "study")
    assert json.loads((tmp_path / "study" / "run.json").read_text())["warnings"] == [chosen[1].note]


@pytest.mark.slow
def test_building_backends__counts_every_backend(model_path: Path, celebs13: Path):
    from facequant.sweep.config import SweepConfig
    from facequant.sweep.engine import run_sweep

    seen: list[tuple[str, int, int]] = []
    config = SweepConfig(model=str(model_path), data=str(celebs13), backends=("fp32", "int8-pt", "int8-pc"),
                         distances_m=(1.0, 3.0), measure_cost=False)
    run_sweep(config, progress=lambda *event: seen.append(event))
    assert [e for e in seen if e[0] == "calibration"] == [("calibration", 1, 3), ("calibration", 2, 3),
                                                          ("calibration", 3, 3)]
    assert [e for e in seen if e[0] == "distances"] == [("distances", 1, 2), ("distances", 2, 2)]


def test_models_inspect__batch_shape_matches_the_batch(model_path: Path, capsys: pytest.CaptureFixture[str]):
    from facequant.models.normalize import normalize_model
    from facequant.models.spec import describe, inspect_model

    assert main(["models", "inspect", str(model_path)]) == 0  # the shared model: batch fixed at 1
    text = capsys.readouterr().out
    assert "[1, 3, 112, 112]" in text and "[1, 512]" in text and "[N," not in text
    assert re.search(r"^batch\s+1 \(fixed in the file", text, flags=re.M)
    dynamic = describe(inspect_model(normalize_model(model_path)))
    assert "[N, 3, 112, 112]" in dynamic and "(any)" in dynamic


def test_external_backend__shown_by_its_name_in_the_summary():
    from facequant.results.directory import backend_labels
    from facequant.results.summary import summary_rows

    long = "external:hailo8=/very/long/path/to/the/device/export/folder/probes"
    cliff = pd.DataFrame({"backend": ["fp32", long], "tar_close": [0.99, 0.98], "reliable_distance_m": [5.0, 4.0],
                          "cliff_distance_m": [7.2, 7.0], "cliff_prenorm": [3.1, 3.0],
                          "cliff_prenorm_width": [0.7, 0.7], "degenerate": ["", ""]})
    assert [row[0] for row in summary_rows(cliff)] == ["fp32", "hailo8"]
    twice = backend_labels(["external:dev=a/probes", "external:dev=b/probes", "int8-pt"])
    assert twice == {"external:dev=a/probes": "external:dev=a/probes", "external:dev=b/probes": "external:dev=b/probes",
                     "int8-pt": "int8-pt"}  # the same NAME twice: the specs tell them apart


def test_export_precision__no_name_map_warns_once_without_blaming_a_map():
    from facequant.backends.quantize.export import hailo_script

    precisions = {"Conv_91": "a16_w16", "Conv_93": "a16_w16", "Conv_2": "int8"}
    lines, warnings = hailo_script(precisions, None)
    assert warnings == ["no --name-map given: hailo_precision.alls names its 2 layer(s) by their ONNX names, which "
                        "Hailo's parser renames; give --name-map (CSV onnx,hailo) to translate them"]
    assert sum("quantization_param(" in line for line in lines) == 2
    _, mapped = hailo_script(precisions, {"Conv_91": "fc1"})
    assert mapped == ["Conv_93: no compiler layer name in the name map; written with its ONNX name, which the "
                      "Hailo compiler will not recognise"]


def test_tar_colours__docs_and_tui_state_one_rule():
    from tui.screens import HELP
    from tui.widgets import TAR_LEGEND, TAR_RULE, TAR_RULE_MARKUP

    page = " ".join((ROOT / "docs" / "tui.md").read_text().split())
    assert TAR_RULE in page
    assert TAR_RULE_MARKUP in HELP and TAR_RULE_MARKUP in TAR_LEGEND


# Every `facequant ...` command in README.md and docs/ is parsed by tests/test_docs.py.


@pytest.mark.parametrize("recipe", ["fp32", "int8-dyn", "external:dev=x"])
def test_export_precision__uncalibrated_recipe_refused_before_any_work(recipe: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]):
    from corpus import one_line_error

    monkeypatch.setattr("facequant.sweep.probes.prepare_probes", lambda *a, **k: pytest.fail("work started"))
    assert main(["export-precision", recipe, "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, f"recipe {recipe}: not calibrated", "give a static recipe")
    assert not (tmp_path / "out").exists()

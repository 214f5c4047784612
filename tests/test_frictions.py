"""Issue 19's frictions a new user met, each held by a test that failed before its fix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fake_sweep import fake_result

from facequant.cli.main import main
from facequant.errors import FacequantError
from facequant.results.directory import write_results
from facequant.results.output import check_output_dir
from facequant.simulate.camera import camera_from_spec
from facequant.sweep.config import SweepConfig

DISTANCES = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]


def recommendable(out: Path) -> Path:
    """A results directory from fake rows that recommend can read: run.json with a camera."""
    write_results(fake_result(SweepConfig(model="m.onnx", data="d"), DISTANCES, DISTANCES), out)  # type: ignore[arg-type]
    run = json.loads((out / "run.json").read_text())
    run.update({"camera": camera_from_spec("1080p-90").to_dict(), "model": {"spec": {"input_size": [112, 112]}}})
    run["config"]["camera"] = "1080p-90"
    (out / "run.json").write_text(json.dumps(run))
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_scenario_does_not_replace_every_scenario_s_recommendation(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = recommendable(tmp_path / "r")
    assert main(["recommend", "--results", str(out)]) == 0
    full = out / "recommend.csv"
    held = digest(full)
    capsys.readouterr()
    assert main(["recommend", "--results", str(out), "--scenario", "corridor"]) == 0
    said = capsys.readouterr().out
    beside = out / "recommend-corridor.csv"
    assert digest(full) == held, "recommend.csv (every scenario) was replaced by one scenario's rows"
    assert beside.is_file() and {line.split(",")[0] for line in beside.read_text().splitlines()[1:]} == {"corridor"}
    assert f"written {beside}" in said and "recommend.csv keeps its" in said
    # the same scenarios again replace recommend.csv itself (a derived file), and --force still may
    assert main(["recommend", "--results", str(out), "--scenario", "kiosk,corridor,far-field"]) == 0
    assert not (out / "recommend-kiosk+corridor+far-field.csv").exists()
    check_output_dir(out, force=True)  # recommend-corridor.csv is facequant's: the folder stays replaceable


def _tiny_conv(path: Path) -> Path:
    """A one-convolution float model (opset 13, dynamic batch): quantizes in a second."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["output"], pads=[1, 1, 1, 1])], "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 4, 8, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_ort_histogram_calibration_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture, method: str):
    import dataclasses

    import numpy as np

    from facequant.backends.quantize.build import build_quantized
    from facequant.backends.quantize.recipes import RECIPES

    recipe = dataclasses.replace(RECIPES["int8-pt"], calibration_method=method)
    calibration = np.random.default_rng(1).normal(size=(4, 3, 8, 8)).astype(np.float32)
    out = build_quantized(_tiny_conv(tmp_path / "m.onnx"), "0" * 64, "input", recipe, calibration, cache=tmp_path)
    assert out.is_file()
    printed = capfd.readouterr().out
    assert "histogram" not in printed and "Number of tensors" not in printed and printed == ""


def test_a_killed_build_s_scratch_folder_is_removed_by_the_next_run_and_nothing_else(tmp_path: Path):
    import os
    import socket
    import subprocess
    import sys

    from facequant.backends.quantize.build import quantized_model_path
    from facequant.backends.quantize.recipes import RECIPES

    quantized = tmp_path / "quantized"
    quantized.mkdir()
    # a build killed midway (os._exit: no cleanup runs, as with SIGKILL), with a file in its folder
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sys; from pathlib import Path; from facequant import cache; "
        "cm = cache.build_dir(Path(sys.argv[1])); d = cm.__enter__(); (d / 'm.onnx').write_bytes(b'x' * 1000); "
        "print(d); sys.stdout.flush(); os._exit(9)"), str(quantized)], capture_output=True, text=True, timeout=60)
    stale = Path(killed.stdout.strip())
    assert killed.returncode == 9 and stale.is_dir() and stale.parent == quantized
    live = quantized / f".facequant-build-{socket.gethostname()}-{os.getpid()}-live"
    other_host = quantized / ".facequant-build-elsewhere-1-abc"
    foreign = quantized / "tmpkeepme"
    for folder in (live, other_host, foreign):
        folder.mkdir()
    quantized_model_path(tmp_path / "m.onnx", "0" * 64, RECIPES["int8-pt"], "none", cache=tmp_path)
    assert not stale.exists()
    assert live.is_dir() and other_host.is_dir() and foreign.is_dir()


def test_force_does_not_delete_diagnostics_put_in_a_results_directory(tmp_path: Path):
    from facequant.results.output import staged_output

    out = recommendable(tmp_path / "r")
    with staged_output(out / "diagnostics", force=False) as staging:  # as `diagnose --out R/diagnostics` writes it
        (staging / "summary.csv").write_text("backend,distance_m\nint8-pt,4.0\n")
    with pytest.raises(FacequantError, match="diagnostics/.*--force would delete"):  # what every command checks first
        check_output_dir(out, force=True)
    with pytest.raises(FacequantError, match="diagnostics"):
        write_results(fake_result(SweepConfig(model="m.onnx", data="d"), DISTANCES, DISTANCES), out, force=True)  # type: ignore[arg-type]
    assert (out / "diagnostics" / "summary.csv").is_file() and (out / "sweep.csv").is_file()


# ---------------------------------------------------------------- the TUI


def _drive(app: object, steps: object, size: tuple[int, int] = (80, 24), notifications: bool = False) -> None:
    import asyncio

    async def go() -> None:
        async with app.run_test(size=size, notifications=notifications) as pilot:  # type: ignore[attr-defined]
            await pilot.pause()
            await steps(pilot)  # type: ignore[operator]

    asyncio.run(go())


def _setup_config(tmp_path: Path, model: str = "m.onnx") -> Path:
    (tmp_path / "photos").mkdir(exist_ok=True)
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {model}\ndata: {tmp_path / 'photos'}\nbackends: fp32,int8-pt\ndistances: 1,2,4\n")
    return config


def test_complete_toast_reaches_the_screen_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Textual's toast rack kept a scrollbar column free: the legend under the toast showed its
    last character (':') beside the "complete" toast."""
    import time

    from fake_sweep import fake_run_sweep
    from textual.widgets._toast import Toast

    from tui.app import FacequantApp

    monkeypatch.setattr("facequant.sweep.engine.run_sweep", fake_run_sweep([1.0, 2.0, 4.0]))
    app = FacequantApp(config=_setup_config(tmp_path), runs_dir=tmp_path / "runs")

    async def steps(pilot: object) -> None:
        await pilot.press("r")  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while app.last_outcome is None and time.monotonic() < deadline:
            await pilot.pause(0.1)  # type: ignore[attr-defined]
        await pilot.pause(0.3)  # type: ignore[attr-defined]
        toasts = [t for t in app.screen.walk_children() if isinstance(t, Toast) and "complete" in str(t.render())]
        assert toasts, [n.message for n in app._notifications]
        assert toasts[0].region.right == app.size.width

    _drive(app, steps, notifications=True)


def test_a_tui_run_is_named_after_the_model_file_its_header_shows(tmp_path: Path):
    from facequant import settings
    from facequant.models.sources import results_stem
    from tui.state import default_out, model_file_name

    shown = model_file_name("faceplugin")  # what the header says: fr_feature.onnx
    assert default_out(tmp_path, "faceplugin").name.startswith(Path(shown).stem + "-")
    assert results_stem("faceplugin") == settings.default_model_path().stem == Path(shown).stem
    assert results_stem("/x/models/faceres.onnx") == "faceres"


def test_a_two_model_run_s_header_shows_each_model_s_threshold(tmp_path: Path):
    from facequant.results.multi_model import combine, write_multi
    from tui.app import FacequantApp

    first = fake_result(SweepConfig(model="a.onnx", data="d"), DISTANCES, DISTANCES)
    second = fake_result(SweepConfig(model="b.onnx", data="d"), DISTANCES, DISTANCES)
    second.sweep["threshold"] = 0.31  # type: ignore[attr-defined]
    for r, name in ((first, "a.onnx"), (second, "b.onnx")):
        r.run["camera"] = camera_from_spec("1080p-90").to_dict()  # type: ignore[attr-defined]
        r.run["model"] = {"path": name, "sha256": "0" * 64, "spec": {"input_size": [112, 112]}}  # type: ignore[attr-defined]
    combined = combine([first, second], ["a", "b"], {"command": "sweep", "config": {"model": ["a.onnx", "b.onnx"]}})  # type: ignore[list-item]
    out = write_multi(combined, tmp_path / "two")

    async def steps(pilot: object) -> None:
        from textual.widgets import Static

        await pilot.pause(0.5)  # type: ignore[attr-defined]
        assert app.screen.id == "results", [n.message for n in app._notifications]
        title = str(app.screen.query_one("#results-title", Static).render())
        assert "a 0.400" in title and "b 0.310" in title, title

    app = FacequantApp(results=out, runs_dir=tmp_path)
    _drive(app, steps, size=(120, 24))


def test_setup_shows_what_has_focus_before_any_tab(tmp_path: Path):
    """Not reproduced (Textual 8 draws the focused Run button bold reverse, in tmux too): held
    here so that a theme or layout change cannot make the starting focus invisible."""
    from textual.widgets import Button

    from tui.app import FacequantApp

    app = FacequantApp(config=_setup_config(tmp_path), runs_dir=tmp_path / "runs")

    async def steps(pilot: object) -> None:
        focused = app.focused
        assert isinstance(focused, Button) and focused.id == "run"
        other = app.screen.query_one("#open", Button)
        assert focused.rich_style.reverse and not other.rich_style.reverse  # visibly not like the others

    _drive(app, steps)


def test_tui_chart_keys_sit_under_the_charts_not_on_the_lines(tmp_path: Path):
    """plotext draws a legend in the plot's top left, where TAR near 1 runs: every chart's key
    is a line under it instead (TAR, pre-norm; the Layers tab's in test_tui)."""
    from textual.widgets import Static

    from tui.app import FacequantApp
    from tui.widgets import PrenormPlot, TarPlot

    out = recommendable(tmp_path / "r")
    app = FacequantApp(results=out, runs_dir=tmp_path)

    async def steps(pilot: object) -> None:
        for tab, plot, key in (("3", TarPlot, "#tar-key"), ("4", PrenormPlot, "#prenorm-key")):
            await pilot.press(tab)  # type: ignore[attr-defined]
            await pilot.pause(0.2)  # type: ignore[attr-defined]
            drawn = str(app.screen.query_one(plot).render())
            shown = str(app.screen.query_one(key, Static).render())
            assert "int8-pt" not in drawn and "fp32" in shown and "int8-pt" in shown, (drawn, shown)

    _drive(app, steps)

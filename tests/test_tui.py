"""The TUI (tui/), driven by Textual's pilot at 80x24, on a real results directory made once by
`facequant sweep`, plus real sweeps started from the setup screen, one of them cancelled, and
one end-to-end run in a real terminal (tmux)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path

import pandas as pd
import pytest
from fake_sweep import fake_run_sweep, fake_sweep_rows
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, ProgressBar, Static, TabbedContent

from facequant import settings
from facequant.cli import main
from facequant.cli.main import build_parser
from facequant.errors import FacequantError
from facequant.render import plain
from facequant.render.summary import summary
from facequant.results import directory as reports
from facequant.results.summary import display_rows, summary_rows
from tui import state
from tui.app import FacequantApp
from tui.layers import load_diagnostics
from tui.recommendation import load_recommendations
from tui.screens import HelpScreen, ResultsScreen, SetupScreen
from tui.widgets import TAR_STYLES, CliffPane, LayersPane, PrenormPlot, SweepTable, TarPlot

SIZE = (80, 24)
TMUX_SCRIPT = Path(__file__).with_name("tmux_tui.sh")


# --------------------------------------------------------------------------- helpers


def drive(app: FacequantApp, steps: Callable[[Pilot], Awaitable[None]], size: tuple[int, int] = SIZE) -> None:
    """Run the app headless at `size` and let `steps` press keys and look."""

    async def go() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await steps(pilot)

    asyncio.run(go())


async def wait_until(pilot: Pilot, ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


def cell_text(table: DataTable, row: str, column: str) -> Text:
    value = table.get_cell(row, column)
    assert isinstance(value, Text)
    return value


def notices(app: FacequantApp) -> list[str]:
    return [n.message for n in app._notifications]


def status_text(app: FacequantApp) -> str:
    return str(app.screen.query_one("#status", Static).render())


def write_config(path: Path, distances: str, data: Path) -> Path:
    # A short real sweep: two backends, no batch-1 latency timing after it.
    path.write_text(f"backends: fp32,int8-pt\ndistances: {distances}\nno-latency: true\ndata: {data}\n")
    return path


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory, celebs13: Path) -> Path:
    """Four of celebs13's people (29 real photos), linked: the runs started from the TUI stay
    real but take about half the time of all 61 photos."""
    root = tmp_path_factory.mktemp("celebs4")
    for person in sorted(p for p in celebs13.iterdir() if p.is_dir())[:4]:
        (root / person.name).symlink_to(person, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory, model_path: Path, celebs13: Path) -> Path:
    """One real results directory for the module, written by the CLI (about 15-30 s)."""
    out = tmp_path_factory.mktemp("tui") / "first"
    with pytest.MonkeyPatch.context() as mp:  # the session cache, as conftest's autouse fixture sets it
        mp.setenv(settings.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["sweep", "--backends", "fp32,int8-pt", "--distances", "1,4,8", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def results_copy(results_dir: Path, tmp_path: Path) -> Path:
    """A copy a test may write into (export), so the module's directory stays as the CLI wrote it."""
    return Path(shutil.copytree(results_dir, tmp_path / "runs" / "first"))


# --------------------------------------------------------------------------- results


@pytest.mark.slow
@pytest.mark.parametrize("size", [(80, 24), (132, 40)])
def test_results_open_without_recomputing_rows_and_colours(results_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           size: tuple[int, int]):
    def no_sweep(*_a: object, **_k: object) -> None:
        raise AssertionError("opening results must not run a sweep")

    monkeypatch.setattr("facequant.sweep.engine.run_sweep", no_sweep)
    sweep = pd.read_csv(results_dir / "sweep.csv")
    started = time.monotonic()

    async def steps(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app.screen, ResultsScreen)
        table = app.screen.query_one(SweepTable)
        assert time.monotonic() - started < 5  # "opens instantly": CSVs read, nothing computed
        assert table.row_count == len(sweep) == 6
        assert [k.value for k in table.rows] == [f"{b}@{d:g}" for b, d in zip(sweep.backend, sweep.distance_m, strict=True)]
        for r in sweep.itertuples():
            key = f"{r.backend}@{r.distance_m:g}"
            assert cell_text(table, key, "tar").plain == f"{r.tar:.3f}"
            assert cell_text(table, key, "far").plain == f"{r.far:.4f}"
            assert cell_text(table, key, "prenorm").plain == f"{r.prenorm_mean:.2f}"
            assert cell_text(table, key, "cos").plain == f"{r.cos_to_fp32_mean:.3f}"
        # Coloured by TAR against the backend's close-range TAR: 1 m and 4 m hold, 8 m is past the cliff.
        for backend in ("fp32", "int8-pt"):
            assert str(cell_text(table, f"{backend}@1", "tar").style) == TAR_STYLES["reliable"] == "bold green"
            assert str(cell_text(table, f"{backend}@4", "tar").style) == "bold green"
            assert str(cell_text(table, f"{backend}@8", "tar").style) == TAR_STYLES["cliff"] == "bold red"
        title = str(app.screen.query_one("#results-title", Static).render())
        assert "complete" in title and "fr_feature.onnx" in title and "3 dist" in title
        assert "results in" in status_text(app)
        assert not app.screen.query_one("#progress-row").display  # no progress bar for a finished run

    drive(FacequantApp(results=results_dir, runs_dir=results_dir.parent), steps, size)


@pytest.mark.slow
def test_cliff_tab_is_the_cli_summary_and_plots_draw(results_dir: Path):
    loaded = reports.load_results(results_dir)
    rows = summary_rows(loaded["cliff"], loaded["sweep"], loaded["cost"])  # type: ignore[arg-type]
    cli = plain(summary(loaded["cliff"], loaded["sweep"], loaded["cost"], loaded["run"],  # type: ignore[arg-type]
                        identification=loaded["identification"]))  # type: ignore[arg-type]

    async def steps(pilot: Pilot) -> None:
        screen = pilot.app.screen
        await pilot.press("2")
        assert screen.query_one(TabbedContent).active == "tab-cliff"
        pane = screen.query_one(CliffPane)
        assert plain(pane.items) == cli  # the CLI's summary (bar its title, in the header), as it prints
        assert len(rows) == 2 and all(part in cli for row in display_rows(rows) for cell in row for part in cell.split("\n"))
        shown = screen.query_one("#cliff-summary", Static).content
        assert plain([shown]) == cli  # type: ignore[list-item]  # what the widget holds: those renderables
        await pilot.press("3")
        assert screen.query_one(TabbedContent).active == "tab-tar"
        await pilot.pause(0.2)
        tar_plot = str(screen.query_one(TarPlot).render())
        tar_key = str(screen.query_one("#tar-key", Static).render())
        assert "TAR vs distance" in tar_plot and "int8-pt" not in tar_plot  # the key is under the chart
        assert "fp32" in tar_key and "int8-pt" in tar_key
        await pilot.press("4")
        await pilot.pause(0.2)
        prenorm_plot = str(screen.query_one(PrenormPlot).render())
        assert "pre-norm" in prenorm_plot and "int8-pt" in str(screen.query_one("#prenorm-key", Static).render())
        await pilot.press("5")
        note = str(screen.query_one("#layers-note", Static).render())
        assert "No layer diagnostics" in note  # the CLI's sweep writes none
        await pilot.press("6")
        assert screen.query_one(TabbedContent).active == "tab-recommend"

    drive(FacequantApp(results=results_dir, runs_dir=results_dir.parent), steps)


def _write_diagnostics(folder: Path) -> Path:
    """layers.csv and summary.csv with facequant.analysis.diagnose' columns: Conv_7 loses the most at 8 m."""
    folder.mkdir(parents=True)
    rows = [{"backend": "int8-pt", "distance_m": d, "layer": f"Conv_{i}", "op_type": "Conv", "depth": i,
             "snr_db": 40.0 - i * (3 if d == 8 else 1) - (25 if i == 7 else 0), "psnr_db": 50.0,
             "act_bins_used": 200, "act_bin_utilization": 0.8, "tensor": f"t{i}"}
            for d in (1.0, 4.0, 8.0) for i in range(10)]
    pd.DataFrame(rows).to_csv(folder / "layers.csv", index=False)
    pd.DataFrame([{"backend": "int8-pt", "distance_m": d, "face_px": 192 / d, "n_probes": 16, "n_layers": 10,
                   "min_snr_db": -2.0, "min_snr_layer": "Conv_7", "output_snr_db": 20.0} for d in (1.0, 4.0, 8.0)]
                 ).to_csv(folder / "summary.csv", index=False)
    (folder / "run.json").write_text(json.dumps({"config": {"backends": ["int8-pt"]}}))
    return folder


def test_diagnostics_columns_are_the_diagnose_module_s():
    from facequant.analysis.diagnose.run import LAYER_COLUMNS, SUMMARY_COLUMNS
    from tui.layers import LAYER_VIEW_COLUMNS, SUMMARY_VIEW_COLUMNS

    assert set(LAYER_VIEW_COLUMNS) <= set(LAYER_COLUMNS)
    assert set(SUMMARY_VIEW_COLUMNS) <= set(SUMMARY_COLUMNS)


@pytest.mark.slow
def test_layer_diagnostics_shown_when_present(results_copy: Path):
    _write_diagnostics(results_copy / "diagnostics")
    loaded = load_diagnostics(results_copy)
    assert loaded is not None and loaded.snr_column == "snr_db" and loaded.depth_column == "depth"
    worst, where = loaded.worst(3)
    assert where == " at 8 m" and worst.layer.tolist()[0] == "Conv_7" and "tensor" not in worst

    async def steps(pilot: Pilot) -> None:
        screen = pilot.app.screen
        await pilot.press("5")
        await pilot.pause(0.2)
        pane = screen.query_one(LayersPane)
        table = pane.query_one("#layers-table", DataTable)
        assert table.row_count == 10 and "Conv_7" in [c.plain for c in table.get_row_at(0)]
        plot = str(pane.query_one("#layers-plot").render())
        legend = str(pane.query_one("#layers-legend", Static).render())
        assert "snr_db vs depth" in plot and "int8-pt 8 m" not in plot  # the key is under the chart, not on it
        assert "int8-pt 8 m" in legend and "int8-pt 1 m" in legend
        summary = screen.query_one("#diag-summary", DataTable)
        assert summary.display and summary.row_count == 3

    drive(FacequantApp(results=results_copy, runs_dir=results_copy.parent), steps)


def test_a_diagnose_directory_opens_by_itself(tmp_path: Path):
    folder = _write_diagnostics(tmp_path / "runs" / "diagnose-fr_feature-1")

    async def steps(pilot: Pilot) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, ResultsScreen)
        assert screen.query_one(TabbedContent).active == "tab-layers"
        assert "layer diagnostics" in str(screen.query_one("#results-title", Static).render())
        assert screen.query_one("#layers-table", DataTable).row_count == 10
        await pilot.pause(0.2)
        plot = str(screen.query_one("#layers-plot").render())
        legend = str(screen.query_one("#layers-legend", Static).render())
        # the chart's key sits under it: plotext's own legend would cover the lines' top left
        assert "vs depth" in plot and "int8-pt 8 m" not in plot and "int8-pt 8 m" in legend
        await pilot.press("e")
        await pilot.pause(0.1)
        assert any("is a diagnose directory" in n for n in notices(pilot.app))  # type: ignore[arg-type]

    drive(FacequantApp(results=folder, runs_dir=folder.parent), steps)


@pytest.mark.slow
def test_recommendation_view_through_the_adapter(results_copy: Path, monkeypatch: pytest.MonkeyPatch):
    real = load_recommendations(results_copy)
    try:
        import facequant.analysis.recommend  # noqa: F401
    except ModuleNotFoundError:
        assert real.table is None and "not in this version" in real.note
    else:  # the module has landed: its per-scenario verdicts, without writing recommend.csv
        assert not (results_copy / "recommend.csv").exists()
        assert (real.table is not None and {"scenario", "backend", "verdict"} <= set(real.table.columns)) \
            or real.note.startswith("no recommendation:")

    # The adapter's contract, whatever the module returns: a stand-in with records.
    fake = types.ModuleType("facequant.analysis.recommend")
    fake.recommend_dir = lambda path, write=True: [  # type: ignore[attr-defined]
        {"scenario": "kiosk", "backend": "int8-pt", "verdict": "recommended", "written": write},
        {"scenario": "corridor", "backend": "fp32", "verdict": "closest", "written": write}]
    monkeypatch.setitem(sys.modules, "facequant.analysis.recommend", fake)

    async def steps(pilot: Pilot) -> None:
        screen = pilot.app.screen
        await pilot.press("6")
        table = screen.query_one("#recommend-table", DataTable)
        assert table.display and table.row_count == 2
        assert [c.plain for c in table.get_row_at(0)] == ["kiosk", "int8-pt", "recommended", "False"]

    drive(FacequantApp(results=results_copy, runs_dir=results_copy.parent), steps)


@pytest.mark.slow
def test_export_writes_csvs_and_notifies_the_path(results_copy: Path, results_dir: Path):
    app = FacequantApp(results=results_copy, runs_dir=results_copy.parent)

    async def steps(pilot: Pilot) -> None:
        (results_copy / "sweep.csv").unlink()  # loaded already: e writes them back from the tables shown
        (results_copy / "cliff.csv").unlink()
        await pilot.press("e")
        await pilot.pause(0.2)
        message = f"exported sweep.csv, cliff.csv to {state.display_path(results_copy)}"
        assert message in notices(app)
        assert message in status_text(app)

    drive(app, steps)
    for name in ("sweep.csv", "cliff.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(results_copy / name), pd.read_csv(results_dir / name))


@pytest.mark.slow
def test_help_lists_keys_and_q_quits(results_dir: Path):
    app = FacequantApp(results=results_dir, runs_dir=results_dir.parent)

    async def steps(pilot: Pilot) -> None:
        shown = {key for key, active in pilot.app.active_bindings.items() if active.binding.show}
        assert {"r", "e", "q", "question_mark"} <= shown  # what the footer shows
        await pilot.press("question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)
        text = str(pilot.app.screen.query_one("#help-text", Static).render())
        for words in ("run a sweep", "cancel the run", "export", "quit", "tab", "arrows"):
            assert words in text
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, ResultsScreen)
        await pilot.press("s")
        assert isinstance(pilot.app.screen, SetupScreen)
        await pilot.press("q")
        await pilot.pause()

    drive(app, steps)
    assert app.return_code == 0


# --------------------------------------------------------------------------- setup


@pytest.mark.slow
def test_setup_prefills_from_config_then_last_run(tmp_path: Path, results_copy: Path, celebs13: Path):
    config = tmp_path / "site.yaml"
    config.write_text("backends: fp32,int8-pc\ncamera: 720p-60\ndistances: 0.5,2,3\njpeg: 90\n")
    app = FacequantApp(config=config, runs_dir=tmp_path / "empty-runs")

    async def from_config(pilot: Pilot) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, SetupScreen)
        values = screen.read_values()
        assert (values.camera, values.distances, values.backends) == ("720p-60", "0.5,2,3", "fp32,int8-pc")
        assert values.base.degradation.jpeg_quality == 90  # keys not on the form are kept
        assert screen.focused is not None and screen.focused.id == "run"  # keys work at once

    drive(app, from_config)

    async def from_last_run(pilot: Pilot) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, SetupScreen)
        values = screen.read_values()
        assert (values.model, values.distances, values.backends) == ("faceplugin", "1,4,8", "fp32,int8-pt")
        assert "last run" in values.source
        runs = screen.query_one("#runs")
        assert "first" in str(runs.children[0].query_one("Label").render())
        await pilot.press("o")  # the runs list; Enter opens the highlighted run
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(pilot.app.screen, ResultsScreen)
        assert pilot.app.screen.query_one(SweepTable).row_count == 6

    drive(FacequantApp(runs_dir=results_copy.parent), from_last_run)


def test_setup_refuses_bad_values_before_any_work(tmp_path: Path, celebs13: Path):
    config = write_config(tmp_path / "c.yaml", "1,4", celebs13)
    app = FacequantApp(config=config, runs_dir=tmp_path / "runs")

    async def steps(pilot: Pilot) -> None:
        pilot.app.screen.query_one("#field-distances").value = "near,far"
        await pilot.press("r")
        await pilot.pause(0.2)
        assert isinstance(pilot.app.screen, SetupScreen) and app.active is None
        assert any("distances 'near,far'" in n for n in notices(app))

    drive(app, steps)
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def slow_distances(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each distance takes at least 0.6 s more: with crops and models cached a sweep can end
    before the UI polls it, and these tests are about what the UI shows while it runs."""
    import time as _time

    from facequant.sweep.probes import ProbeSet

    real = ProbeSet.distance_crops  # what the engine calls per distance (and chunk)

    def slow(self: ProbeSet, rows, distance: float):  # noqa: ANN001, ANN202
        _time.sleep(0.6)
        return real(self, rows, distance)

    monkeypatch.setattr(ProbeSet, "distance_crops", slow)


@pytest.mark.slow
def test_run_from_setup_completes_and_shows_rows(tmp_path: Path, model_path: Path, small_data: Path,
                                                 slow_distances: None):
    runs = tmp_path / "runs"
    app = FacequantApp(config=write_config(tmp_path / "c.yaml", "1,6", small_data), runs_dir=runs)
    seen = {"progress": False, "partial_rows": 0}

    async def steps(pilot: Pilot) -> None:
        await pilot.press("r")
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, ResultsScreen)
        # Record every progress update the screen draws: polling alone can miss a fast sweep.
        show_progress = screen.show_progress

        def spy(stage: str, done: int, total: int) -> None:
            show_progress(stage, done, total)
            if total > 0 and screen.query_one(ProgressBar).total:
                seen["progress"] = True  # the worker's progress reached the screen's bar

        screen.show_progress = spy  # type: ignore[method-assign]
        show_data = screen.show_data

        def data_spy(data: state.RunData) -> None:
            show_data(data)
            rows = screen.query_one(SweepTable).row_count
            if data.status == state.RUNNING and 0 < rows < 4:
                seen["partial_rows"] = rows  # rows arrive per distance

        screen.show_data = data_spy  # type: ignore[method-assign]

        def finished() -> bool:
            if screen.query_one("#progress-row").display and screen.query_one(ProgressBar).total:
                seen["progress"] = True
            if screen.data.status == state.RUNNING and 0 < screen.query_one(SweepTable).row_count < 4:
                seen["partial_rows"] = screen.query_one(SweepTable).row_count  # rows arrive per distance
            return app.active is None and screen.data.status != state.RUNNING

        await wait_until(pilot, finished, 240, "the sweep to finish")
        assert screen.data.status == state.COMPLETE, screen.message
        table = screen.query_one(SweepTable)
        assert [k.value for k in table.rows] == ["fp32@1", "fp32@6", "int8-pt@1", "int8-pt@6"]
        assert str(cell_text(table, "fp32@1", "tar").style) == "bold green"
        assert "complete: saved to" in status_text(app)

    drive(app, steps)
    assert seen["progress"], "no progress bar while the sweep ran"
    assert seen["partial_rows"] == 2, "the first distance's rows did not appear before the end"
    (out,) = runs.iterdir()
    assert out.name.startswith("fr_feature-")  # named as the header names the model (faceplugin is fr_feature.onnx)
    for name in ("sweep.csv", "cliff.csv", "results.csv", "probes.csv", "genuine.parquet", "run.json"):
        assert (out / name).is_file()
    run = json.loads((out / "run.json").read_text())
    assert "partial" not in run and run["distances_m"] == [1.0, 6.0]


@pytest.mark.slow
def test_cancel_mid_run_keeps_finished_distances(tmp_path: Path, model_path: Path, small_data: Path,
                                                 slow_distances: None):
    runs = tmp_path / "runs"
    app = FacequantApp(config=write_config(tmp_path / "c.yaml", "1,2,3,4,6,8", small_data), runs_dir=runs)

    async def steps(pilot: Pilot) -> None:
        await pilot.press("r")
        await pilot.pause()
        screen = pilot.app.screen
        assert isinstance(screen, ResultsScreen)
        await wait_until(pilot, lambda: screen.query_one(SweepTable).row_count >= 2, 240, "the first distance")
        await pilot.press("c")
        await wait_until(pilot, lambda: app.active is None, 120, "the cancelled sweep to stop")
        assert screen.data.status == state.PARTIAL, screen.message
        n = len(screen.data.distances)
        assert 1 <= n < 6
        assert screen.query_one(SweepTable).row_count == 2 * n
        assert "PARTIAL" in str(screen.query_one("#results-title", Static).render())
        assert f"cancelled after {n} of 6 distances" in status_text(app)
        await pilot.press("e")  # a partial run exports like any other
        await pilot.pause(0.2)
        assert any(m.startswith("exported sweep.csv, cliff.csv to ") for m in notices(app))

    drive(app, steps)
    (out,) = runs.iterdir()
    run = json.loads((out / "run.json").read_text())
    assert run["partial"] is True and run["partial_reason"].startswith("cancelled after")
    sweep = pd.read_csv(out / "sweep.csv")
    n = len(run["distances_m"])
    assert len(sweep) == 2 * n and sorted(sweep.distance_m.unique()) == [1.0, 2.0, 3.0, 4.0, 6.0, 8.0][:n]
    reloaded = state.load_run(out)  # reopens as a partial run, nothing recomputed
    assert reloaded.status == state.PARTIAL and len(reloaded.cliff) == 2


# --------------------------------------------------------------------------- no model needed


def test_cancellation_stops_between_distances_and_saves_what_finished(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    cancel = threading.Event()
    seen: list[float] = []

    def on_rows(data: state.RunData) -> None:
        if len(data.distances) == 2:
            cancel.set()  # the user presses c during the second distance

    from facequant.sweep.config import SweepConfig

    monkeypatch.setattr("facequant.sweep.engine.run_sweep", fake_run_sweep([1.0, 2.0, 4.0], seen=seen))
    config = SweepConfig(model="m.onnx", data="d", backends=("fp32", "int8-pt"), distances_m=(1.0, 2.0, 4.0))
    outcome = state.run_cancellable(config, tmp_path / "run", cancel, on_rows=on_rows)
    assert outcome.status == state.PARTIAL and seen == [1.0, 2.0]  # stopped after 2 m, 4 m never run
    assert outcome.data is not None and outcome.data.distances == [1.0, 2.0]
    assert "cancelled after 2 of 3 distances" in outcome.message
    loaded = state.load_run(tmp_path / "run")
    assert loaded.status == state.PARTIAL and loaded.sweep.distance_m.tolist() == [1.0, 2.0, 1.0, 2.0]
    assert loaded.cliff.backend.tolist() == ["fp32", "int8-pt"]

    # Cancelled before any distance: nothing is written, and it says so.
    early = threading.Event()
    early.set()
    outcome = state.run_cancellable(config, tmp_path / "early", early)
    assert outcome.data is None and "nothing to save" in outcome.message
    assert not (tmp_path / "early").exists()


def test_q_during_a_run_cancels_saves_then_quits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    gate = threading.Event()
    monkeypatch.setattr("facequant.sweep.engine.run_sweep", fake_run_sweep([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], gate))
    config = tmp_path / "c.yaml"
    (tmp_path / "photos").mkdir()  # beside runs/: a results folder inside the photos is refused
    config.write_text(f"model: m.onnx\ndata: {tmp_path / 'photos'}\nbackends: fp32,int8-pt\ndistances: 1,2,3,4,5,6\n")
    app = FacequantApp(config=config, runs_dir=tmp_path / "runs")

    async def steps(pilot: Pilot) -> None:
        await pilot.press("r")
        await wait_until(pilot, lambda: app.screen.query_one(SweepTable).row_count >= 2, 10, "the first distance")
        await pilot.press("q")  # the sweep waits at the gate: q lands while it runs, whatever the machine's load
        assert app.active is not None and app.active.cancel.is_set() and app.return_code is None
        gate.set()
        await wait_until(pilot, lambda: app.return_code is not None, 10, "the app to quit")

    drive(app, steps)
    assert app.return_code == 0
    (out,) = (tmp_path / "runs").iterdir()
    run = json.loads((out / "run.json").read_text())
    # cancelled in the second distance's callback, after recording it: 1 and 2 m saved, 3-6 m not run
    assert run["partial"] is True and run["distances_m"] == [1.0, 2.0]
    assert run["partial_reason"] == "cancelled after 2 of 6 distances"


def test_a_failing_sweep_is_reported_and_the_tui_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("facequant.sweep.engine.run_sweep", fake_run_sweep([1.0], fail=True))
    config = tmp_path / "c.yaml"
    (tmp_path / "photos").mkdir()  # beside runs/: a results folder inside the photos is refused
    config.write_text(f"model: m.onnx\ndata: {tmp_path / 'photos'}\nbackends: fp32\ndistances: 1\n")
    app = FacequantApp(config=config, runs_dir=tmp_path / "runs")

    async def steps(pilot: Pilot) -> None:
        await pilot.press("r")
        await wait_until(pilot, lambda: app.active is None and app.last_outcome is not None, 10, "the failure")
        assert app.screen.data.status == state.FAILED  # type: ignore[attr-defined]
        assert "a bug in the sweep" in status_text(app)
        await pilot.press("s")  # back to setup, ready for another try
        assert isinstance(app.screen, SetupScreen)

    drive(app, steps)
    assert not (tmp_path / "runs").exists()


def test_tui_subcommand_and_setup_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    args = build_parser().parse_args(["tui", "--results", "runs/first", "--runs", "elsewhere"])
    assert args.func.__name__ == "cmd_tui" and args.results == Path("runs/first") and args.runs == Path("elsewhere")
    assert main(["tui", "--results", str(tmp_path / "missing")]) == 2  # one-line error, no screen
    assert "not a facequant results directory" in capsys.readouterr().err
    base = state.config_from_dict({"model": "m", "data": "d", "backends": ["fp32"], "distances_m": [1, 2]})
    bad_camera = state.SetupValues("m", str(tmp_path), "nocamera", "1", "fp32", "", base, "test")
    with pytest.raises(FacequantError, match="camera 'nocamera'"):
        state.config_from_setup(bad_camera, tmp_path)
    px = state.SetupValues("m", str(tmp_path), "720p-60", "px:112,40", "int8-pt", "", base, "test")
    config, out = state.config_from_setup(px, tmp_path / "runs")
    assert config.face_px == (112.0, 40.0) and config.backends == ("fp32", "int8-pt")
    assert out.parent == tmp_path / "runs" and out.name.startswith("m-")
    assert state.setup_from_config(config, "x").distances == "px:112,40"
    # a run of several models prefills them as --model would, and the TUI says it runs one
    several = state.config_from_dict({"model": ["a.onnx", "b.onnx"], "data": "d", "distances_m": [1]})
    assert state.setup_from_config(several, "x").model == "a.onnx,b.onnx"
    two = state.SetupValues("a.onnx,b.onnx", str(tmp_path), "720p-60", "1", "fp32", "", base, "test")
    with pytest.raises(FacequantError, match="the TUI runs one model at a time.*facequant sweep"):
        state.config_from_setup(two, tmp_path)


@pytest.mark.slow
def test_screenshot_svg(results_dir: Path, tmp_path: Path):
    from tui.screenshot import screenshot

    svg = screenshot(results_dir, tmp_path / "shot.svg").read_text()
    assert svg.startswith("<svg") and "int8" in svg and "fp32" in svg


# --------------------------------------------------------------------------- a real terminal


def _facequant_command() -> str:
    """`facequant` as installed beside this interpreter (a venv's or pyenv's bin)."""
    script = Path(sys.executable).with_name("facequant")
    return str(script) if script.is_file() else f"{sys.executable} -m facequant.cli"


@pytest.mark.slow
def test_tmux_end_to_end(tmp_path: Path, model_path: Path, small_data: Path):
    if shutil.which("tmux") is None:
        reason = "tmux is not installed (CI installs it: apt-get install -y tmux)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # in CI a missing tmux is a broken setup, never a silent skip
        pytest.skip(reason)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(["bash", str(TMUX_SCRIPT), str(work), _facequant_command(), str(small_data)],
                          capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    results = (work / "results.txt").read_text()
    assert "complete" in results and "int8-pt" in results
    (out,) = (work / "runs").iterdir()
    assert f"runs/{out.name}" in (work / "export.txt").read_text()
    assert len(pd.read_csv(out / "sweep.csv")) == 4 and (out / "cliff.csv").is_file()


def test_tar_band_follows_the_cliff_tables_reliable_bar():
    # own close TAR 1.0: 0.85 is below 90 % of it, but above a shared bar of 0.81 (fp32's 0.9)
    assert state.tar_band(0.85, 1.0) == "degraded"
    assert state.tar_band(0.85, 1.0, reliable_tar=0.81) == "reliable"
    assert state.tar_band(0.5, 1.0, reliable_tar=0.81) == "cliff"
    assert state.tar_band(float("nan"), 1.0, reliable_tar=0.81) == ""


# --------------------------------------------------------------------------- issue 10: the TUI's findings


def test_tui_command_line__prefills_the_form_as_sweep_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`facequant tui --model M --data D ...` (the first thing a user types) sets up that sweep."""
    started: list[FacequantApp] = []
    monkeypatch.setattr(FacequantApp, "run", lambda self: started.append(self))
    data = tmp_path / "photos"
    data.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text("camera: 720p-60\nbackends: fp32,int8-pt\njpeg: 90\n")
    assert main(["tui", "--model", "m.onnx", "--data", str(data), "--backends", "fp32,int8-pc", "--distances", "1,2",
                 "--config", str(config), "--runs", str(tmp_path / "runs")]) == 0
    (app,) = started
    assert app.prefill == {"model": "m.onnx", "data": str(data), "backends": "fp32,int8-pc", "distances": (1.0, 2.0)}

    async def steps(pilot: Pilot) -> None:
        values = pilot.app.screen.read_values()
        assert (values.model, values.data, values.backends, values.distances) == (
            "m.onnx", str(data), "fp32,int8-pc", "1,2")  # the command line wins over the file ...
        assert values.camera == "720p-60" and values.base.degradation.jpeg_quality == 90  # ... the file fills the rest
        assert values.source == f"config {config} and the command line"

    drive(FacequantApp(config=config, runs_dir=tmp_path / "runs", prefill=app.prefill), steps)


@pytest.mark.slow
def test_runs_list__leaves_out_folders_it_cannot_open__a_study(results_copy: Path):
    from facequant.analysis import studies

    runs = results_copy.parent
    table = pd.DataFrame([dict.fromkeys(studies.STUDY_COLUMNS, 0.5) | {"variant": "N=4", "degenerate": ""}])
    studies.write_study(studies.StudyResult("calibration-size", "int8-pt", table, {}), runs / "study-newer")
    assert (runs / "study-newer" / "run.json").is_file()  # the newest run.json under runs/ is the study's
    assert state.list_runs(runs) == [results_copy] and state.latest_run(runs) == results_copy

    async def steps(pilot: Pilot) -> None:
        screen = pilot.app.screen
        listed = [item.name for item in screen.query_one("#runs").children]
        assert listed == [str(results_copy)]  # only what the results screen can show
        values = screen.read_values()
        assert values.source == f"last run {results_copy}" and values.backends == "fp32,int8-pt"  # not "defaults"

    drive(FacequantApp(runs_dir=runs), steps)


@pytest.mark.slow
def test_recommend_tab__scrolls_at_once(results_dir: Path):
    async def steps(pilot: Pilot) -> None:
        screen = pilot.app.screen
        await pilot.press("6")
        await pilot.pause(0.3)
        pane = screen.query_one("#recommend-pane")
        assert screen.focused is pane  # the keys go to the pane, no Tab needed
        assert pane.max_scroll_y > 0  # three scenarios do not fit 80x24
        await pilot.press("end")
        await pilot.pause(0.3)
        assert pane.scroll_y == pane.max_scroll_y
        await pilot.press("1")  # another tab: its table takes the keys
        assert isinstance(screen.focused, SweepTable)

    drive(FacequantApp(results=results_dir, runs_dir=results_dir.parent), steps)


def test_header__names_the_model_one_way_through_a_run():
    from tui.screens import model_label

    running = state.RunData(sweep=state.empty_sweep(), cliff=state.live_cliff(state.empty_sweep()),
                            status=state.RUNNING, run={"config": {"model": "faceplugin"}})
    rows = fake_sweep_rows([1.0]).assign(model=settings.default_model_path().name)
    done = state.RunData(sweep=rows, cliff=state.live_cliff(rows), run={"config": {"model": "faceplugin"}})
    assert model_label(running) == model_label(done) == "fr_feature.onnx"
    path_run = state.RunData(sweep=state.empty_sweep(), cliff=state.live_cliff(state.empty_sweep()),
                             status=state.RUNNING, run={"config": {"model": "models/my.onnx"}})
    assert model_label(path_run) == "my.onnx"

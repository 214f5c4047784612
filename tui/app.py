"""facequant's terminal UI: `facequant tui [--results DIR] [--config YAML] [--runs DIR]`.

A thin layer over the same API as the CLI: the setup screen makes a SweepConfig from the same
option table `facequant sweep` parses (facequant.config), a thread worker runs
facequant.api.sweep and streams each finished distance's sweep rows back as messages, and
results directories are read by facequant.results.directory. No metric is computed here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.worker import Worker, WorkerState

from facequant.api import Output
from facequant.errors import FacequantError
from facequant.sweep.config import SweepConfig
from tui import state
from tui.screens import HelpScreen, ResultsScreen, SetupScreen
from tui.state import RUNNING, RunData, RunOutcome, display_path


class SweepProgress(Message):
    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__()
        self.stage, self.done, self.total = stage, done, total


class SweepRows(Message):
    """A distance finished: the sweep rows so far (and their live cliff table)."""

    def __init__(self, data: RunData) -> None:
        super().__init__()
        self.data = data


@dataclass
class ActiveRun:
    config: SweepConfig
    out: Path
    cancel: threading.Event
    screen: ResultsScreen
    quit_after: bool = False


class FacequantApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "facequant"
    ENABLE_COMMAND_PALETTE = False  # its footer entry would crowd an 80-column footer
    BINDINGS = [
        Binding("q", "quit_app", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, results: Path | None = None, config: Path | None = None,
                 runs_dir: Path = Path("runs"), diagnostics: Path | None = None,
                 prefill: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self.results_arg = results
        self.config_arg = config
        self.prefill = dict(prefill or {})  # sweep options from the command line, by dest
        self.runs_dir = runs_dir
        self.diagnostics_dir = diagnostics
        self.active: ActiveRun | None = None
        self.last_outcome: RunOutcome | None = None

    def on_mount(self) -> None:
        values = self._initial_values()
        self.setup_screen = SetupScreen(values, self.runs_dir)
        self.push_screen(self.setup_screen)
        if self.results_arg is not None:
            self.open_results(self.results_arg)

    def _initial_values(self) -> state.SetupValues:
        """--config and command-line options win; with --results the form shows that run's
        config (r re-runs it)."""
        if self.config_arg is None and not self.prefill and self.results_arg is not None:
            try:
                config = state.run_config(state.load_run(self.results_arg).run)
                return state.setup_from_config(state.config_from_dict(config), f"run {self.results_arg}")
            except (FacequantError, OSError, ValueError, TypeError):
                pass  # open_results reports the problem
        try:
            return state.initial_setup(self.config_arg, self.runs_dir, self.prefill)
        except FacequantError as exc:
            self.notify(str(exc), severity="error", timeout=10, markup=False)
            return state.initial_setup(None, self.runs_dir)

    # -- opening results -----------------------------------------------------------------

    def open_results(self, path: Path) -> bool:
        """Show a results directory as written: nothing is recomputed."""
        try:
            data = state.load_run(path)
        except (FacequantError, OSError, ValueError) as exc:
            self.notify(str(exc), severity="error", timeout=8, markup=False)
            return False
        self._show(ResultsScreen(data, self.diagnostics_dir))
        return True

    def _show(self, screen: ResultsScreen) -> None:
        """One results screen at a time, above setup."""
        if isinstance(self.screen, ResultsScreen):
            self.switch_screen(screen)
        else:
            if isinstance(self.screen, HelpScreen):
                self.pop_screen()
            self.push_screen(screen)

    # -- running -------------------------------------------------------------------------

    def action_run_sweep(self) -> None:
        if self.active is not None:
            self.notify("a sweep is already running (c cancels it)", severity="warning")
            return
        try:
            config, out = state.config_from_setup(self.setup_screen.read_values(), self.runs_dir)
            Output(out).checked(config)  # before any work, as the CLI does
        except FacequantError as exc:
            self.notify(str(exc), title="cannot run", severity="error", timeout=10, markup=False)
            return
        data = RunData(sweep=state.empty_sweep(), cliff=state.live_cliff(state.empty_sweep()), path=out, status=RUNNING,
                       run={"config": config.to_dict()},
                       planned=len(config.face_px or config.distances_m))
        screen = ResultsScreen(data, self.diagnostics_dir)
        self.active = ActiveRun(config, out, threading.Event(), screen)
        self._show(screen)
        screen.set_status(f"saving to {display_path(out)} when done; c cancels, keeps finished distances")
        self._sweep(self.active)

    @work(thread=True, exclusive=True, group="sweep", exit_on_error=False)
    def _sweep(self, run: ActiveRun) -> RunOutcome:
        def progress(stage: str, done: int, total: int) -> None:
            self.post_message(SweepProgress(stage, done, total))

        def on_rows(data: RunData) -> None:
            self.post_message(SweepRows(data))

        return state.run_cancellable(run.config, run.out, run.cancel, progress=progress, on_rows=on_rows)

    def on_sweep_progress(self, message: SweepProgress) -> None:
        if self.active is not None and self.active.screen.is_attached:
            self.active.screen.show_progress(message.stage, message.done, message.total)

    def on_sweep_rows(self, message: SweepRows) -> None:
        if self.active is not None and self.active.screen.is_attached:
            message.data.planned = self.active.screen.data.planned
            self.active.screen.show_data(message.data)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "sweep" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        run, self.active = self.active, None
        if run is None:
            return
        if event.state == WorkerState.ERROR:  # a bug, not an input problem: say it, keep the TUI up
            outcome = RunOutcome(state.FAILED, None, f"sweep failed: {event.worker.error!r}")
        else:
            result = event.worker.result
            assert isinstance(result, RunOutcome)
            outcome = result
        self.last_outcome = outcome
        screen = run.screen
        if outcome.data is not None:
            screen.show_data(outcome.data)
            screen.show_extras()
        elif screen.is_attached:
            failed = screen.data
            failed.status = state.FAILED if outcome.status == state.FAILED else state.PARTIAL
            failed.path = None  # nothing was written
            screen.show_data(failed)
        screen.set_status(outcome.message)
        severity: SeverityLevel = "error" if outcome.status == state.FAILED else "warning" if outcome.status == state.PARTIAL else "information"
        self.notify(outcome.message, severity=severity, timeout=8, markup=False)
        if run.quit_after:
            self.exit()

    def cancel_sweep(self) -> None:
        if self.active is None:
            return
        self.active.cancel.set()
        self.active.screen.set_status("cancelling after the distance in progress; finished distances will be saved")

    # -- export, help, quit --------------------------------------------------------------

    def export_results(self, screen: ResultsScreen) -> None:
        try:
            written = state.export_csvs(screen.data)
        except (FacequantError, OSError) as exc:
            self.notify(str(exc), severity="warning", timeout=8, markup=False)
            return
        names = ", ".join(p.name for p in written)
        message = f"exported {names} to {display_path(written[0].parent)}"
        screen.set_status(message)
        self.notify(message, title="export", timeout=10, markup=False)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_unmount(self) -> None:
        # However the app ends (an error included), a sweep still running stops at its next
        # distance instead of holding the process until it is done; what finished is saved.
        if self.active is not None:
            self.active.cancel.set()

    def action_quit_app(self) -> None:
        if self.active is not None:  # keep what finished: cancel, save, then leave
            self.active.quit_after = True
            self.cancel_sweep()
            self.notify("cancelling the sweep; finished distances are saved, then the TUI quits")
            return
        self.exit()


def run_tui(results: Path | None = None, config: Path | None = None, runs_dir: Path = Path("runs"),
            diagnostics: Path | None = None, prefill: Mapping[str, object] | None = None) -> int:
    """Entry point of `facequant tui`; returns the exit code. `prefill`: sweep options by dest
    (as `facequant sweep` parses them) for the setup form, over --config."""
    if results is not None:
        state.load_run(results)  # a bad directory is a one-line CLI error, before the screen opens
    if config is not None and not Path(config).is_file():
        raise FacequantError(f"{config}: config file not found")
    if config is not None or prefill:
        state.initial_setup(config, runs_dir, prefill)  # a bad config or option: one line, before the screen
    FacequantApp(results=results, config=config, runs_dir=runs_dir, diagnostics=diagnostics, prefill=prefill).run()
    return 0

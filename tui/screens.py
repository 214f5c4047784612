"""The three screens: setup (what to run, or which results to open), results (live or loaded),
and help. The app (tui.app) owns the sweep worker; screens only show and ask."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, cast

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    Footer,
    Input,
    Label,
    ListItem,
    ListView,
    ProgressBar,
    Static,
    TabbedContent,
    TabPane,
)

from facequant.results.reading import backend_labels
from tui.layers import CANDIDATE_DIRS, load_diagnostics
from tui.recommendation import Recommendations, load_recommendations
from tui.state import (
    COMPLETE,
    FAILED,
    PARTIAL,
    RUNNING,
    SETUP_FIELDS,
    RunData,
    SetupValues,
    display_path,
    list_runs,
    model_file_name,
    run_config,
)
from tui.widgets import (
    TAR_LEGEND,
    TAR_RULE_MARKUP,
    CliffPane,
    LayersPane,
    PrenormPlot,
    RecommendationPane,
    SummaryTable,
    SweepTable,
    TarPlot,
    plot_key,
)

LABELS: dict[str, str] = {"model": "model", "data": "dataset", "camera": "camera", "distances": "distances",
                          "backends": "backends", "out": "save to"}


class Host(Protocol):
    """What the screens ask of the app (tui.app.FacequantApp), named here: the app imports the
    screens, so the screens cannot import it back."""

    def action_run_sweep(self) -> None: ...

    def open_results(self, path: Path) -> bool: ...

    def cancel_sweep(self) -> None: ...

    def export_results(self, screen: ResultsScreen) -> None: ...


def _host(screen: Screen[None]) -> Host:
    return cast(Host, screen.app)


def _hints() -> dict[str, str]:
    """One line per field: the option's own help, as `facequant tui --help` prints it."""
    from tui.state import setup_hints

    return setup_hints()


class SetupScreen(Screen[None]):
    """Model, dataset, camera, distances, backends; prefilled from --config or the last run.
    Also lists previous runs to open without recomputing."""

    AUTO_FOCUS = "#run"  # not a field: r, o, ? and q work at once; tab reaches the fields
    BINDINGS = [
        Binding("r", "app.run_sweep", "Run"),
        Binding("ctrl+r", "app.run_sweep", "Run", show=False, priority=True),
        Binding("o", "open_focus", "Open results"),
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    def __init__(self, values: SetupValues, runs_dir: Path) -> None:
        super().__init__(id="setup")
        self.values = values
        self.runs_dir = runs_dir
        self.hints = _hints()

    def compose(self) -> ComposeResult:
        yield Static("[b]facequant[/b] - distance sweep setup", id="setup-title", classes="title")
        with Grid(id="form"):
            for name in SETUP_FIELDS:
                yield Label(LABELS[name], classes="field-label")
                yield Input(self.values.as_dict()[name], id=f"field-{name}", select_on_focus=False,
                            placeholder="runs/<model>-<time>" if name == "out" else "")
        yield Static("", id="hint", classes="notes")
        yield Static(Text(f"prefilled from {self.values.source}; other options as there"), id="source", classes="notes")
        with Horizontal(id="setup-buttons"):
            yield Button("Run (r)", id="run", variant="primary")
            yield Button("Open results (o)", id="open")
        with Horizontal(id="open-row"):
            yield Label("open dir", classes="field-label")
            yield Input("", id="open-path", placeholder="a results directory, Enter opens it")
        yield ListView(id="runs")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_runs()

    def on_screen_resume(self) -> None:
        self.refresh_runs()

    def refresh_runs(self) -> None:
        runs = self.query_one("#runs", ListView)
        runs.clear()
        found = list_runs(self.runs_dir)
        if not found:
            runs.append(ListItem(Label(Text(f"no runs under {display_path(self.runs_dir)} yet"), classes="notes"),
                                 name=""))
        for path in found:
            runs.append(ListItem(Label(_describe_run(path)), name=str(path)))
        runs.index = 0  # the newest run is highlighted: o then Enter opens it

    def read_values(self) -> SetupValues:
        fields = {name: self.query_one(f"#field-{name}", Input).value for name in SETUP_FIELDS}
        return SetupValues(**fields, base=self.values.base, source=self.values.source)

    @on(Input.Changed)
    def _hint_for_focused(self) -> None:
        self._show_hint()

    def on_descendant_focus(self) -> None:
        self._show_hint()

    def _show_hint(self) -> None:
        focused = self.focused
        name = focused.id.removeprefix("field-") if focused is not None and focused.id else ""
        text = self.hints.get(name, "tab: next field, r: run with these values, o: open a previous run")
        self.query_one("#hint", Static).update(text)

    def action_open_focus(self) -> None:
        runs = self.query_one("#runs", ListView)
        if runs.index is None and len(runs):
            runs.index = 0
        runs.focus()

    def action_leave_field(self) -> None:
        self.query_one("#run", Button).focus()

    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        _host(self).action_run_sweep()

    @on(Button.Pressed, "#open")
    def _open_pressed(self) -> None:
        path = self.query_one("#open-path", Input).value.strip()
        if path:
            _host(self).open_results(Path(path))
        else:
            self.action_open_focus()

    @on(Input.Submitted, "#open-path")
    def _open_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            _host(self).open_results(Path(event.value.strip()))

    @on(Input.Submitted)
    def _field_submitted(self, event: Input.Submitted) -> None:
        if event.input.id and event.input.id.startswith("field-"):
            self.query_one("#run", Button).focus()  # Enter ends editing; r then runs

    @on(ListView.Selected, "#runs")
    def _run_selected(self, event: ListView.Selected) -> None:
        if event.item.name:
            _host(self).open_results(Path(event.item.name))


def model_label(data: RunData) -> str:
    """The model as one run names it throughout: sweep.csv's model column (the file's name),
    and before the first rows arrive the same name from the config ('faceplugin' is
    fr_feature.onnx), not the name as typed."""
    return data.model_name or model_file_name(str(run_config(data.run).get("model") or ""))


def _names(value: object) -> list[str]:
    """A run.json list of names (backends), as strings; nothing when it is not a list."""
    return [str(v) for v in value] if isinstance(value, list) else []


def _describe_run(path: Path) -> str:
    """One line for the runs list: name, backends, distances, partial or not."""
    try:
        run = json.loads((path / "run.json").read_text())
        config = run_config(run)
        backends = ",".join(_names(config.get("backends")))
        n = len(run.get("distances_m", []))
        flag = "  [yellow]partial[/]" if run.get("partial") else ""
        if not (path / "sweep.csv").is_file() and (path / "layers.csv").is_file():
            flag = "  [cyan]layer diagnostics[/]"
        return f"{escape(path.name)}  [dim]{escape(backends)}; {n} distances[/]{flag}"
    except (OSError, ValueError, AttributeError):
        return f"{escape(path.name)}  [red](unreadable run.json)[/]"


class ResultsScreen(Screen[None]):
    """One run: the sweep table, the cliff summary, two plots, layer diagnostics and the
    recommendation. A running sweep fills it distance by distance."""

    BINDINGS = [
        Binding("r", "app.run_sweep", "Run"),
        Binding("c", "cancel", "Cancel run"),
        Binding("e", "export", "Export CSV"),
        Binding("s", "setup", "Setup"),
        Binding("escape", "setup", "Setup", show=False),
        Binding("1", "tab('tab-table')", "Table", show=False),
        Binding("2", "tab('tab-cliff')", "Cliff", show=False),
        Binding("3", "tab('tab-tar')", "TAR plot", show=False),
        Binding("4", "tab('tab-prenorm')", "Pre-norm plot", show=False),
        Binding("5", "tab('tab-layers')", "Layers", show=False),
        Binding("6", "tab('tab-recommend')", "Recommend", show=False),
    ]

    def __init__(self, data: RunData, diagnostics_dir: Path | None = None) -> None:
        super().__init__(id="results")
        self.data = data
        self.diagnostics_dir = diagnostics_dir
        self.message = ""
        self._ready = False  # set on mount; updates before then are kept and shown on mount

    def compose(self) -> ComposeResult:
        yield Static("", id="results-title", classes="title")
        with Horizontal(id="progress-row"):
            yield Label("", id="stage")
            yield ProgressBar(id="progress", show_eta=False)
        # A diagnose directory has layers and nothing else: open on them.
        with TabbedContent(id="tabs", initial="tab-layers" if self.data.kind == "diagnostics" else "tab-table"):
            with TabPane("Table", id="tab-table"):
                yield SweepTable(id="sweep-table", cursor_foreground_priority="renderable")
                yield Static(TAR_LEGEND, id="legend", classes="notes")
            with TabPane("Cliff", id="tab-cliff"):
                yield CliffPane(id="cliff-pane")
            with TabPane("TAR", id="tab-tar"):
                yield TarPlot(id="tar-plot")
                yield Static("", id="tar-key", classes="notes")
            with TabPane("Pre-norm", id="tab-prenorm"):
                yield PrenormPlot(id="prenorm-plot")
                yield Static("", id="prenorm-key", classes="notes")
            with TabPane("Layers", id="tab-layers"):
                with VerticalScroll():
                    yield LayersPane(id="layers-pane")
                    yield SummaryTable(id="diag-summary", cursor_type="row")
            with TabPane("Recommend", id="tab-recommend"):
                yield RecommendationPane(id="recommend-pane")
        yield Static("", id="status", classes="notes")
        yield Footer()

    def on_mount(self) -> None:
        self._ready = True
        self.show_data(self.data)
        self.show_extras()
        # Focus follows the open tab (focusing a widget in another pane would switch to it).
        (self.query_one("#layers-table") if self.data.kind == "diagnostics" else self.query_one(SweepTable)).focus()
        if not self.message and self.data.path is not None and self.data.status != RUNNING:
            self.message = (f"layer diagnostics in {display_path(self.data.path)}" if self.data.kind == "diagnostics"
                            else f"comparison in {display_path(self.data.path)}: each backend of run A and of run B"
                            if self.data.kind == "compare"
                            else f"results in {display_path(self.data.path)}; e exports sweep.csv and cliff.csv there")
        self.set_status(self.message)

    # -- updates from the app (may come before the screen is mounted: kept until it is) ------

    def show_data(self, data: RunData) -> None:
        self.data = data
        if not self._ready:
            return
        self.query_one(SweepTable).show(data)
        self.query_one(CliffPane).show(data)
        self.query_one(TarPlot).show(data)
        self.query_one(PrenormPlot).show(data)
        names = list(backend_labels(data.sweep.backend).values())  # the plots' order: first appearance
        self.query_one("#tar-key", Static).update(plot_key(names))
        self.query_one("#prenorm-key", Static).update(plot_key(names))
        self._title()
        self.query_one("#progress-row").display = data.status == RUNNING
        self.refresh_bindings()

    def show_extras(self) -> None:
        """Diagnostics and recommendation read files beside the results: only for a run on disk."""
        if not self._ready:
            return
        done = self.data.status in (COMPLETE, PARTIAL)
        run_dir = self.data.path if done else None
        diagnostics = load_diagnostics(run_dir, self.diagnostics_dir)
        looked = (", ".join(display_path(run_dir / d) for d in CANDIDATE_DIRS) if run_dir else "(run not finished)")
        self.query_one(LayersPane).show(diagnostics, looked)
        summary = self.query_one("#diag-summary", SummaryTable)
        summary.display = diagnostics is not None and diagnostics.summary is not None
        view = diagnostics.summary_view() if diagnostics is not None else None
        if view is not None:
            summary.show_frame(view)
        recs = (Recommendations(None, f"a {self.data.kind} directory has no sweep to recommend from")
                if self.data.kind in ("diagnostics", "compare") else load_recommendations(run_dir))
        self.query_one(RecommendationPane).show(recs)

    def show_progress(self, stage: str, done: int, total: int) -> None:
        if not self._ready:
            return
        labels = {"faces": "faces", "calibration": "building backends", "distances": "distances"}
        self.query_one("#stage", Label).update(f"{labels.get(stage, stage)} {done}/{total}")
        bar = self.query_one(ProgressBar)
        bar.update(total=max(total, 1), progress=done)

    def set_status(self, message: str) -> None:
        self.message = message
        if self._ready:
            self.query_one("#status", Static).update(Text(message))

    def _title(self) -> None:
        d = self.data
        config = run_config(d.run)
        record = d.run.get("camera")
        camera = record.get("name") if isinstance(record, dict) else None
        camera = camera or config.get("camera", "")
        state = {RUNNING: "[yellow]running[/]", COMPLETE: "[green]complete[/]", PARTIAL: "[yellow]PARTIAL[/]",
                 FAILED: "[red]failed[/]"}[d.status]
        if d.kind == "diagnostics":
            state = "[cyan]layer diagnostics[/]"
        planned = f"/{d.planned}" if d.planned and d.status != COMPLETE else ""
        where = display_path(d.path) if d.path else ""
        thr = f" {d.threshold_text}" if len(d.sweep) else ""
        if d.kind == "compare":
            info = d.run.get("comparison", {})
            assert isinstance(info, dict)
            verdict = "[green]comparable[/]" if info.get("comparable") else "[red]NOT comparable[/]"
            self.query_one("#results-title", Static).update(
                f"[cyan]comparison[/] B {escape(Path(str(info.get('b', ''))).name)} vs A "
                f"{escape(Path(str(info.get('a', ''))).name)} {verdict} [dim]{escape(where)}[/]")
            return
        if d.kind == "diagnostics":
            backends = ",".join(_names(config.get("backends")))
            self.query_one("#results-title", Static).update(
                f"{state} {escape(Path(str(config.get('model', ''))).name)} {escape(backends)} [dim]{escape(where)}[/]")
            return
        n_warn = len(d.warnings)
        warned = f" [yellow]{n_warn} warning{'s' if n_warn > 1 else ''} (2)[/]" if n_warn else ""
        self.query_one("#results-title", Static).update(
            f"{state} {escape(model_label(d))} {escape(str(camera))}{thr}{warned} "
            f"{len(d.distances)}{planned} dist [dim]{escape(where)}[/]")

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.data.status == RUNNING  # only while this screen's sweep runs
        if action in ("export", "setup"):
            return True if self.data.status != RUNNING else None  # shown greyed while running
        return True

    def action_cancel(self) -> None:
        _host(self).cancel_sweep()

    def action_export(self) -> None:
        _host(self).export_results(self)

    def action_setup(self) -> None:
        if self.data.status == RUNNING:
            self.app.notify("the sweep is running: cancel it (c) first", severity="warning")
            return
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def _focus_the_pane(self, event: TabbedContent.TabActivated) -> None:
        # The pane's first focusable widget takes the keys: arrows and page keys scroll the
        # Recommend tab's tables at once, not only after Tab is pressed.
        for widget in event.pane.query("*"):
            if widget.focusable:
                widget.focus()
                return


HELP = """\
[b]Keys[/b]
 [b]r[/b]        run a sweep with the setup values ([b]ctrl+r[/b] inside a field)
 [b]c[/b]        cancel the run: finished distances are kept, saved as partial
 [b]e[/b]        export the shown sweep.csv and cliff.csv into the run's dir
 [b]o[/b]        setup: open a previous run (list, or type a dir and Enter)
 [b]s[/b], [b]esc[/b]   results: back to setup
 [b]1[/b]-[b]6[/b]      results tabs: table, cliff, TAR, pre-norm, layers, recommend
 [b]tab[/b]      next field / widget; [b]arrows[/b] move in tabs, lists, tables
 [b]?[/b]        this help ([b]esc[/b] closes it)
 [b]q[/b]        quit (a running sweep is cancelled and saved first)

[b]Colours[/b]  {colours}
[bold magenta]![/] after a backend: degenerate (reason in the Cliff tab).

Runs are saved to runs/<model>-<time>, as by facequant sweep;
[b]facequant tui --results DIR[/b] opens one without recomputing.
"""


HELP = HELP.replace("{colours}", TAR_RULE_MARKUP)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close"), Binding("question_mark", "close", "Close", key_display="?")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            with VerticalScroll(id="help-scroll"):
                yield Static(HELP, id="help-text")
            yield Footer()

    def action_close(self) -> None:
        self.app.pop_screen()

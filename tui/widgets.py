"""Widgets of the results screen. Each one takes a RunData (or a diagnostics / recommendation
table) and shows it; none computes a metric."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from facequant.render.summary import summary
from facequant.results.directory import backend_labels
from facequant.values import as_float
from tui.layers import Diagnostics
from tui.recommendation import Recommendations
from tui.state import RunData, display_path, tar_band

#: TAR cell styles by side of the cliff (tui.state.tar_band).
TAR_STYLES: dict[str, str] = {"reliable": "bold green", "degraded": "bold yellow", "cliff": "bold red", "": "dim"}
#: The colour rule of tui.state.tar_band, in the words the README uses (a test holds them equal).
TAR_RULE = ("green: at or above the reliable bar (90 % of fp32's close-range TAR); "
            "red: at or below 50 % of the backend's own close-range TAR; yellow: between")
TAR_RULE_MARKUP = (TAR_RULE.replace("green:", "[bold green]green[/]:").replace("red:", "[bold red]red[/]:")
                   .replace("yellow:", "[bold yellow]yellow[/]:"))
TAR_LEGEND = f"TAR {TAR_RULE_MARKUP}"


_float = as_float  # a cell as a number, NaN when it is not one


def _num(value: object, fmt: str) -> str:
    v = _float(value)
    return "-" if math.isnan(v) else format(v, fmt)


class SweepTable(DataTable):
    """Backend x distance: TAR (coloured), its interval, FAR, pre-norm, cosine to fp32."""

    COLUMNS: tuple[tuple[str, str], ...] = (
        ("backend", "backend"), ("dist m", "distance"), ("face px", "face_px"), ("TAR", "tar"),
        ("95% CI", "tar_ci"), ("FAR", "far"), ("pre-norm", "prenorm"), ("cos fp32", "cos"))

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.fixed_columns = 1  # a long mixed-precision name scrolls the numbers, not itself
        for label, key in self.COLUMNS:
            self.add_column(label, key=key)

    def show(self, data: RunData) -> None:
        close = {str(r.backend): _float(r.tar_close) for r in data.cliff.itertuples()} if len(data.cliff) else {}
        bars = ({str(r.backend): _float(r.reliable_tar) for r in data.cliff.itertuples()}
                if "reliable_tar" in data.cliff else {})
        degenerate = ({str(r.backend) for r in data.cliff.itertuples() if str(getattr(r, "degenerate", "") or "")}
                      if "degenerate" in data.cliff else set())
        cursor = self.cursor_row
        self.clear()
        labels = backend_labels(data.sweep.backend)
        for r in data.sweep.itertuples():
            backend = str(r.backend)
            tar = _float(r.tar)
            band = tar_band(tar, close.get(backend, math.nan), bars.get(backend, math.nan))
            self.add_row(
                Text(labels[backend] + (" !" if backend in degenerate else ""),
                     style="bold magenta" if backend in degenerate else ""),
                Text(_num(r.distance_m, "g"), justify="right"),
                Text(_num(r.face_px, ".0f"), justify="right"),
                Text(_num(tar, ".3f"), style=TAR_STYLES[band], justify="right"),
                Text(f"{_num(r.tar_ci_low, '.2f')}-{_num(r.tar_ci_high, '.2f')}", style="dim", justify="right"),
                Text(_num(r.far, ".4f"), justify="right"),
                Text(_num(r.prenorm_mean, ".2f"), justify="right"),
                Text(_num(r.cos_to_fp32_mean, ".3f"), justify="right"),
                key=f"{backend}@{_float(r.distance_m):g}",
            )
        if self.row_count:
            self.move_cursor(row=min(max(cursor, 0), self.row_count - 1))


class CliffPane(VerticalScroll):
    """The CLI's summary of the run (facequant.render.summary), as `facequant sweep` prints it
    (the header above holds its title), and what only a live or partial run needs said."""

    items: tuple[RenderableType, ...] = ()  # what it shows (tests read them back as text)

    def compose(self) -> ComposeResult:
        yield Static("", id="cliff-summary")

    def show(self, data: RunData) -> None:
        identifying = data.run.get("protocol") == "identification"
        items = summary(data.cliff, data.sweep, data.cost, data.run, identification=data.identification,
                        identifying=identifying)
        if data.status != "complete":
            items.append(Text("verdicts, intervals, pre-norm cliff and cost come with the complete run (they need "
                              "every comparison)", style="yellow"))
        if "degenerate" in data.cliff and not data.warnings:  # a live run: run.json's warnings come at its end
            items += [Text.assemble((f"{r.backend} is degenerate:", "bold magenta"), f" {r.degenerate}")
                      for r in data.cliff.itertuples() if str(r.degenerate or "")]
        self.items = tuple(items)
        self.query_one("#cliff-summary", Static).update(Group(*items))


#: One colour per backend, the same in both plots (plotext colour names).
PALETTE = ("cyan", "orange", "magenta", "green", "blue", "red", "yellow", "white")


#: plotext colour names rich does not know, as rich names them.
RICH_COLOURS = {"orange": "dark_orange"}


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def plot_key(names: list[str], head: str = "lines: ") -> Text:
    """The key of a chart, for a line under it: plotext draws its legend inside the plot's top
    left, over the lines (TAR starts near 1 at the left), so no chart here takes labels."""
    key = Text(head)
    for i, name in enumerate(names):
        key.append(f"\u2500\u2500 {name}  ", style=RICH_COLOURS.get(_colour(i), _colour(i)))
    return key


def _rate_axis(plt: Plot) -> None:
    plt.ylim(0, 1.02)
    plt.yticks([0, 0.25, 0.5, 0.75, 1.0])


class TarPlot(PlotextPlot):
    """TAR vs distance, one line per backend (sweep.csv's tar column)."""

    def show(self, data: RunData) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        for i, (_backend, rows) in enumerate(data.sweep.groupby("backend", sort=False)):
            rows = rows.sort_values("distance_m")
            x, y = rows["distance_m"].tolist(), rows["tar"].tolist()
            plt.plot(x, y, marker="braille", color=_colour(i))
            plt.scatter(x, y, marker="o", color=_colour(i))
        _rate_axis(plt)
        plt.title(f"TAR vs distance ({data.threshold_text.replace('thr', 'threshold', 1)})" if data.threshold_text
                  else "TAR vs distance")
        plt.xlabel("distance (m)")
        self.refresh()


class PrenormPlot(PlotextPlot):
    """Genuine match rate (TAR) against the median pre-norm, one point per distance, with each
    backend's 50 % pre-norm point from cliff.csv as a vertical line."""

    def show(self, data: RunData) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        cliff_at = (dict(zip(data.cliff["backend"].astype(str), data.cliff["cliff_prenorm"], strict=False))
                    if "cliff_prenorm" in data.cliff else {})
        for i, (backend, rows) in enumerate(data.sweep.groupby("backend", sort=False)):
            rows = rows.sort_values("prenorm_p50")
            x, y = rows["prenorm_p50"].tolist(), rows["tar"].tolist()
            plt.plot(x, y, marker="braille", color=_colour(i))
            plt.scatter(x, y, marker="o", color=_colour(i))
            value = cliff_at.get(str(backend))
            if value is not None and pd.notna(value) and math.isfinite(float(value)):
                plt.vline(float(value), color=_colour(i))
        _rate_axis(plt)
        plt.title("match rate vs pre-norm (| = 50 % point)")
        plt.xlabel("median pre-norm")
        self.refresh()


#: Shorter headers for diagnostics' columns, so the worst-layers table fits 80 columns.
SHORT_HEADERS = {"distance_m": "dist m", "op_type": "op", "snr_db": "SNR dB", "psnr_db": "PSNR dB",
                 "act_bin_utilization": "bins used", "min_snr_db": "min SNR", "min_snr_layer": "worst layer",
                 "first_below_layer": "first < thr", "output_snr_db": "out SNR", "face_px": "face px"}


class LayersPane(Vertical):
    """Worst layers and SNR vs depth, when a diagnose output directory is there."""

    def compose(self) -> ComposeResult:
        yield Static("", id="layers-note", classes="notes")
        yield DataTable(id="layers-table", cursor_type="row")
        yield PlotextPlot(id="layers-plot")
        yield Static("", id="layers-legend", classes="notes")

    def show(self, diagnostics: Diagnostics | None, looked_in: str) -> None:
        note = self.query_one("#layers-note", Static)
        table = self.query_one("#layers-table", DataTable)
        plot = self.query_one("#layers-plot", PlotextPlot)
        legend = self.query_one("#layers-legend", Static)
        table.clear(columns=True)
        plot.plt.clear_data()
        plot.plt.clear_figure()
        if diagnostics is None:
            note.update(f"No layer diagnostics (layers.csv) in {escape(looked_in)}.\n"
                        "facequant diagnose (same options as the sweep) --out <run>/diagnostics puts them "
                        "here; a diagnose directory also opens by itself (setup's list, --results), or "
                        "start with --diagnostics DIR.")
            table.display = plot.display = legend.display = False
            return
        table.display = plot.display = legend.display = True
        snr = diagnostics.snr_column
        worst, where = diagnostics.worst()
        note.update(Text(f"worst layers by {snr or 'row order'}{where} ({display_path(diagnostics.path)})"))
        for col in worst.columns:
            table.add_column(SHORT_HEADERS.get(str(col), str(col)), key=str(col))
        for row in worst.itertuples(index=False):
            table.add_row(*[Text(_num(v, ".3g") if isinstance(v, float) else str(v)) for v in row])
        series = diagnostics.snr_by_depth()
        for i, (depth, values) in enumerate(series.values()):  # no labels: the key sits under the chart
            plot.plt.plot(depth, values, marker="braille", color=_colour(i))
        legend.update(plot_key(list(series)))
        plot.plt.title(f"{snr} vs depth" if snr else "no SNR column")
        plot.plt.xlabel(diagnostics.depth_column or "layer order")
        plot.refresh()


class SummaryTable(DataTable):
    """Any small table (diagnostics summary.csv, recommendations), shown as it comes."""

    def show_frame(self, frame: pd.DataFrame) -> None:
        self.clear(columns=True)
        for col in frame.columns:
            self.add_column(SHORT_HEADERS.get(str(col), str(col)), key=str(col))
        for row in frame.itertuples(index=False):
            self.add_row(*[Text(_num(v, ".4g") if isinstance(v, float) else str(v)) for v in row])


class RecommendationPane(VerticalScroll):
    """Per deployment scenario: facequant.analysis.recommend's own tables when it renders them (the
    same the CLI prints), else its rows as a table."""

    def compose(self) -> ComposeResult:
        yield Static("", id="recommend-note", classes="notes")
        yield Static("", id="recommend-rendered")
        yield SummaryTable(id="recommend-table", cursor_type="row")

    def show(self, recs: Recommendations) -> None:
        answers = "\n".join(f"[b]{escape(line)}[/b]" for line in recs.summaries)
        self.query_one("#recommend-note", Static).update("\n".join(filter(None, [answers, escape(recs.note)])))
        rendered = self.query_one("#recommend-rendered", Static)
        table = self.query_one(SummaryTable)
        rendered.display = bool(recs.renderables)
        table.display = recs.table is not None and not recs.renderables
        if recs.renderables:
            rendered.update(Group(*recs.renderables))
        elif recs.table is not None:
            table.show_frame(recs.table)

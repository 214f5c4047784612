"""report.html: one self-contained page per results directory, for a team to read.

Built from what the directory holds (cliff.csv, sweep.csv, cost.csv, run.json, the PNGs,
recommend.csv and diagnostics/ when there), never from memory, so `facequant report DIR`
remakes exactly what the sweep wrote. In order: the verdict per backend with intervals, the
recommendation per scenario, the warnings, the cliff table, the plots, the layer diagnostics
when present, and the run's provenance. The plots are inlined as data URIs and nothing is
fetched, so the file opens offline and survives being mailed around. The HTML is Jinja2's
(templates/, autoescaped): every string from a run (a model path, a warning) is text, never markup.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from facequant import __version__
from facequant.errors import FacequantError
from facequant.results.output import MARKER, add_to_marker, recorded_command, write_file
from facequant.results.reading import load_results, read_table, run_warnings
from facequant.results.summary import LEGEND, summary_rows, verdict_lines

REPORT_HTML = "report.html"
#: Where `facequant diagnose` output goes to appear in a sweep's report.
DIAGNOSTICS_DIR = "diagnostics"
RECOMMEND_CSV = "recommend.csv"
#: The plots a sweep writes, in the order a reader wants them; any other PNG follows.
PLOT_ORDER = ("tar_vs_distance.png", "cliff_by_model.png", "identification_vs_distance.png", "match_vs_prenorm.png")
#: Rows of a long table shown in the page (the CSV beside it has them all).
MAX_ROWS = 60


def environment() -> Any:
    """The Jinja2 environment over the templates shipped in this package (autoescaped)."""
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("facequant.results", "templates"),
                              autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def cell(value: object) -> str:
    """A table cell: numbers with four significant digits, inf as 'beyond the sweep', NaN blank."""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int | float):
        v = float(value)
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "beyond the sweep" if v > 0 else "-inf"
        return f"{int(v)}" if v == int(v) and abs(v) < 1e9 else f"{v:.4g}"
    return "" if value is None else str(value)


def table(frame: pd.DataFrame | None, columns: Sequence[str] | None = None, max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """{"columns", "rows", "more"} for the table macro: the named columns that exist, as text."""
    if frame is None or not len(frame.columns):
        return {"columns": [], "rows": [], "more": 0, "numeric": []}
    chosen = [c for c in (columns or frame.columns) if c in frame.columns]
    rows = [[cell(v) for v in row] for row in frame[chosen].head(max_rows).itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in chosen]
    return {"columns": chosen, "rows": rows, "more": max(0, len(frame) - max_rows), "numeric": numeric}


def plots(folder: Path) -> list[dict[str, str]]:
    """The folder's PNGs, inlined: the sweep's in PLOT_ORDER first, then any other."""
    found = sorted(folder.glob("*.png"), key=lambda p: (PLOT_ORDER.index(p.name) if p.name in PLOT_ORDER
                                                        else len(PLOT_ORDER), p.name))
    return [{"name": p.name, "src": data_uri(p)} for p in found if p.is_file()]


def _split(text: str) -> tuple[str, str]:
    top, _, bottom = text.partition("\n")
    return top, bottom


def verdict_table(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """The summary's rows (what the CLI prints), each cell's number and the line under it
    (its interval, or the FAR under the close-range TAR) apart."""
    rows = summary_rows(loaded["cliff"], loaded["rates"], loaded.get("cost"))
    rate, false = ("TPIR", "FPIR") if loaded["rates"] is not loaded["sweep"] else ("TAR", "FAR")
    headers = ["backend", "verdict vs fp32", "reliable to", "cliff at", "cliff cost vs fp32",
               f"{rate} close / {false}", "CPU vs fp32"]
    return {"columns": headers, "rows": [[_split(c) for c in row] for row in rows],
            "backends": [str(b) for b in loaded["cliff"].backend]}


def recommendation(folder: Path, loaded: Mapping[str, Any]) -> dict[str, Any]:
    """recommend.csv when the user made one (their scenarios, device profile), else every
    scenario of configs/scenarios judged now: the rows, what they come from, or why none."""
    from facequant.analysis.recommend import recommend
    from facequant.analysis.recommend.verdicts import NotCoveredError

    columns = ("scenario", "backend", "verdict", "reason", "worst_tar", "worst_distance_m")
    if (folder / RECOMMEND_CSV).is_file():
        try:
            frame = pd.read_csv(folder / RECOMMEND_CSV)
        except (OSError, ValueError) as exc:
            return {"source": RECOMMEND_CSV, "note": f"{RECOMMEND_CSV} unreadable ({exc})", "summaries": [], **table(None)}
        return {"source": f"{RECOMMEND_CSV} (facequant recommend)", "note": "", "summaries": [], **table(frame, columns)}
    try:
        rec = recommend(loaded)
    except (NotCoveredError, FacequantError) as exc:  # a scenario file at fault: the report still comes
        why = str(exc).replace(f"{folder}/", "")  # written while staged: the folder's name is not the final one
        return {"source": "configs/scenarios", "note": f"no recommendation: {why}", "summaries": [], **table(None)}
    note = "; ".join(f"{name}: {why}" for name, why in rec.skipped.items())
    return {"source": "every scenario in configs/scenarios (run `facequant recommend` for your own)",
            "note": f"skipped {note}" if note else "", "summaries": [v.summary for v in rec.verdicts.values()],
            **table(rec.table, columns)}


CLIFF_COLUMNS = ("model", "backend", "verdict", "degenerate", "tar_close", "reliable_distance_m",
                 "reliable_distance_low_m", "reliable_distance_high_m", "cliff_distance_m", "cliff_distance_low_m",
                 "cliff_distance_high_m", "cliff_face_px", "cliff_prenorm", "cliff_prenorm_width", "distance_cost_m")


def diagnostics(folder: Path) -> dict[str, Any] | None:
    """A diagnosis saved in DIAGNOSTICS_DIR (facequant diagnose --out DIR/diagnostics): its
    summary table and plots; None when there is none."""
    where = folder / DIAGNOSTICS_DIR
    summary = where / "summary.csv"
    if not summary.is_file():
        return None
    try:
        frame = read_table(summary)
    except FacequantError as exc:
        return {"note": str(exc), "plots": [], **table(None)}
    return {"note": "", "plots": plots(where), **table(frame)}


def provenance(folder: Path, run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, value) lines: command, when, versions, model and its hash, data, camera, distances, seed."""
    marker: dict[str, Any] = {}
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        pass  # a folder without a readable marker: the provenance says what run.json says
    config = run.get("config") if isinstance(run.get("config"), Mapping) else {}
    assert isinstance(config, Mapping)
    model = run.get("model") if isinstance(run.get("model"), Mapping) else {}
    assert isinstance(model, Mapping)
    lines = [("command", str(marker.get("command") or recorded_command())),
             ("results written", str(marker.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"))),
             ("model", str(model.get("path") or model.get("name") or config.get("model", ""))),
             ("model sha256", str(model.get("sha256") or run.get("model_sha256") or "")),
             ("data", str(config.get("data", ""))), ("pairs", str(config.get("pairs") or "")),
             ("dataset", _short(run.get("dataset"))), ("camera", _short(run.get("camera"))),
             ("distances (m)", ", ".join(f"{float(d):g}" for d in run.get("distances_m") or [])),
             ("seed", str(config.get("seed", ""))), ("backends", _short(config.get("backends"))),
             ("calibration", _short(run.get("calibration"))), ("protocol", str(run.get("protocol") or ""))]
    versions = run.get("versions")
    if isinstance(versions, Mapping):
        lines.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    lines.append(("report", f"facequant {__version__}"))
    return [(k, v) for k, v in lines if v]


def _short(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} ({len(v)})" if isinstance(v, list) else f"{k} {_short(v)}"
                         for k, v in value.items() if not isinstance(v, Mapping) and v not in (None, ""))
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def title_of(run: Mapping[str, Any]) -> str:
    """"facequant report: <model file(s)>, camera <name>": the model as the run resolved it."""
    config = run.get("config") if isinstance(run.get("config"), Mapping) else {}
    assert isinstance(config, Mapping)
    model = run.get("model")
    given = config.get("model", "")
    several = run.get("models") if run.get("multi_model") else None
    if isinstance(several, list) and several:
        names = [Path(str(m.get("path", m.get("label", "")))).name for m in several if isinstance(m, Mapping)]
    elif isinstance(model, Mapping) and model.get("path"):
        names = [Path(str(model["path"])).name]
    else:
        names = [Path(str(m)).name for m in (given if isinstance(given, list) else [given])]
    camera = run.get("camera", {})
    camera_name = camera.get("name", "") if isinstance(camera, Mapping) else str(camera or "")
    return f"facequant report: {', '.join(n for n in names if n) or 'results'}" + (
        f", camera {camera_name}" if camera_name else "")


def context(folder: Path) -> dict[str, Any]:
    """Everything report.html shows, from the folder's files."""
    loaded = load_results(folder)
    run, cliff = loaded["run"], loaded["cliff"]
    assert isinstance(run, dict) and isinstance(cliff, pd.DataFrame)
    models = folder / "models.csv"
    return {
        "title": title_of(run),
        "partial": str(run.get("partial_reason", "")) if run.get("partial") else "",
        "verdicts": verdict_table(loaded), "verdict_lines": verdict_lines(cliff, run), "legend": LEGEND,
        "recommendation": recommendation(folder, loaded),
        "warnings": run_warnings(run),
        "cliff": table(pd.read_csv(folder / "cliff.csv"), CLIFF_COLUMNS),
        "models": table(read_table(models)) if models.is_file() else None,
        "model_dirs": sorted(p.parent.name for p in folder.glob(f"models/*/{REPORT_HTML}")),
        "plots": plots(folder),
        "diagnostics": diagnostics(folder),
        "provenance": provenance(folder, run),
    }


def render(template: str, values: Mapping[str, Any]) -> str:
    return str(environment().get_template(template).render(**values))


def write_report(folder: Path) -> Path:
    """report.html into a results directory (written whole or not at all)."""
    folder = Path(folder)
    html = render(REPORT_HTML, context(folder))
    write_file(folder / REPORT_HTML, lambda fh: fh.write(html))
    return folder / REPORT_HTML


def remake_report(folder: Path) -> Path:
    """`facequant report DIR`: report.html from the directory's files now (a recommendation or
    a diagnosis added since appears), recorded in its marker."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FacequantError(f"{folder}: no such results directory")
    if (folder / "compare.json").is_file():
        raise FacequantError(f"{folder}: a comparison: its report.html is written by `facequant compare` (run it again)")
    try:
        path = write_report(folder)
        add_to_marker(folder, [REPORT_HTML])
    except OSError as exc:
        raise FacequantError(f"{folder / REPORT_HTML}: cannot write ({exc.strerror or exc})") from exc
    return path


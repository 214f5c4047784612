"""The recommendation view's one dependency: facequant.analysis.recommend, behind a small adapter.

facequant.analysis.recommend evaluates deployment scenarios over a results directory
(recommend_dir -> Recommendation: .table, one row per scenario x backend, and render(rec),
the rich tables the CLI prints). The TUI was written alongside it, so the adapter keeps the
view working if the module is absent (it says so) or returns another shape (any table-like
result becomes one DataFrame). Viewing never writes: recommend_dir is called with
write=False, and recommend.csv stays the CLI's `facequant recommend` output.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import RenderableType

MODULE = "facequant.analysis.recommend"
ENTRY_POINT = "recommend_dir"


@dataclass
class Recommendations:
    table: pd.DataFrame | None  # one row per scenario (x backend); None when unavailable
    note: str  # what a person should know: the source, or why there is nothing
    renderables: list[RenderableType] = field(default_factory=list)  # the module's own rich rendering, if any
    summaries: list[str] = field(default_factory=list)  # one line per scenario: the answer


def _as_record(value: object) -> dict[str, object]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "_asdict"):  # namedtuple
        return dict(value._asdict())
    return {"recommendation": str(value)}


def to_table(result: object) -> pd.DataFrame:
    """Whatever the module returned, as rows: a DataFrame as is, an object with a .table,
    records, dataclasses, or a mapping scenario -> recommendation."""
    if isinstance(result, pd.DataFrame):
        return result.reset_index(drop=True)
    inner = getattr(result, "table", None)
    if inner is not None and not callable(inner):
        return to_table(inner)
    if isinstance(result, Mapping):
        return pd.DataFrame([{"scenario": str(k), **_as_record(v)} for k, v in result.items()])
    if isinstance(result, list | tuple):
        return pd.DataFrame([_as_record(v) for v in result])
    return pd.DataFrame([_as_record(result)])


def load_recommendations(run_dir: Path | None) -> Recommendations:
    if run_dir is None:
        return Recommendations(None, "the recommendation comes when the run is on disk")
    try:
        module = importlib.import_module(MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != MODULE:
            raise
        return Recommendations(None, f"{MODULE} is not in this version of facequant: no recommendation yet")
    fn = getattr(module, ENTRY_POINT, None)
    if not callable(fn):
        return Recommendations(None, f"{MODULE} has no {ENTRY_POINT}()")
    kwargs = {"write": False} if "write" in inspect.signature(fn).parameters else {}
    try:
        result = fn(Path(run_dir), **kwargs)
    except Exception as exc:  # noqa: BLE001 - e.g. no scenario within the sweep: say why, keep the results up
        return Recommendations(None, f"no recommendation: {exc}")
    render = getattr(module, "render", None)
    renderables: list[RenderableType] = []
    if callable(render):
        try:
            renderables = list(render(result))
        except Exception:  # noqa: BLE001 - the table below still says it all
            renderables = []
    verdicts = getattr(result, "verdicts", None)
    summaries = ([str(v.summary) for v in verdicts.values() if hasattr(v, "summary")]
                 if isinstance(verdicts, Mapping) else [])
    return Recommendations(to_table(result), "per deployment scenario (configs/scenarios), as facequant recommend",
                           renderables, summaries)

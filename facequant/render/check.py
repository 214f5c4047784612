"""`facequant models check` as rich renderables: one labelled line per finding, as wide as it
is (a candidate's line is a row of a fixed-width table: it is not wrapped)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from facequant.analysis.model_check import CheckReport


def _fmt(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def report_lines(report: CheckReport) -> list[str]:
    """The report, one string per line."""
    v, spec = report.check.preprocessing, report.spec
    h, w = spec.input_size
    lines = [f"model          {report.model}",
             f"input          {spec.input_name}  [N, 3, {h}, {w}];  output {spec.output_name}  [N, {spec.embedding_dim}]"]
    graph = report.check.graph.get("summary")
    lines += [f"graph          {line.split(': ', 1)[1]}" for line in (graph if isinstance(graph, list) else [])]
    lines.append(f"inferred       {v.candidates[0].describe()}  ({v.inferred_from})")
    lines.append(f"data           {report.data}: {v.n_photos} of {report.n_usable} photos ({report.n_identities} "
                 f"identities), close range; {v.n_genuine} genuine / {v.n_impostor} impostor pairs")
    lines.append(f"               {report.check.alignment['summary']}")
    if v.checked:
        lines.append("candidates     verification AUC (cosine), genuine / impostor cosine, output norm (CV)")
        order = sorted(v.candidates, key=lambda c: -v.auc(c.name) if not math.isnan(v.auc(c.name)) else 2.0)
        for c in order:
            s = v.scores[c.name]
            mark = "<-" if c.name == v.chosen.name else "  "
            lines.append(f"  {mark} {c.name:14s} {c.describe():58s} AUC {_fmt(s.auc)}  {_fmt(s.genuine_cos, 2):>5s} / "
                         f"{_fmt(s.impostor_cos, 2):>5s}  {s.prenorm_mean:.3g} ({_fmt(s.prenorm_cv, 3)})")
    lines.append(f"chosen         {v.chosen.name}: {v.chosen.describe()}; {v.reason}")
    cost = "from the cache" if v.cached else f"{v.seconds:.1f} s scoring"
    lines.append(f"cost           {len(v.scores)} candidates x {v.n_photos} photos: {cost} "
                 f"({report.seconds:.1f} s in all; scores cached by model and data hash)")
    lines += [f"warning: {w}" for w in v.warnings]
    return lines


def render_check(report: CheckReport) -> list[RenderableType]:
    from rich.text import Text

    return [Text(text, style="yellow" if text.startswith("warning: ") else "", no_wrap=True, overflow="ignore")
            for text in report_lines(report)]

"""The renderers (facequant.render): what the CLI prints and the TUI shows, read back as text at
the width a terminal gives, and issue 19's frictions in them."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pandas as pd
import pytest

from facequant.render import plain

INF = math.inf


def _cliff(backends: list[str]) -> pd.DataFrame:
    n = len(backends)
    return pd.DataFrame({"backend": backends, "tar_close": [0.99] * n, "reliable_distance_m": [5.0] * n,
                         "cliff_distance_m": [7.2] * n, "cliff_prenorm": [3.1 + i / 100 for i in range(n)],
                         "cliff_prenorm_width": [0.73] * n, "degenerate": [""] * n})


# --------------------------------------------------------------------------- issue 19: the study table


def _study(rows: list[dict[str, object]], far_m: float = 12.0) -> object:
    from facequant.analysis.studies import STUDY_COLUMNS, StudyResult

    table = pd.DataFrame([dict.fromkeys(STUDY_COLUMNS, 0.5) | {"study": "calibration-method", "backend": "int8-pt",
                                                                "n_calibration_crops": 64, "degenerate": ""} | r
                          for r in rows], columns=STUDY_COLUMNS)
    runs = {str(r["variant"]): {"distances_m": [0.5, 1.0, far_m]} for r in rows}
    return StudyResult("calibration-method", "int8-pt", table, runs, [])


def test_study_table__beyond_the_sweep_and_an_undefined_cost_in_words_with_whole_headers_at_80_columns():
    from facequant.render.study import render_study

    result = _study([
        {"variant": "minmax", "reliable_distance_m": 4.0, "cliff_distance_m": 7.5, "distance_cost_m": 0.25},
        # held to the far end: no cliff inside the sweep, so no cliff cost either
        {"variant": "entropy", "reliable_distance_m": INF, "cliff_distance_m": INF, "distance_cost_m": math.nan},
        {"variant": "percentile", "reliable_distance_m": 3.0, "cliff_distance_m": 5.0, "distance_cost_m": -1.5,
         "degenerate": "constant embeddings"}])
    text = plain(render_study(result), width=80)  # type: ignore[arg-type]
    assert "inf" not in text and "nan" not in text and "…" not in text
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    header = " ".join(lines[1:3])
    for word in ("reliable", "cliff", "cost vs", "calib", "close", "max", "cos fp32"):
        assert word in header
    entropy = " ".join(next(line for line in lines if line.lstrip().startswith("entropy")).split())
    assert entropy == "entropy 64 0.500 0.5000 > 12 m > 12 m - 0.500"  # the cost: not defined, said as "-"
    minmax = " ".join(next(line for line in lines if line.lstrip().startswith("minmax")).split())
    assert "4.00 m 7.50 m +0.25 m" in minmax
    percentile = " ".join(next(line for line in lines if line.lstrip().startswith("percentile")).split())
    assert percentile.count("DEGENERATE") == 2 and "3.00 m" not in percentile


def test_study_table__without_the_sweep_s_end_says_beyond_sweep():
    from facequant.render.study import study_rows

    result = _study([{"variant": "minmax", "reliable_distance_m": INF, "cliff_distance_m": INF,
                      "distance_cost_m": math.nan}])
    result.runs = {}  # type: ignore[attr-defined]  # a study.csv read without its run.json
    assert study_rows(result)[0][4:7] == ("beyond sweep", "beyond sweep", "-")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- issue 19: the summary at 80 columns


@pytest.mark.parametrize("width", [60, 80, 100])
def test_summary_prenorm__a_backend_s_figure_and_width_never_split(width: int):
    from facequant.render.summary import summary

    backends = ["fp32", "int8-pt", "int8-pc", "a16w8", "int8-pt+a16:Conv_91,Conv_93"]
    text = plain(summary(_cliff(backends), None, None, {}), width=width)
    start = text.index("pre-norm at 50 %")
    prenorm = text[start:]
    for i, backend in enumerate(backends):
        part = f"{backend} {3.1 + i / 100:.2f} (w 0.73)"
        assert any(part in line for line in prenorm.splitlines()), (part, prenorm)
    assert not re.search(r"\(w\s*$", prenorm, flags=re.M)  # the old wrap: "3.10 (w" / "0.73)"


def test_identification_line__names_a_device_backend_as_the_table_does():
    from facequant.render.summary import summary
    from facequant.results.summary import identification_line

    device = "external:hailo8=probes/"
    ident = pd.DataFrame({"backend": ["fp32", "fp32", device, device], "distance_m": [1.0, 8.0, 1.0, 8.0],
                          "rank1": [1.0, 0.5, 1.0, 0.4], "tpir": [1.0, 0.3, 1.0, 0.2], "n_mated": [39] * 4,
                          "n_nonmated": [12] * 4, "threshold": [0.223] * 4})
    line = identification_line(ident, {"identification": {"enrolled_identities": 10}})
    assert "hailo8 rank-1 1.00 -> 0.40" in line and device not in line
    text = plain(summary(_cliff(["fp32", device]), None, None, {}, identification=ident), width=80)
    assert device not in text and "hailo8 rank-1" in text
    assert re.search(r"^ hailo8\s+5\.00 m", text, flags=re.M)  # the table's name for it: the same


# --------------------------------------------------------------------------- printing


def test_show__prints_each_renderable_on_its_own_lines_and_never_crops_a_fixed_width_row():
    """models check's candidate rows are wider than 80 columns: printed whole, as print() did."""
    code = ("from rich.text import Text\nfrom facequant.cli.show import show\n"
            "show([Text('x' * 120, no_wrap=True, overflow='ignore'), Text('one'), Text('two')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "80", "PATH": ""}).stdout
    assert out.splitlines() == ["x" * 120, "one", "two"]


def test_fidelity_and_diagnosis_lines_are_plain_text_not_markup():
    """A capture or layer named like markup prints as named (the old printers passed it to rich as markup)."""
    from facequant.render.fidelity import render_fidelity

    table = pd.DataFrame({"capture": ["[bold]cam1.jpg"], "face_px": [40.0], "backend": ["int8-pt"], "real_cos": [0.8],
                          "sim_cos": [0.79], "delta_cos": [-0.01], "skipped": [None]})
    text = plain(render_fidelity(table, None), width=100)
    assert "[bold]cam1.jpg" in text and "max |delta_cos| = 0.010 (within the 0.02 goal)" in text


def test_search_lines__beyond_the_sweep_untimed_cpu_and_the_paired_gain(monkeypatch: pytest.MonkeyPatch):
    from types import SimpleNamespace

    from facequant.analysis import search
    from facequant.render.search import render_search

    summary = {"recipe": "int8-pt+a16:Conv_91", "remeasured": {
        "fp32": {"reliable_distance_m": INF, "cliff_distance_m": INF},
        "int8-pt+a16:Conv_91": {"reliable_distance_m": 5.5, "cliff_distance_m": 9.25}},
        "cost": {"fp32": {"layers_16bit": 0, "file_bytes": 4_000_000, "latency_vs_fp32": 1.0},
                 "int8-pt+a16:Conv_91": {"layers_16bit": 3, "file_bytes": 1_500_000,
                                         "latency_vs_fp32": math.nan}},
        "recipe_vs_base": {"distances_m": [6.0, 7.0], "tar_gain": 0.12, "ci95": [0.05, 0.2]},
        "recipe_vs_fp32": {"distances_m": [6.0], "tar_gain": -0.01, "ci95": None}}
    monkeypatch.setattr(search, "search_summary", lambda result: summary)
    result = SimpleNamespace(settings=search.SearchSettings(), layers=["Conv_91"], goal_met=True,
                             run={"refined_distances_m": [5.0, 5.25, 5.5]}, accuracy_control=None)
    text = " ".join(plain(render_search(result, None), width=200).split())  # type: ignore[arg-type]
    assert "recipe: int8-pt+a16:Conv_91 (1 layer(s) chosen; goal met in the search)" in text
    assert "grid refined to 3 distances (every 0.25 m" in text
    assert "fp32 reliable beyond the sweep, cliff beyond the sweep, 0 16-bit layers, 4.00 MB, CPU 1.00x fp32" in text
    assert "reliable 5.50 m, cliff 9.25 m, 3 16-bit layers, 1.50 MB, CPU not timed" in text
    assert "TAR vs int8-pt over 6-7 m: +0.120 (95% CI +0.050 to +0.200; paired" in text
    assert "TAR vs fp32" not in text  # no interval: no claim
    assert "inf" not in text and "nan" not in text

"""facequant compare: two results directories, per backend the distance shifts with
intervals (paired over the same people when the runs share their genuine pairs), verdict
changes, TAR per distance; comparability and provenance said; one-line errors; --out rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_sweep import fake_result

from facequant.analysis.compare import compare
from facequant.cli.main import main
from facequant.results.directory import write_results
from facequant.sweep.config import SweepConfig

DISTANCES = [1.0, 2.0, 4.0, 6.0, 8.0]


def results(out: Path, distances: list[float] = DISTANCES, reach: dict[str, float] | None = None,
            people: int = 12, seed: int = 0, **config: object) -> Path:
    """A results directory from fake rows, with genuine.parquet and probes.csv of `people`
    people (3 photos each, one genuine pair per photo): each backend matches out to its
    `reach` (metres) give or take a person-dependent jitter."""
    write_results(fake_result(SweepConfig(model="m.onnx", data="d", **config), distances, distances), out)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    reach = reach or {"fp32": 5.0, "int8-pt": 5.0}
    photos = [(f"p{i:02d}/img{j}.jpg", f"p{i:02d}") for i in range(people) for j in range(3)]
    jitter = {p: rng.normal(0, 0.8) for _, p in photos}
    genuine, probes = [], []
    for backend, far in reach.items():
        for d in distances:
            for image, person in photos:
                matched = d <= far + jitter[person] + rng.normal(0, 0.3)
                genuine.append({"backend": backend, "distance_m": d, "face_px": 192 / d, "probe": image,
                                "gallery": image, "genuine": True, "cosine": 0.9 if matched else 0.1,
                                "probe_prenorm": 3.0})
                probes.append({"model": "m.onnx", "backend": backend, "distance_m": d, "face_px": 192 / d,
                               "image": image, "identity": person, "prenorm": 3.0, "cos_to_fp32": 1.0,
                               "simulated": True})
    pd.DataFrame(genuine).to_parquet(out / "genuine.parquet", index=False)
    pd.DataFrame(probes).to_csv(out / "probes.csv", index=False)
    return out


def test_same_people_are_paired_and_a_real_shift_is_found(tmp_path: Path):
    a = results(tmp_path / "a", reach={"fp32": 5.0, "int8-pt": 3.0})
    b = results(tmp_path / "b", reach={"fp32": 5.0, "int8-pt": 6.5}, seed=0)
    c = compare(a, b)
    assert c.comparable and c.paired and "paired" in c.pairing
    row = c.table.set_index("backend").loc["int8-pt"]
    assert row.reliable_shift_low_m > 0 and row.reliable_shift == "farther"
    assert set(c.tar.backend) == {"fp32", "int8-pt"} and "tar_difference" in c.tar


def test_other_people_are_not_paired_and_a_tie_is_no_shift(tmp_path: Path):
    a = results(tmp_path / "a", people=12, seed=1)
    b = results(tmp_path / "b", people=10, seed=2)
    c = compare(a, b)
    assert not c.paired and "independent" in c.pairing
    assert any(p.startswith("other photos") for p in c.problems)
    row = c.table.set_index("backend").loc["int8-pt"]
    assert row.reliable_shift_low_m <= 0 <= row.reliable_shift_high_m and row.reliable_shift == "no shift"


def test_cli_writes_table_plot_report_and_says_what_is_not_comparable(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture):
    a = results(tmp_path / "a")
    b = results(tmp_path / "b", distances=[1.0, 2.0, 4.0, 8.0], camera="720p-60", calibration_method="entropy")
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "NOT COMPARABLE" in said and "other distances" in said and "other camera" in said
    assert "config.calibration_method: None -> entropy" in said
    for name in ("compare.csv", "compare_tar.csv", "compare.json", "compare.png", "report.html"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "compare.csv")
    assert {"backend", "verdict_a", "verdict_b", "verdict_changed", "reliable_shift_m", "reliable_shift_low_m",
            "reliable_shift_high_m", "cliff_shift_m"} <= set(table.columns)
    summary = json.loads((out / "compare.json").read_text())
    assert summary["comparable"] is False and summary["a"] == str(a)
    html = (out / "report.html").read_text()
    assert 'id="not-comparable"' in html and len(re.findall(r'class="compare-row"', html)) == 2
    assert re.search(r'<img class="plot" src="data:image/png;base64,', html)
    # --out rules: an existing folder only with --force; never one of the compared directories
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 2
    assert "use --force" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--out", str(out), "--force"]) == 0
    assert main(["compare", str(a), str(b), "--out", str(b), "--force"]) == 2
    assert "is the input B" in capsys.readouterr().err and (b / "sweep.csv").is_file()


@pytest.mark.parametrize("bad", ["missing", "file", "not-results", "no-common-backend"])
def test_bad_directories_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture, bad: str):
    a = results(tmp_path / "a")
    target = tmp_path / bad
    if bad == "file":
        target.write_text("x")
    elif bad == "not-results":
        target.mkdir()
    elif bad == "no-common-backend":
        results(target)
        cliff = pd.read_csv(target / "cliff.csv")
        cliff["backend"] = ["other1", "other2"]
        cliff.to_csv(target / "cliff.csv", index=False)
    assert main(["compare", str(a), str(target), "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err and "Traceback" not in err
    assert not (tmp_path / "cmp").exists()


def test_the_tui_opens_a_comparison(tmp_path: Path):
    import asyncio

    from textual.widgets import Static

    from facequant.errors import FacequantError
    from tui.app import FacequantApp
    from tui.state import export_csvs, is_openable, load_run
    from tui.widgets import SweepTable

    out = tmp_path / "cmp"
    assert main(["compare", str(results(tmp_path / "a")), str(results(tmp_path / "b")), "--out", str(out)]) == 0
    assert is_openable(out)
    data = load_run(out)
    assert data.kind == "compare" and data.backends == ["fp32 (A)", "int8-pt (A)", "fp32 (B)", "int8-pt (B)"]
    with pytest.raises(FacequantError, match="is a comparison"):
        export_csvs(data)  # nothing written into the comparison
    app = FacequantApp(results=out, runs_dir=tmp_path)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.5)
            assert app.screen.id == "results", [n.message for n in app._notifications]
            title = str(app.screen.query_one("#results-title", Static).render())
            assert "comparison" in title and "B b vs A a" in title
            assert app.screen.query_one(SweepTable).row_count == 4 * len(DISTANCES)

    asyncio.run(go())
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "compare.csv", "compare.json", "compare.png", "compare_tar.csv", "report.html"]


def test_other_pairs_are_said(tmp_path: Path):
    a = results(tmp_path / "a")
    b = results(tmp_path / "b")
    sweep = pd.read_csv(b / "sweep.csv")
    sweep.loc[sweep.distance_m == 4.0, "n_genuine"] = 7  # another pairs file behind the same path
    sweep.to_csv(b / "sweep.csv", index=False)
    c = compare(a, b)
    assert not c.comparable and any(p.startswith("other pairs: 10 vs 7 genuine pairs at 4 m") for p in c.problems)

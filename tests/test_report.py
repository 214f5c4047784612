"""report.html: written into every results directory (partial runs too), remade by
`facequant report DIR`, self-contained, and rendered by a real browser (headless Chromium)
with every image loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from fake_sweep import fake_result

from facequant.cli.main import main
from facequant.results.directory import write_results
from facequant.results.output import MARKER, check_output_dir
from facequant.results.report import REPORT_HTML
from facequant.sweep.config import SweepConfig

#: Appended to a copy of the page (the report itself has no script): on load, each image's
#: decoded width is written into the DOM, which --dump-dom then shows.
PROBE = ('<script>window.addEventListener("load", () => {for (const img of document.images) '
         '{img.setAttribute("data-natural-width", String(img.naturalWidth));} '
         'document.body.setAttribute("data-probed", String(document.images.length));});</script>')


def chromium() -> str:
    """The headless browser; in CI a missing one is a broken setup, never a silent skip."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "chromium is not installed (CI installs it: apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def render_in_browser(page: Path, work: Path) -> str:
    """The DOM Chromium built from `page`, after load, with the images' natural widths."""
    probe = work / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={work / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data-probed="' in done.stdout, "the page's load event never ran"
    return done.stdout


def fake_results(out: Path, done: list[float], planned: list[float], model: str = "m.onnx") -> Path:
    write_results(fake_result(SweepConfig(model=model, data="d"), done, planned), out)  # type: ignore[arg-type]
    return out


def test_partial_run_has_a_self_contained_report(tmp_path: Path):
    out = fake_results(tmp_path / "r", [1.0, 2.0, 4.0], [1.0, 2.0, 4.0, 8.0])
    html = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert "<title>facequant report: m.onnx" in html
    assert 'id="partial"' in html and "cancelled after 3 of 4 distances" in html
    assert len(re.findall(r'<tr class="verdict-row" data-backend="(fp32|int8-pt)"', html)) == 2
    # the sections in the order a reader wants them
    order = [html.index(f'<section id="{s}">') for s in ("verdicts", "recommendation", "warnings", "cliff", "plots",
                                                          "provenance")]
    assert order == sorted(order)
    # self-contained: the plots inline, nothing fetched
    assert len(re.findall(r'<img class="plot" src="data:image/png;base64,', html)) == 2
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html and "@import" not in html
    # written by facequant: listed in the marker, so --force may replace the folder
    assert REPORT_HTML in json.loads((out / MARKER).read_text())["files"]
    check_output_dir(out, force=True)


def test_run_strings_are_text_not_markup(tmp_path: Path):
    out = fake_results(tmp_path / "r", [1.0, 2.0], [1.0, 2.0], model="<script>alert(1)</script>.onnx")
    html = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_report_command_remakes_it_with_recommendation_and_diagnostics(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = fake_results(tmp_path / "r", [1.0, 2.0, 4.0], [1.0, 2.0, 4.0])
    (out / REPORT_HTML).unlink()
    (out / "recommend.csv").write_text("scenario,backend,verdict,reason,worst_tar,worst_distance_m\n"
                                       "corridor,int8-pt,recommended,cheapest that meets,0.97,3.0\n")
    diagnostics = out / "diagnostics"
    diagnostics.mkdir()
    (diagnostics / "summary.csv").write_text("backend,distance_m,worst_layer,worst_snr_db\nint8-pt,4.0,Conv_94,7.5\n")
    shutil.copyfile(out / "tar_vs_distance.png", diagnostics / "output_snr_vs_distance.png")
    assert main(["report", str(out)]) == 0
    assert f"written {out / REPORT_HTML}" in capsys.readouterr().out
    html = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert "From recommend.csv" in html and "cheapest that meets" in html
    assert '<section id="diagnostics">' in html and "Conv_94" in html
    assert html.index('id="plots"') < html.index('id="diagnostics"') < html.index('id="provenance"')
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 3


@pytest.mark.parametrize("bad", ["missing", "file", "not-results"])
def test_report_command_bad_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, bad: str):
    target = tmp_path / bad
    if bad == "file":
        target.write_text("x")
    elif bad == "not-results":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err and "Traceback" not in err
    assert not (tmp_path / bad / REPORT_HTML).exists() or bad == "file"


def test_chromium_renders_the_report_with_every_image(tmp_path: Path):
    out = fake_results(tmp_path / "r", [1.0, 2.0, 4.0], [1.0, 2.0, 4.0, 8.0])
    dom = render_in_browser(out / REPORT_HTML, tmp_path)
    assert re.search(r"<title>facequant report: m\.onnx", dom)
    assert len(re.findall(r'class="verdict-row"', dom)) == 2
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == 2 and all(w > 100 for w in widths), widths  # 0: a broken image


def test_tar_plot_has_bar_face_px_axis_title_bands_and_key_off_the_data():
    from matplotlib.collections import PolyCollection

    from facequant.results.directory import pyplot, tar_figure

    result = fake_result(SweepConfig(model="m.onnx", data="d"), [0.5, 1.0, 2.0, 4.0, 8.0], [0.5, 1.0, 2.0, 4.0, 8.0])
    rows, cliff = result.sweep, result.cliff  # type: ignore[attr-defined]
    fig = tar_figure(rows, cliff, "m.onnx", "1080p-90")
    try:
        ax = fig.axes[0]
        assert "m.onnx" in ax.get_title() and "camera 1080p-90" in ax.get_title()
        bar = float(cliff.reliable_tar.iloc[0])
        assert any(list(line.get_ydata()) == [bar, bar] for line in ax.get_lines())  # the reliable bar
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # a band per backend
        top = [a for a in ax.child_axes if "face" in a.get_xlabel()]
        assert top, "no face-pixel axis"
        ticks = top[0].get_xticks()
        assert len(ticks) >= 3 and all(t in (12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
                                       for t in ticks)
        fig.canvas.draw()
        legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.x0 >= frame.x1  # beside the axes: no line runs under it
    finally:
        pyplot().close(fig)


@pytest.mark.slow
def test_real_sweeps_report_and_compare_minmax_with_entropy(tmp_path: Path, model_path: Path, celebs13: Path,
                                                          capsys: pytest.CaptureFixture):
    """The issue's done-when: a real sweep leaves a report.html Chromium renders with every
    image loaded, and `facequant compare` of a minmax and an entropy run of fp32+int8-pt on
    celebs13 writes its table, plot and report (paired: the same photos and pairs)."""
    common = ["--model", str(model_path), "--data", str(celebs13), "--backends", "fp32,int8-pt",
              "--distances", "1,4,6,8", "--no-latency", "--quiet"]
    minmax, entropy = tmp_path / "minmax", tmp_path / "entropy"
    assert main(["sweep", *common, "--out", str(minmax)]) == 0
    assert main(["sweep", *common, "--calib-method", "entropy", "--out", str(entropy)]) == 0
    printed = capsys.readouterr().out
    assert "histogram" not in printed  # ORT's calibrator prints nothing through --quiet
    dom = render_in_browser(minmax / REPORT_HTML, tmp_path)
    assert re.search(r"<title>facequant report: fr_feature\.onnx, camera 1080p-90", dom)
    assert re.findall(r'class="verdict-row" data-backend="([^"]+)"', dom) == ["fp32", "int8-pt"]
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) >= 3 and all(w > 100 for w in widths), widths
    out = tmp_path / "cmp"
    assert main(["compare", str(minmax), str(entropy), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "NOT COMPARABLE" not in said and "paired" in said and "calibration_method: None -> entropy" in said
    table = pd.read_csv(out / "compare.csv")
    assert table.backend.tolist() == ["fp32", "int8-pt"] and table.paired.all()
    fp32 = table.set_index("backend").loc["fp32"]
    assert fp32.reliable_shift == "no shift"  # the float model did not change
    assert table.reliable_shift_low_m.notna().all() and table.reliable_shift_high_m.notna().all()
    dom = render_in_browser(out / REPORT_HTML, tmp_path)
    assert len(re.findall(r'class="compare-row"', dom)) == 2
    assert [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)][0] > 100


def test_several_models_have_a_report_at_the_top_and_one_each(tmp_path: Path):
    from facequant.results.multi_model import combine, write_multi
    from facequant.simulate.camera import camera_from_spec

    distances = [1.0, 2.0, 4.0, 8.0]
    results = [fake_result(SweepConfig(model=f"{m}.onnx", data="d"), distances, distances) for m in ("a", "b")]
    for r, name in zip(results, ("a.onnx", "b.onnx"), strict=True):
        r.run["camera"] = camera_from_spec("1080p-90").to_dict()  # type: ignore[attr-defined]
        r.run["model"] = {"path": name, "sha256": "0" * 64, "spec": {"input_size": [112, 112]}}  # type: ignore[attr-defined]
    combined = combine(results, ["a", "b"], {"command": "sweep", "config": {"model": ["a.onnx", "b.onnx"]}})  # type: ignore[arg-type]
    out = write_multi(combined, tmp_path / "two")
    html = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert "<title>facequant report: a.onnx, b.onnx, camera 1080p-90" in html
    assert re.findall(r'data-backend="([^"]+)"', html) == ["a/fp32", "a/int8-pt", "b/fp32", "b/int8-pt"]
    assert 'id="models-table"' in html and 'alt="cliff_by_model.png"' in html
    for label in ("a", "b"):
        assert f'href="models/{label}/report.html"' in html and (out / "models" / label / REPORT_HTML).is_file()


def test_report_command_cannot_write_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    out = fake_results(tmp_path / "r", [1.0, 2.0], [1.0, 2.0])
    (out / REPORT_HTML).unlink()
    (out / REPORT_HTML).mkdir()  # something in the way that is no file facequant wrote
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "internal error" not in err
    assert (out / REPORT_HTML).is_dir()

"""Bad-input corpus, output safety: what --out and --force may never destroy, checked before any
work, and results that are never half-written. Each refusal leaves the victim folder
byte-identical and says why in one line."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from corpus import one_line_error, snapshot

import facequant
from facequant.cli import main
from facequant.errors import FacequantError
from facequant.results import output
from facequant.results.output import MARKER, OLD_DIR, OWNER_JSON, STAGING_TAG, staged_output

# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, celebs13: Path) -> Path:
    """Six photos of celebs13: two people, three each."""
    root = tmp_path_factory.mktemp("photos") / "data"
    for person in ("person01", "person02"):
        (root / person).mkdir(parents=True)
        for photo in sorted((celebs13 / person).glob("*.jpg"))[:3]:
            shutil.copy(photo, root / person / photo.name)
    return root


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command's first heavy step fails the test: refusals must come before any work."""
    def started(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("model work started before the output folder was checked")

    # Import every module first: one imported while the patch is on would bind `started` for good.
    for info in pkgutil.walk_packages(facequant.__path__, "facequant."):
        importlib.import_module(info.name)

    for module, name in [("facequant.sweep.engine", "prepare_probes"), ("facequant.sweep.engine", "run_sweep"),
                         ("facequant.analysis.fidelity", "validate_simulation"), ("facequant.analysis.studies", "run_study"),
                         ("facequant.analysis.search", "search_precision"), ("facequant.analysis.diagnose.run", "run_diagnose")]:
        monkeypatch.setattr(importlib.import_module(module), name, started)


def written_by_facequant(folder: Path, files: dict[str, bytes] | None = None) -> Path:
    """A results folder written through facequant's own writer (marker included)."""
    files = files or {"sweep.csv": b"backend,tar\nfp32,1.0\n", "plots/tar.png": b"\x89PNG fake"}
    with staged_output(folder, force=False) as staging:
        for rel, data in files.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(data)
    return folder


def photo_files(photos: Path) -> dict[str, bytes]:
    return {p.relative_to(photos).as_posix(): p.read_bytes() for p in photos.rglob("*.jpg")}


def sweep_args(model: Path, photos: Path, out: Path | str, *extra: str) -> list[str]:
    return ["sweep", "--model", str(model), "--data", str(photos), "--backends", "fp32", "--distances", "1",
            "--no-latency", "--quiet", "--out", str(out), *extra]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def hidden_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- class: --force on protected folders


def test_force_protected__working_directory(tmp_path: Path, model_path: Path, photos: Path, no_work: None,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    victim = written_by_facequant(tmp_path / "victim")  # replaceable by its marker: only the cwd rule refuses
    before = snapshot(victim)
    monkeypatch.chdir(victim)
    for out in (".", str(victim)):
        assert main(sweep_args(model_path, photos, out, "--force")) == 2
        one_line_error(capsys, out, "is the working directory", "refusing")
    assert snapshot(victim) == before


def test_force_protected__ancestor_of_working_directory(tmp_path: Path, model_path: Path, photos: Path,
                                                        no_work: None, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]):
    victim = written_by_facequant(tmp_path / "victim", {"sweep.csv": b"x", "inner/keep.txt": b"y"})
    before = snapshot(victim)
    monkeypatch.chdir(victim / "inner")
    assert main(sweep_args(model_path, photos, "..", "--force")) == 2
    one_line_error(capsys, "..", "holds the working directory")
    assert snapshot(victim) == before


def _input_cases(model: Path, photos: Path) -> dict[str, tuple[dict[str, bytes], Callable[[Path], list[str]]]]:
    """Per input option: the files a victim folder holds (written by facequant, so only the
    input rule can refuse it) and the command that reads them and points --out at it."""
    def sweep(*extra: Callable[[Path], str]) -> Callable[[Path], list[str]]:
        return lambda v: sweep_args(model, photos, v, "--force", *[f(v) for f in extra])

    return {
        "--data": (photo_files(photos), lambda v: sweep_args(model, v, v, "--force")),
        "--data (an ancestor)": ({f"inner/{k}": b for k, b in photo_files(photos).items()},
                                 lambda v: sweep_args(model, v / "inner", v, "--force")),
        "--model": ({"model.onnx": model.read_bytes()}, lambda v: sweep_args(v / "model.onnx", photos, v, "--force")),
        "--pairs": ({"pairs.csv": b"image_a,image_b,same_identity\n"}, sweep(lambda v: "--pairs", lambda v: f"{v}/pairs.csv")),
        "--calib-data": (photo_files(photos), sweep(lambda v: "--calib-data", str)),
        "--config": ({"c.yaml": b"seed: 1\n"}, sweep(lambda v: "--config", lambda v: f"{v}/c.yaml")),
        "--device-profile": ({"dev.yaml": b"device: x\n"}, sweep(lambda v: "--device-profile", lambda v: f"{v}/dev.yaml")),
        "--backends external:": ({"embeddings.npy": b"x"}, sweep(lambda v: "--backends", lambda v: f"fp32,external:dev={v}")),
        "--backends file=": ({"layers.txt": b"Conv_94\n"},
                             sweep(lambda v: "--backends", lambda v: f"int8-pt+16bit:file={v}/layers.txt")),
        "--captures": ({"cap/a.jpg": b"x"},
                       lambda v: ["validate-sim", "--model", str(model), "--reference", str(next(photos.rglob("*.jpg"))),
                                  "--captures", f"{v}/cap", "--out", str(v), "--force"]),
        "--name-map": ({"names.csv": b"onnx,hailo\n"},
                       lambda v: ["export-precision", "int8-pt+16bit:last1", "--model", str(model), "--data", str(photos),
                                  "--name-map", f"{v}/names.csv", "--out", str(v), "--force", "--quiet"]),
    }


@pytest.mark.parametrize("option", ["--data", "--data (an ancestor)", "--model", "--pairs", "--calib-data", "--config",
                                    "--device-profile", "--backends external:", "--backends file=", "--captures",
                                    "--name-map"])
def test_force_protected__input_folder(option: str, tmp_path: Path, model_path: Path, photos: Path, no_work: None,
                                       capsys: pytest.CaptureFixture[str]):
    files, command = _input_cases(model_path, photos)[option]
    victim = written_by_facequant(tmp_path / "victim", files)
    assert output.marker_problem(victim) is None  # the marker alone would allow --force
    before = snapshot(victim)
    assert main(command(victim)) == 2
    one_line_error(capsys, str(victim), "input", option.split(" ")[0])
    assert snapshot(victim) == before


def test_force_protected__models_pull_never_overwrites_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]):
    from facequant.models import sources as models

    monkeypatch.setattr(models.subprocess, "run", lambda *a, **k: pytest.fail("npm ran before the check"))
    victim = tmp_path / "my-models"
    victim.mkdir()
    (victim / "fr_feature.onnx").write_bytes(b"my own fine-tuned model")
    before = snapshot(victim)
    assert main(["models", "pull", "faceplugin", "--dest", str(victim)]) == 2
    one_line_error(capsys, str(victim / "fr_feature.onnx"), "refusing to overwrite")
    assert snapshot(victim) == before


# --------------------------------------------------------------------------- class: folders facequant did not write


def _user_folder(v: Path) -> None:
    v.mkdir()
    (v / "notes.txt").write_text("my notes")
    (v / "photos").mkdir()
    (v / "photos" / "a.jpg").write_bytes(b"\xff\xd8 mine")


def _legacy_run(v: Path) -> None:
    v.mkdir()
    (v / "run.json").write_text("{}")
    (v / "sweep.csv").write_text("backend\nfp32\n")


def _unlisted_file(v: Path) -> None:
    written_by_facequant(v)
    (v / "notes.txt").write_text("added by the user")


def _unlisted_nested_file(v: Path) -> None:
    written_by_facequant(v)
    (v / "plots" / "notes.txt").write_text("added by the user")


def _broken_marker(v: Path) -> None:
    written_by_facequant(v)
    (v / MARKER).write_text("{not json")


def _foreign_marker(v: Path) -> None:
    written_by_facequant(v)
    (v / MARKER).write_text(json.dumps({"tool": "other", "files": ["sweep.csv", "plots/tar.png"]}))


def _marker_files_a_string(v: Path) -> None:
    v.mkdir()
    (v / "a").write_text("the user's file named a")
    (v / MARKER).write_text(json.dumps({"tool": "facequant", "files": "a"}))  # a string: its letters are no list


def _symlink_inside(v: Path) -> None:
    written_by_facequant(v)
    (v.parent / "elsewhere.txt").write_text("precious")
    (v / "link").symlink_to(v.parent / "elsewhere.txt")


def _out_is_symlink(v: Path) -> None:
    written_by_facequant(v.parent / "real")
    v.symlink_to(v.parent / "real")


def _nested_results_with_user_file(v: Path) -> None:
    written_by_facequant(v)
    written_by_facequant(v / "diagnostics")  # nested results, written later: carries its own marker
    (v / "diagnostics" / "notes.txt").write_text("added by the user")


NOT_OURS = {
    "user folder": (_user_folder, f"not written by facequant (no {MARKER})"),
    "earlier facequant version": (_legacy_run, "earlier facequant version"),
    "unlisted file": (_unlisted_file, "holds notes.txt, which facequant did not write"),
    "unlisted nested file": (_unlisted_nested_file, "holds plots/notes.txt"),
    "broken marker": (_broken_marker, "not written by facequant"),
    "foreign marker": (_foreign_marker, "not written by facequant"),
    "marker files a string": (_marker_files_a_string, "not written by facequant"),
    "symlink inside": (_symlink_inside, "holds link"),
    "out is a symlink": (_out_is_symlink, "symbolic link"),
    "nested results with a user file": (_nested_results_with_user_file, "diagnostics: holds notes.txt"),
}


@pytest.mark.parametrize("case", list(NOT_OURS))
def test_not_written_by_facequant__force_refused(case: str, tmp_path: Path, model_path: Path, photos: Path,
                                                 no_work: None, capsys: pytest.CaptureFixture[str]):
    build, reason = NOT_OURS[case]
    victim = tmp_path / "victim"
    build(victim)
    before = snapshot(tmp_path)  # the victim, and whatever a link in it points at
    assert main(sweep_args(model_path, photos, victim, "--force")) == 2
    one_line_error(capsys, str(victim), reason, "refusing")
    assert snapshot(tmp_path) == before


def test_not_written_by_facequant__facequant_folder_needs_force(tmp_path: Path, model_path: Path, photos: Path,
                                                                no_work: None, capsys: pytest.CaptureFixture[str]):
    victim = written_by_facequant(tmp_path / "victim")
    before = snapshot(victim)
    assert main(sweep_args(model_path, photos, victim)) == 2
    one_line_error(capsys, str(victim), "exists", "--force")
    assert snapshot(victim) == before


# --------------------------------------------------------------------------- class: output path checked before any work


def _commands(model: Path, photos: Path, out: Path) -> dict[str, list[str]]:
    common = ["--model", str(model), "--data", str(photos), "--out", str(out), "--quiet"]
    reference = next(photos.rglob("*.jpg"))
    return {
        "sweep": ["sweep", *common, "--backends", "fp32", "--distances", "1"],
        "diagnose": ["diagnose", *common, "--backends", "int8-pt", "--distances", "1"],
        "search-precision": ["search-precision", *common, "--distances", "1,4"],
        "study": ["study", "calibration-size", *common, "--sizes", "2"],
        "export-probes": ["export-probes", *common, "--distances", "1"],
        "export-precision": ["export-precision", "int8-pt+16bit:last1", *common],
        "validate-sim": ["validate-sim", "--model", str(model), "--reference", str(reference),
                         "--captures", str(reference.parent), "--out", str(out)],
    }


def _under_a_file(tmp: Path) -> tuple[Path, str]:
    (tmp / "report.txt").write_text("a file")
    return tmp / "report.txt" / "run", "report.txt is a file, not a folder"


def _is_a_file(tmp: Path) -> tuple[Path, str]:
    (tmp / "fidelity.csv").write_text("an older result")
    return tmp / "fidelity.csv", "is a file, not a results directory"


def _unwritable(tmp: Path) -> tuple[Path, str]:
    return Path("/sys/facequant-test/run"), "not writable"  # read-only even for root


PLACES = {"under a file": _under_a_file, "an existing file": _is_a_file, "unwritable": _unwritable}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("command", ["sweep", "diagnose", "search-precision", "study", "export-probes",
                                     "export-precision", "validate-sim"])
def test_output_path_checked_before_work(command: str, place: str, tmp_path: Path, model_path: Path, photos: Path,
                                         no_work: None, capsys: pytest.CaptureFixture[str]):
    out, reason = PLACES[place](tmp_path)
    before = snapshot(tmp_path)
    assert main(_commands(model_path, photos, out)[command]) == 2
    one_line_error(capsys, str(out), reason)
    assert snapshot(tmp_path) == before


def test_output_path_checked_before_work__tui_run(tmp_path: Path, photos: Path, model_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    import threading

    from facequant.sweep.config import SweepConfig
    from tui.state import run_cancellable

    monkeypatch.setattr("facequant.sweep.engine.run_sweep", lambda *a, **k: pytest.fail("work started"))
    out, reason = _under_a_file(tmp_path)
    config = SweepConfig(model=str(model_path), data=str(photos), backends=("fp32",), distances_m=(1.0,))
    with pytest.raises(FacequantError, match=reason):
        run_cancellable(config, out, threading.Event())


# --------------------------------------------------------------------------- class: staging, kills and the swap


CHILD = """
import sys, time
from pathlib import Path
from facequant.results.output import staged_output
with staged_output(Path(sys.argv[1]), force=True) as staging:
    (staging / "sweep.csv").write_text("half-written")
    print("ready", flush=True)
    time.sleep(120)
"""


def test_staging__killed_run_keeps_old_results_and_its_leftovers_are_cleaned(tmp_path: Path):
    runs = tmp_path / "runs"
    target = written_by_facequant(runs / "a")
    before = snapshot(target)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, text=True,
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert snapshot(target) == before  # the user still sees the old results, untouched
    stale = [p for p in runs.iterdir() if STAGING_TAG in p.name]
    assert len(stale) == 1 and stale[0].name.startswith(".")  # hidden, never where a user looks
    assert json.loads((stale[0] / OWNER_JSON).read_text())["pid"] == child.pid
    written_by_facequant(runs / "b")  # the next run writing beside it cleans up
    assert not stale[0].exists() and hidden_entries(runs) == []
    assert snapshot(target) == before


def test_staging__killed_between_swap_steps_restores_old_results(tmp_path: Path):
    runs = tmp_path / "runs"
    target = written_by_facequant(runs / "a")
    before = snapshot(target)
    # The state a kill leaves after "old folder moved aside" and before "new one renamed in".
    staging = runs / f".a{STAGING_TAG}killed"
    staging.mkdir()
    (staging / OWNER_JSON).write_text(json.dumps({"tool": "facequant", "pid": dead_pid(),
                                                  "host": socket.gethostname(), "target": "a"}))
    (staging / "result").mkdir()
    target.rename(staging / OLD_DIR)
    assert not target.exists()
    written_by_facequant(runs / "b")
    assert snapshot(target) == before and not staging.exists()


def test_staging__cleanup_spares_live_remote_and_unmarked_folders(tmp_path: Path):
    runs = tmp_path / "runs"
    runs.mkdir()
    owners = {"live": {"pid": os.getpid(), "host": socket.gethostname()},
              "remote": {"pid": dead_pid(), "host": socket.gethostname() + "-elsewhere"},
              "unmarked": None}
    for name, owner in owners.items():
        folder = runs / f".{name}{STAGING_TAG}x"
        folder.mkdir()
        (folder / "keep.txt").write_text(name)
        if owner:
            (folder / OWNER_JSON).write_text(json.dumps({"tool": "facequant", "target": name, **owner}))
    before = snapshot(runs)
    written_by_facequant(runs / "b")
    after = snapshot(runs)
    assert {k: v for k, v in after.items() if k.startswith(".")} == before


def test_staging__failure_midway_keeps_old_results(tmp_path: Path):
    target = written_by_facequant(tmp_path / "a")
    before = snapshot(target)
    with pytest.raises(RuntimeError), staged_output(target, force=True) as staging:
        (staging / "sweep.csv").write_text("half")
        raise RuntimeError("crash while writing")
    assert snapshot(target) == before and hidden_entries(tmp_path) == []


def test_staging__failed_swap_puts_old_results_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = written_by_facequant(tmp_path / "a")
    before = snapshot(target)
    rename = os.rename

    def fail_second_step(src: object, dst: object) -> None:
        if Path(str(src)).name == "result":  # the new folder into place: the step after moving the old aside
            raise OSError(28, "No space left on device")
        rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(output.os, "rename", fail_second_step)
    with pytest.raises(FacequantError, match="old results kept"), staged_output(target, force=True) as staging:
        (staging / "sweep.csv").write_text("new")
    assert snapshot(target) == before and hidden_entries(tmp_path) == []


def test_staging__force_replaces_a_facequant_folder_leaving_nothing_behind(tmp_path: Path):
    target = written_by_facequant(tmp_path / "a")
    written_by_facequant(target / "final")  # nested results: facequant's too (a search's final/; diagnostics/ is refused)
    with staged_output(target, force=True) as staging:
        (staging / "study.csv").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "study.csv"]
    assert json.loads((target / MARKER).read_text())["files"] == ["study.csv"]
    assert hidden_entries(tmp_path) == []


def test_staging__empty_existing_folder_needs_no_force(tmp_path: Path):
    (tmp_path / "a").mkdir()
    with staged_output(tmp_path / "a", force=False) as staging:
        (staging / "sweep.csv").write_text("x")
    assert (tmp_path / "a" / "sweep.csv").read_text() == "x" and output.marker_problem(tmp_path / "a") is None


# --------------------------------------------------------------------------- class: every writer leaves its marker


def test_marker__tui_partial_run_and_export(tmp_path: Path, photos: Path, model_path: Path,
                                           monkeypatch: pytest.MonkeyPatch):
    import threading

    from fake_sweep import fake_run_sweep

    from facequant.sweep.config import SweepConfig
    from tui import state

    cancel = threading.Event()

    def cancel_after_first(data: state.RunData) -> None:
        cancel.set()

    monkeypatch.setattr("facequant.sweep.engine.run_sweep", fake_run_sweep([1.0, 2.0]))
    config = SweepConfig(model=str(model_path), data=str(photos), backends=("fp32",), distances_m=(1.0, 2.0))
    outcome = state.run_cancellable(config, tmp_path / "run", cancel, on_rows=cancel_after_first)
    assert outcome.status == state.PARTIAL and outcome.data is not None
    marker = json.loads((tmp_path / "run" / MARKER).read_text())
    written = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name != MARKER)
    assert marker["files"] == written and {"cliff.csv", "results.csv", "run.json", "sweep.csv"} <= set(written)
    state.export_csvs(outcome.data)  # `e` rewrites two listed files: the folder stays replaceable
    assert output.marker_problem(tmp_path / "run") is None and hidden_entries(tmp_path) == []


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, model_path: Path, photos: Path) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(sweep_args(model_path, photos, out)) == 0
    return out


@pytest.mark.slow
def test_marker__sweep_lists_what_it_wrote_and_force_replaces_it(tiny_run: Path, model_path: Path, photos: Path,
                                                                  capsys: pytest.CaptureFixture[str]):
    marker = json.loads((tiny_run / MARKER).read_text())
    assert marker["tool"] == "facequant" and marker["command"].startswith("facequant sweep")
    assert sorted(marker["files"]) == sorted(p.name for p in tiny_run.iterdir() if p.name != MARKER)
    assert main(["recommend", "--results", str(tiny_run), "--scenario", "kiosk"]) == 0
    assert output.marker_problem(tiny_run) is None  # recommend.csv is facequant's own: still replaceable
    stamp = (tiny_run / "run.json").read_text()
    assert main(sweep_args(model_path, photos, tiny_run, "--force")) == 0
    assert (tiny_run / "run.json").read_text() != stamp and not (tiny_run / "recommend.csv").exists()
    assert hidden_entries(tiny_run.parent) == []


# --------------------------------------------------------------------------- class: planted staging folders
# Anyone who can write beside --out (a shared runs/, /tmp) can plant a folder named like a
# staging folder. The next run writing there must never move anything out of it except to the
# sibling its own name gives, never through a link, and only when it is facequant's own.


def _plant(runs: Path, name: str, target: object, old: Callable[[Path], None] | None = None,
           owner: dict[str, object] | None = None) -> Path:
    """runs/<name> (a staging-like folder) holding old/payload, with an owner record of a dead
    process of this host naming `target`."""
    planted = runs / name
    planted.mkdir(parents=True)
    if old is None:
        (planted / OLD_DIR).mkdir()
        (planted / OLD_DIR / "payload").write_text("planted")
    else:
        old(planted / OLD_DIR)
    record = {"tool": "facequant", "pid": dead_pid(), "host": socket.gethostname(), "target": target}
    (planted / OWNER_JSON).write_text(json.dumps(owner if owner is not None else record))
    return planted


@pytest.mark.parametrize("target", ["ABSOLUTE", "../anywhere", "sub/../../anywhere", "..", ".", ""],
                         ids=["absolute", "parent", "dotted", "dotdot", "dot", "empty"])
def test_staging_planted__owner_target_is_never_a_destination(target: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]):
    runs = tmp_path / "runs"
    anywhere = tmp_path / "anywhere"
    target = str(anywhere) if target == "ABSOLUTE" else target
    planted = _plant(runs, f".x{STAGING_TAG}zz", target)
    before = snapshot(tmp_path)
    written_by_facequant(runs / "b")
    assert not anywhere.exists() and not (runs / "x").exists()
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("runs/b")}
    assert after == {k: v for k, v in before.items()}  # the planted folder is left alone, whole
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "warning" in err and str(planted) in err, err


def _old_is_a_link(old: Path) -> None:
    victim = old.parent.parent.parent / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("mine")
    old.symlink_to(victim)


def _old_not_facequants(old: Path) -> None:
    old.mkdir()
    (old / "payload").write_text("planted, no marker")


def _staging_is_a_link(runs: Path) -> Path:
    elsewhere = runs.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / OLD_DIR).mkdir()
    (elsewhere / OLD_DIR / MARKER).write_text(json.dumps({"tool": "facequant", "files": []}))
    (elsewhere / OWNER_JSON).write_text(json.dumps({"tool": "facequant", "pid": dead_pid(),
                                                    "host": socket.gethostname(), "target": "x"}))
    (runs / f".x{STAGING_TAG}zz").symlink_to(elsewhere)
    return runs / f".x{STAGING_TAG}zz"


def _no_owner_record(runs: Path) -> Path:
    planted = runs / f".x{STAGING_TAG}zz"
    (planted / OLD_DIR).mkdir(parents=True)
    (planted / OLD_DIR / "payload").write_text("planted")
    os.utime(planted, (0, 0))  # not a run starting right now
    return planted


PLANTED = {
    "old is a link": lambda runs: _plant(runs, f".x{STAGING_TAG}zz", "x", _old_is_a_link),
    "old is not facequant's": lambda runs: _plant(runs, f".x{STAGING_TAG}zz", "x", _old_not_facequants),
    "owner names another target": lambda runs: _plant(runs, f".x{STAGING_TAG}zz", "y"),
    "owner of another tool": lambda runs: _plant(runs, f".x{STAGING_TAG}zz", "x",
                                                 owner={"tool": "other", "pid": dead_pid(),
                                                        "host": socket.gethostname(), "target": "x"}),
    "staging folder is a link": _staging_is_a_link,
    "no owner record": _no_owner_record,
    "name gives no target": lambda runs: _plant(runs, f".{STAGING_TAG}zz", ""),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_staging_planted__left_alone_and_named(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    runs = tmp_path / "runs"
    runs.mkdir()
    planted = PLANTED[case](runs)
    before = snapshot(tmp_path)
    written_by_facequant(runs / "b")
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("runs/b")}
    assert after == before and not os.path.lexists(runs / "x") and not os.path.lexists(runs / "y")
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(planted) in err, err


def test_staging_planted__several_named_in_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    runs = tmp_path / "runs"
    planted = [_plant(runs, f".{name}{STAGING_TAG}zz", "../anywhere") for name in ("p", "q", "r")]
    written_by_facequant(runs / "b")
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and all(str(p) in err for p in planted), err


def test_staging_planted__own_stale_folder_is_restored_to_its_own_name(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]):
    """The name, not the record, says where a stale folder goes back: facequant's own leftovers
    still recover (an older record's target agreeing with the name)."""
    runs = tmp_path / "runs"
    target = written_by_facequant(runs / "a")
    before = snapshot(target)
    staging = runs / f".a{STAGING_TAG}killed"
    staging.mkdir()
    target.rename(staging / OLD_DIR)
    (staging / OWNER_JSON).write_text(json.dumps({"tool": "facequant", "pid": dead_pid(),
                                                  "host": socket.gethostname(), "target": "a"}))
    written_by_facequant(runs / "b")
    assert snapshot(target) == before and not staging.exists()
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- class: Ctrl-C during the swap
# SIGINT raised for real (signal.raise_signal) at each step of the final swap and of the clean-up:
# what is on disk afterwards is the old results or the new, whole, with no staging folder left,
# and the message says which.


@pytest.fixture
def fake_sweep(monkeypatch: pytest.MonkeyPatch, celebs13: Path) -> Callable[[Path], list[str]]:
    """`facequant sweep` whose work is writing one new file through facequant's writer."""
    import facequant.api

    def sweep(_config: object, output: object, _progress: object = None) -> None:
        with staged_output(output.dir, output.force) as staging:  # type: ignore[attr-defined]
            (staging / "sweep.csv").write_text("new results\n")

    monkeypatch.setattr(facequant.api, "sweep", sweep)
    monkeypatch.setattr("facequant.render.summary.render_summary", lambda *a, **k: [])
    return lambda out: ["sweep", "--data", str(celebs13), "--out", str(out), "--force", "--quiet"]


def _ctrl_c_after(monkeypatch: pytest.MonkeyPatch, target: object, name: str, when: Callable[..., bool]) -> None:
    """Patch target.name so that a real SIGINT arrives right after a call `when` picks."""
    real = getattr(target, name)

    def patched(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)
        if when(*args):
            signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(target, name, patched)


SWAP_STEPS = {  # id: (what is patched, the call after which Ctrl-C arrives)
    "old results moved aside": ("rename", lambda src, dst: Path(str(dst)).name == OLD_DIR),
    "new results renamed in": ("rename", lambda src, dst: Path(str(src)).name == "result"),
    "staging folder being removed": ("rmtree", lambda path, *a: STAGING_TAG in str(path)),
}


@pytest.mark.parametrize("step", list(SWAP_STEPS))
def test_interrupt__during_the_swap_says_what_is_on_disk(step: str, tmp_path: Path, fake_sweep: Callable[[Path], list[str]],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]):
    target = written_by_facequant(tmp_path / "run")
    name, when = SWAP_STEPS[step]
    _ctrl_c_after(monkeypatch, output.os if name == "rename" else output.shutil, name, when)
    assert main(fake_sweep(target)) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interrupted" in err and str(target) in err and "nothing" not in err, err
    assert (target / "sweep.csv").read_text() == "new results\n" and output.marker_problem(target) is None
    assert hidden_entries(tmp_path) == []  # no staging folder left behind, with or without its record


def test_interrupt__while_the_staging_folder_is_made_leaves_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = written_by_facequant(tmp_path / "run")
    before = snapshot(target)
    real_mkdtemp = output.tempfile.mkdtemp

    def mkdtemp(*args: object, **kwargs: object) -> str:
        made = real_mkdtemp(*args, **kwargs)  # type: ignore[call-overload]
        if STAGING_TAG in str(kwargs.get("prefix", "")):
            signal.raise_signal(signal.SIGINT)  # before its owner record is written
        return made  # type: ignore[no-any-return]

    monkeypatch.setattr(output.tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(KeyboardInterrupt), staged_output(target, force=True) as staging:
        (staging / "sweep.csv").write_text("never finished")
    assert snapshot(target) == before and hidden_entries(tmp_path) == []


def test_interrupt__before_the_swap_says_nothing_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             fake_sweep: Callable[[Path], list[str]],
                                                             capsys: pytest.CaptureFixture[str]):
    target = written_by_facequant(tmp_path / "run")
    before = snapshot(target)
    _ctrl_c_after(monkeypatch, output, "write_marker", lambda *a: True)  # the last step before the swap
    assert main(fake_sweep(target)) == 130
    err = capsys.readouterr().err.strip()
    assert "interrupted" in err and "nothing was written" in err
    assert snapshot(target) == before and hidden_entries(tmp_path) == []


def test_interrupt__staging_removal_keeps_its_record_to_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Even a kill (no handler runs) midway through removing a staging folder leaves its
    owner record: the record is the last thing deleted, and what is left is never restored."""
    target = written_by_facequant(tmp_path / "run")
    order: list[str] = []
    real_unlink, real_rmtree = os.unlink, shutil.rmtree

    def unlink(path: object, *args: object, **kwargs: object) -> None:
        order.append(Path(str(path)).name)
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    def rmtree(path: object, *args: object, **kwargs: object) -> None:
        order.append(Path(str(path)).name)
        real_rmtree(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(output.os, "unlink", unlink)
    monkeypatch.setattr(output.shutil, "rmtree", rmtree)
    with staged_output(target, force=True) as staging:
        (staging / "sweep.csv").write_text("new")
    assert OWNER_JSON in order and order.index(OWNER_JSON) == len(order) - 1, order
    assert hidden_entries(tmp_path) == []


# --------------------------------------------------------------------------- class: everything checked before the work


@pytest.mark.parametrize("out", ["runs/x/sub/..", "runs/.."], ids=["sub-dotdot", "dotdot"])
def test_before_work__out_ending_in_dotdot_refused_creating_nothing(out: str, tmp_path: Path, model_path: Path,
                                                                    photos: Path, no_work: None,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    written_by_facequant(tmp_path / "runs" / "x")
    before = snapshot(tmp_path)
    assert main(sweep_args(model_path, photos, out, "--force")) == 2
    one_line_error(capsys, out, "..")
    assert snapshot(tmp_path) == before


def test_before_work__dotdot_inside_out_creates_no_stray_folder(tmp_path: Path):
    with staged_output(tmp_path / "runs" / "never" / ".." / "y", force=False) as staging:
        (staging / "sweep.csv").write_text("x")
    assert (tmp_path / "runs" / "y" / "sweep.csv").read_text() == "x"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["y"]


def test_before_work__out_name_too_long_for_its_staging_folder(tmp_path: Path, model_path: Path, photos: Path,
                                                               no_work: None, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / ("r" * 240)
    assert main(sweep_args(model_path, photos, out)) == 2
    one_line_error(capsys, "240 bytes", "staging")
    assert list(tmp_path.iterdir()) == []
    with staged_output(tmp_path / ("r" * 227), force=False) as staging:  # the longest that fits
        (staging / "sweep.csv").write_text("x")


@pytest.fixture
def broken_models(tmp_path: Path, model_path: Path) -> dict[str, Path]:
    """Model files each a later item of a --model list could be, none of them usable."""
    from test_bad_input_limits import declared_input_model

    not_onnx = tmp_path / "broken.onnx"
    not_onnx.write_bytes(b"not a valid ONNX protobuf, just bytes")
    grey = tmp_path / "grey.onnx"
    onnx.save(onnx_model_with_input(model_path, channels=1), grey)
    return {"not ONNX": not_onnx, "one-channel input": grey,
            "gigapixel input": declared_input_model(tmp_path / "huge.onnx", 10000, 10000)}


def onnx_model_with_input(model_path: Path, channels: int) -> onnx.ModelProto:
    model = onnx.load(str(model_path))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = channels
    return model


@pytest.mark.parametrize("broken", ["not ONNX", "one-channel input", "gigapixel input"])
def test_before_work__every_model_of_a_list_checked_first(broken: str, broken_models: dict[str, Path], tmp_path: Path,
                                                          model_path: Path, photos: Path, no_work: None,
                                                          capsys: pytest.CaptureFixture[str]):
    bad = broken_models[broken]
    models = f"{model_path},{bad}"
    assert main(sweep_args(Path(models), photos, tmp_path / "out")) == 2
    one_line_error(capsys, str(bad))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- class: smaller findings, each a refusal or a stated choice


@pytest.mark.parametrize("where", ["--data", "--calib-data"])
def test_out_inside_an_input_folder_refused(where: str, tmp_path: Path, model_path: Path, photos: Path, no_work: None,
                                            capsys: pytest.CaptureFixture[str]):
    """Results written inside the photos would be read back as photos (an identity folder of
    plots) by the next run over that folder."""
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    before = snapshot(data)
    out = data / "person01" / "results" if where == "--data" else data / "results"
    extra = ["--calib-data", str(data)] if where == "--calib-data" else []
    assert main(sweep_args(model_path, data if where == "--data" else photos, out, *extra)) == 2
    one_line_error(capsys, str(out), "inside the input", where)
    assert snapshot(data) == before


def test_model_folder_with_several_models_refused(tmp_path: Path, model_path: Path, photos: Path,
                                                  capsys: pytest.CaptureFixture[str]):
    """--model DIR takes the folder's one recognition model; with several it names them and asks
    for the file, instead of taking the alphabetically first. (Finding the model is a sweep's
    first step: nothing heavy runs before the refusal.)"""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("a-first.onnx", "b-second.onnx"):
        shutil.copy(model_path, folder / name)
    assert main(sweep_args(folder, photos, tmp_path / "out")) == 2
    one_line_error(capsys, str(folder), "a-first.onnx", "b-second.onnx", "give the file")
    (folder / "b-second.onnx").unlink()
    from facequant.models.sources import resolve_model

    assert resolve_model(str(folder)) == folder / "a-first.onnx"  # one: that one

"""Bad-input corpus, part 1: options, config files, other readers, the safety net.

Every case is generated here (tmp_path); none needs a model run: a bad option or file is
refused before any work. Each case asserts exit 2 with one line naming the option or file,
and that a results directory given with --force is byte-identical afterwards (`snapshot`).
Test names say the class (option / config / reader / net) and the case (the parametrize id).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from corpus import one_line_error, snapshot

from facequant import settings
from facequant.cli import main
from facequant.errors import FacequantError


@pytest.fixture()
def old_results(tmp_path: Path) -> Path:
    """A results directory from an earlier run: a bad command must leave it byte-identical."""
    out = tmp_path / "old-results"
    out.mkdir()
    (out / "run.json").write_text('{"config": {"seed": 0}}\n')
    (out / "sweep.csv").write_text("backend,distance_m,tar\nfp32,1.0,0.99\n")
    return out


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], *names: str, results: Path | None = None) -> str:
    before = snapshot(results) if results is not None else None
    assert main(argv) == 2
    err = one_line_error(capsys, *names)
    assert err.startswith("facequant: error: "), err
    if results is not None:
        assert snapshot(results) == before
    return err


# --------------------------------------------------------------------------- class 4: options

SWEEP_OPTION_CASES = {
    "distances-nan": ["--distances", "1,nan"], "distances-inf": ["--distances", "inf"],
    "distances-zero": ["--distances", "0,1"], "distances-negative": ["--distances=-1,2"],
    "distances-empty-item": ["--distances", "1,,3"], "distances-empty": ["--distances", ""],
    "distances-range-words": ["--distances", "a:b:c"], "distances-range-zero-points": ["--distances", "1:10:0"],
    "distances-range-two-parts": ["--distances", "1:10"], "distances-range-four-parts": ["--distances", "1:2:3:4"],
    "distances-range-zero-start": ["--distances", "0:5:3"], "distances-range-nan": ["--distances", "nan:5:3"],
    "distances-too-far": ["--distances", "1,5000"], "distances-denormal": ["--distances", "5e-324"],
    "distances-one-millimetre": ["--distances", "0.001,1"], "distances-range-denormal-start": ["--distances", "5e-324:5:3"],
    "calib-distances-denormal": ["--calib-distances", "5e-324"],
    "face-px-zero": ["--face-px", "0"], "face-px-negative": ["--face-px=-40"], "face-px-nan": ["--face-px", "112,nan"],
    "face-px-empty-item": ["--face-px", "112,,40"],
    "iod-mm-zero": ["--iod-mm", "0"], "iod-mm-nan": ["--iod-mm", "nan"], "iod-mm-centimetres": ["--iod-mm", "6.3"],
    "iod-mm-huge": ["--iod-mm", "630"],
    "blur-negative": ["--blur=-1"], "blur-nan": ["--blur", "nan"],
    "noise-negative": ["--noise=-0.5"], "noise-inf": ["--noise", "inf"],
    "jpeg-101": ["--jpeg", "101"], "jpeg-negative": ["--jpeg=-1"], "jpeg-fraction": ["--jpeg", "50.5"],
    "far-zero": ["--far", "0"], "far-one": ["--far", "1"], "far-nan": ["--far", "nan"], "far-percent": ["--far", "5"],
    "far-denormal": ["--far", "1e-320"], "far-below-resolvable": ["--far", "1e-15"], "fpir-denormal": ["--fpir", "1e-320"],
    "nonmated-fraction-denormal": ["--nonmated-fraction", "5e-324"],
    "threshold-above-one": ["--threshold", "2"], "threshold-nan": ["--threshold", "nan"],
    "threshold-below-minus-one": ["--threshold=-1.5"],
    "calib-size-zero": ["--calib-size", "0"], "calib-size-negative": ["--calib-size=-4"],
    "batch-size-minus-one": ["--batch-size=-1"], "batch-size-zero": ["--batch-size", "0"],
    "batch-size-word": ["--batch-size", "lots"],
    "seed-negative": ["--seed=-1"], "seed-over-32-bits": ["--seed", str(2**32)], "seed-fraction": ["--seed", "1.5"],
    "camera-zero-width": ["--camera", "0x90"], "camera-zero-fov": ["--camera", "1920x0"],
    "camera-180-fov": ["--camera", "1920x180"], "camera-nan-fov": ["--camera", "1920xnan"],
    "camera-zero-focal": ["--camera", "f0w1920"], "camera-empty": ["--camera", ""], "camera-unknown": ["--camera", "potato"],
    "camera-denormal-fov": ["--camera", "1920x1e-300"], "camera-needle-fov": ["--camera", "1920x0.0001"],
    "calib-distances-zero": ["--calib-distances", "0"], "calib-distances-nan": ["--calib-distances", "0.5,nan"],
    "model-override-std-zero": ["--model-override", "std=0"], "model-override-mean-nan": ["--model-override", "mean=nan"],
    "model-override-std-inf": ["--model-override", "std=.inf"],
    "model-override-size-zero": ["--model-override", "input_size=[0,112]"],
    "model-override-dim-negative": ["--model-override", "embedding_dim=-1"],
    "model-override-unknown-key": ["--model-override", "meen=1"], "model-override-no-equals": ["--model-override", "std"],
    "model-override-channels": ["--model-override", "channel_order=RGBA"],
    "model-empty": ["--model", ""], "data-empty": ["--data", ""], "backends-empty-items": ["--backends", ",,"],
}


@pytest.mark.parametrize("argv", SWEEP_OPTION_CASES.values(), ids=SWEEP_OPTION_CASES.keys())
def test_option_refused_sweep(argv: list[str], old_results: Path, capsys: pytest.CaptureFixture[str]):
    option = argv[0].split("=")[0]
    _refused(capsys, ["sweep", *argv, "--out", str(old_results), "--force"], f"argument {option}", results=old_results)


OTHER_OPTION_CASES = {  # id: (argv, the option the error names)
    "diagnose-max-probes-zero": (["diagnose", "--max-probes", "0"], "--max-probes"),
    "diagnose-snr-threshold-nan": (["diagnose", "--snr-threshold", "nan"], "--snr-threshold"),
    "diagnose-batch-size-negative": (["diagnose", "--batch-size=-8"], "--batch-size"),
    "search-budget-zero": (["search-precision", "--budget", "0"], "--budget"),
    "search-candidates-zero": (["search-precision", "--candidates", "0"], "--candidates"),
    "search-tolerance-zero": (["search-precision", "--tolerance", "0"], "--tolerance"),
    "search-tolerance-nan": (["search-precision", "--tolerance", "nan"], "--tolerance"),
    "search-target-tar-zero": (["search-precision", "--target-tar", "0", "--target-distance", "5"], "--target-tar"),
    "search-target-tar-above-one": (["search-precision", "--target-tar", "1.5", "--target-distance", "5"], "--target-tar"),
    "search-target-distance-zero": (["search-precision", "--target-tar", "0.9", "--target-distance", "0"],
                                    "--target-distance"),
    "search-target-distance-nan": (["search-precision", "--target-tar", "0.9", "--target-distance", "nan"],
                                   "--target-distance"),
    "study-sizes-zero": (["study", "calibration-size", "--sizes", "0,16"], "--sizes"),
    "study-sizes-empty-item": (["study", "calibration-size", "--sizes", "16,,32"], "--sizes"),
    "study-sizes-word": (["study", "calibration-size", "--sizes", "many"], "--sizes"),
    "study-mixes-empty-mix": (["study", "calibration-distance", "--mixes", "0.5;;3"], "--mixes"),
    "study-mixes-nan": (["study", "calibration-distance", "--mixes", "0.5;0.5,nan"], "--mixes"),
    "study-methods-unknown": (["study", "calibration-method", "--methods", "minmax,magic"], "--methods"),
    # --data named so the default photos need not exist: the recipe is refused before they are read
    "study-recipe-float": (["study", "calibration-method", "--recipe", "fp32", "--data", "photos"], "--recipe"),
    "study-recipe-dynamic": (["study", "calibration-size", "--recipe", "int8-dyn", "--data", "photos"], "--recipe"),
    "export-probes-jpeg-101": (["export-probes", "--jpeg", "101"], "--jpeg"),
    "export-precision-calib-size-zero": (["export-precision", "int8-pt", "--calib-size", "0"], "--calib-size"),
}


@pytest.mark.parametrize("argv,option", OTHER_OPTION_CASES.values(), ids=OTHER_OPTION_CASES.keys())
def test_option_refused_other_commands(argv: list[str], option: str, old_results: Path,
                                       capsys: pytest.CaptureFixture[str]):
    named = option if "--recipe" in argv else f"argument {option}"  # --recipe is checked after parsing
    _refused(capsys, [*argv, "--out", str(old_results), "--force"], named, results=old_results)


@pytest.mark.parametrize("value", ["-0.1", "nan", "2"], ids=lambda v: f"latency-tolerance-{v}")
def test_option_refused_recommend(value: str, old_results: Path, capsys: pytest.CaptureFixture[str]):
    _refused(capsys, ["recommend", "--results", str(old_results), "--latency-tolerance", value],
             "argument --latency-tolerance", results=old_results)


VALIDATE_CASES = {"jpeg-101": ["--jpeg", "101"], "blur-negative": ["--blur=-1"], "noise-nan": ["--noise", "nan"],
                  "seed-negative": ["--seed=-3"], "captures-empty": ["--captures", ""],
                  "out-is-a-file": ["--out", "/etc/hostname"]}


@pytest.mark.parametrize("argv", VALIDATE_CASES.values(), ids=VALIDATE_CASES.keys())
def test_option_refused_validate_sim(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    base = ["validate-sim", "--reference", str(tmp_path / "ref.jpg"), "--captures", str(tmp_path),
            "--out", str(tmp_path / "fidelity.csv")]
    _refused(capsys, [*base, *argv], f"argument {argv[0].split('=')[0]}")
    assert not (tmp_path / "fidelity.csv").exists()


def test_option_refused_out_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    target = tmp_path / "notes.txt"
    target.write_text("my notes\n")
    _refused(capsys, ["sweep", "--out", str(target), "--force"], "argument --out", str(target))
    assert target.read_text() == "my notes\n"


# --------------------------------------------------------------------------- class 4: the core too


@pytest.mark.parametrize("field,value", [
    ("batch_size", -1), ("batch_size", 0), ("calibration_size", 0), ("seed", -1), ("seed", 1.5),
    ("target_far", 0.0), ("target_far", float("nan")), ("target_far", 1e-320), ("threshold", 1.5), ("iod_mm", 0.0),
    ("distances_m", (1.0, float("nan"))), ("distances_m", ()), ("distances_m", (5e-324,)), ("face_px", (0.0,)),
    ("calibration_distances_m", (-1.0,)),
], ids=lambda v: str(v))
def test_core_refuses_impossible_sweep_config(field: str, value: object):
    from facequant.sweep.config import SweepConfig

    with pytest.raises(FacequantError, match=field):
        SweepConfig(model="m.onnx", data="d", **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"blur_sigma_px": -1.0}, {"noise_sigma": float("nan")}, {"jpeg_quality": 101},
                                    {"jpeg_quality": 1.5}], ids=lambda k: next(iter(k)))
def test_core_refuses_impossible_degradation(kwargs: dict[str, object]):
    from facequant.simulate.camera import Degradation

    with pytest.raises(FacequantError, match=next(iter(kwargs))):
        Degradation(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"width_px": 0, "hfov_deg": 90.0}, {"width_px": 1920, "hfov_deg": float("nan")},
                                    {"width_px": 1920, "focal_px": 0.0}, {"width_px": "1920", "hfov_deg": 90.0},
                                    {"width_px": 1920, "hfov_deg": 1e-300}],
                         ids=["width-0", "hfov-nan", "focal-0", "width-text", "hfov-denormal"])
def test_core_refuses_impossible_camera(kwargs: dict[str, object]):
    from facequant.simulate.camera import CameraProfile

    with pytest.raises(FacequantError, match="camera 'c'"):
        CameraProfile(name="c", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"tolerance_m": 0.0}, {"budget": 0}, {"candidates": -1}, {"target_tar": 1.5},
                                    {"target_distance_m": float("nan")}], ids=lambda k: next(iter(k)))
def test_core_refuses_impossible_search_settings(kwargs: dict[str, object]):
    from facequant.analysis.search import SearchSettings

    with pytest.raises(FacequantError, match=next(iter(kwargs))):
        SearchSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"max_probes": 0}, {"snr_threshold_db": float("nan")}], ids=lambda k: next(iter(k)))
def test_core_refuses_impossible_diagnose_config(kwargs: dict[str, object]):
    from facequant.analysis.diagnose.run import DiagnoseConfig
    from facequant.sweep.config import SweepConfig

    with pytest.raises(FacequantError, match=next(iter(kwargs))):
        DiagnoseConfig(SweepConfig(model="m.onnx", data="d"), **kwargs)  # type: ignore[arg-type]


def test_core_refuses_impossible_batch_size(model_path: Path):
    from facequant.backends.runtime import OrtBackend
    from facequant.models.spec import inspect_model

    with pytest.raises(FacequantError, match="batch_size"):
        OrtBackend("fp32", model_path, inspect_model(model_path), batch_size=-1)


@pytest.mark.parametrize("place", ["a file", "under a file", "/proc", "/sys", "/proc/self"])
def test_setting_refused_cache_folder(place: str, tmp_path: Path, model_path: Path, celebs13: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """FACEQUANT_CACHE naming somewhere no cache can be kept: one line naming the setting."""
    (tmp_path / "notes.txt").write_text("mine")
    cache = {"a file": tmp_path / "notes.txt", "under a file": tmp_path / "notes.txt" / "cache",
             "/proc": Path("/proc/facequant-test"), "/sys": Path("/sys/facequant-test"), "/proc/self": Path("/proc/self")}
    monkeypatch.setenv(settings.CACHE_ENV, str(cache[place]))
    _refused(capsys, ["sweep", "--model", str(model_path), "--data", str(celebs13), "--backends", "fp32",
                      "--distances", "1", "--no-latency", "--quiet", "--out", str(tmp_path / "out")],
             settings.CACHE_ENV, str(cache[place]))
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- class 5: config files

CONFIG_CASES: dict[str, tuple[str, str]] = {  # id: (file text, key the error must name; "" = the file only)
    "a-list": ("- seed\n- 1\n", "mapping"), "a-scalar": ("42\n", "mapping"), "empty": ("", "empty"),
    "comments-only": ("# nothing here\n", "empty"), "broken-yaml": ("seed: [1\n", "YAML"),
    "python-tag": ("seed: !!python/object/apply:os.getcwd []\n", "YAML"),
    "seed-word": ("seed: abc\n", "seed"), "seed-fraction": ("seed: 1.5\n", "seed"),
    "seed-boolean": ("seed: true\n", "seed"), "seed-list": ("seed: [1, 2]\n", "seed"), "seed-null": ("seed:\n", "seed"),
    "distances-nan-item": ("distances: [1, nan]\n", "distances"), "distances-yaml-nan": ("distances: [1, .nan]\n", "distances"),
    "distances-empty-text": ("distances: ''\n", "distances"), "distances-mapping": ("distances: {a: 1}\n", "distances"),
    "quiet-quoted-no": ("quiet: 'no'\n", "quiet"), "force-quoted-no": ("force: 'no'\n", "force"),
    "quiet-number": ("quiet: 1\n", "quiet"), "no-latency-text": ("no-latency: yes please\n", "no-latency"),
    "batch-size-negative": ("batch-size: -1\n", "batch-size"), "camera-zero-fov": ("camera: 1920x0\n", "camera"),
    "jpeg-101": ("jpeg: 101\n", "jpeg"), "far-yaml-nan": ("far: .nan\n", "far"), "threshold-yes": ("threshold: yes\n", "threshold"),
    "iod-text": ("iod_mm: sixty-three\n", "iod_mm"), "genuine-unknown": ("genuine: twins\n", "genuine"),
    "calib-method-unknown": ("calib-method: magic\n", "calib-method"),
    "model-override-std-zero": ("model-override: {std: 0}\n", "model-override"),
    "model-override-unknown": ("model-override: [meen=1]\n", "model-override"),
    "backends-mapping": ("backends: {fp32: yes}\n", "backends"), "out-empty": ("out: ''\n", "out"),
    "unknown-key": ("bogus: 1\n", "bogus"), "nested-config": ("config: other.yaml\n", "config"),
    "internal-name": ("func: 1\n", "func"), "duplicate-key": ("seed: 1\nfar: 0.01\nseed: 2\n", "duplicate key 'seed'"),
    "alias": ("far: &f 0.01\nfpir: *f\n", "alias"),
}


@pytest.mark.parametrize("text,key", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_config_refused(text: str, key: str, tmp_path: Path, old_results: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    err = _refused(capsys, ["sweep", "--config", str(config), "--out", str(old_results), "--force"],
                   str(config), key, results=old_results)
    assert "Traceback" not in err


def test_config_python_tag_is_never_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f'seed: !!python/object/apply:os.mkdir ["{marker}"]\n')
    _refused(capsys, ["sweep", "--config", str(config), "--out", str(tmp_path / "r")], str(config))
    assert not marker.exists()


@pytest.mark.parametrize("text,key", [("sizes: [0, 16]\n", "sizes"), ("mixes: [[0.5], [0.5, .nan]]\n", "mixes"),
                                      ("methods: [minmax, magic]\n", "methods")], ids=["sizes", "mixes", "methods"])
def test_config_refused_study(text: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "study.yaml"
    config.write_text(text)
    kind = {"sizes": "calibration-size", "mixes": "calibration-distance", "methods": "calibration-method"}[key]
    _refused(capsys, ["study", kind, "--config", str(config), "--out", str(tmp_path / "r")], str(config), key)


def test_config_values_go_through_the_converters(tmp_path: Path):
    """The same converters: lists join as on the command line, booleans are booleans, and the
    command line still wins over the file."""
    from facequant.cli.common import values
    from facequant.cli.main import build_parser
    from facequant.config import sweep_config

    config = tmp_path / "good.yaml"
    config.write_text("backends: [fp32, int8-pt]\ndistances: [3, 1]\nface-px: 112,40\nseed: 7\nquiet: true\n"
                      "model-override: {mean: 127.5}\ncamera: 1280x60\ncalib-distances: 0.5:6:3\n")
    args = build_parser().parse_args(["sweep", "--config", str(config), "--data", str(tmp_path), "--seed", "3"])
    given = values(args)
    sweep = sweep_config(given)
    assert sweep.backends == ("fp32", "int8-pt") and sweep.distances_m == (1.0, 3.0)  # type: ignore[attr-defined]
    assert sweep.face_px == (112.0, 40.0) and sweep.seed == 3 and given["quiet"] is True  # type: ignore[attr-defined]
    assert sweep.model_overrides == {"mean": 127.5} and sweep.camera == "1280x60"  # type: ignore[attr-defined]
    assert sweep.calibration_distances_m == (0.5, 1.732, 6.0)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- class 6: other readers


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory, celebs13: Path, model_path: Path) -> Path:
    """A real results directory of a tiny sweep (4 photos of 2 people, fp32, two distances)."""
    data = tmp_path_factory.mktemp("tiny")
    for person in ("person01", "person02"):
        (data / person).mkdir()
        for photo in sorted((celebs13 / person).iterdir())[:2]:
            shutil.copy(photo, data / person / photo.name)
    out = tmp_path_factory.mktemp("results") / "run"
    with pytest.MonkeyPatch.context() as env:  # module scope runs before the per-test cache fixture
        env.setenv(settings.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "cache"))
        assert main(["sweep", "--model", str(model_path), "--data", str(data), "--backends", "fp32",
                     "--distances", "1,3", "--no-latency", "--quiet", "--out", str(out)]) == 0
    return out


def _json_edit(**changes: object) -> object:
    def edit(raw: bytes) -> bytes:
        run = json.loads(raw)
        for key, value in changes.items():
            section, _, field = key.partition("__")
            if field:
                run[section][field] = value
            else:
                run[section] = value
        return json.dumps(run).encode()
    return edit


RESULTS_CASES = {  # id: (file, how it is broken)
    "run-json-truncated": ("run.json", lambda b: b[: len(b) // 2]), "run-json-empty": ("run.json", lambda b: b""),
    "run-json-a-list": ("run.json", lambda b: b"[1, 2]\n"), "run-json-binary": ("run.json", lambda b: bytes(range(256))),
    "run-json-camera-text": ("run.json", _json_edit(camera="1080p")),
    "run-json-camera-width-text": ("run.json", _json_edit(camera__width_px="wide")),
    "run-json-far-text": ("run.json", _json_edit(config__target_far="low")),
    "run-json-config-a-list": ("run.json", _json_edit(config=[1])),
    "sweep-csv-truncated": ("sweep.csv", lambda b: b[: len(b) // 2]), "sweep-csv-empty": ("sweep.csv", lambda b: b""),
    "sweep-csv-binary": ("sweep.csv", lambda b: bytes(range(128, 256)) * 4),
    "sweep-csv-header-only": ("sweep.csv", lambda b: b.split(b"\n")[0] + b"\n"),
    "sweep-csv-missing-column": ("sweep.csv", lambda b: b.replace(b",tar,", b",score,", 1)),
    "sweep-csv-text-in-number": ("sweep.csv", lambda b: b.replace(b",fp32,1.0,", b",fp32,far,", 1)),
    "cliff-csv-unterminated-quote": ("cliff.csv", lambda b: b'backend,"tar_close\nfp32,1\n'),
    "cliff-csv-truncated": ("cliff.csv", lambda b: b[:-3]),
    "cost-csv-truncated": ("cost.csv", lambda b: b"backend,file_bytes\nfp32,12"),
}


@pytest.mark.parametrize("name,breaker", RESULTS_CASES.values(), ids=RESULTS_CASES.keys())
def test_reader_refuses_broken_results(name: str, breaker: object, results_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]):
    broken = tmp_path / "results"
    shutil.copytree(results_dir, broken)
    target = broken / name
    target.write_bytes(breaker(target.read_bytes() if target.exists() else b""))  # type: ignore[operator]
    _refused(capsys, ["recommend", "--results", str(broken)], name, results=broken)


def _set_value(path: Path, column: str, value: str) -> None:
    """One cell of a results CSV (its first data row) set to `value`, the rest byte-identical."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    rows[1][rows[0].index(column)] = value
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


IMPOSSIBLE_VALUES = {  # id: (file, column, value): numbers no run can produce
    "sweep-tar-inf": ("sweep.csv", "tar", "inf"), "sweep-tar-negative": ("sweep.csv", "tar", "-5"),
    "sweep-far-above-one": ("sweep.csv", "far", "1.5"), "sweep-tar-ci-high-nan-ok-but-two": ("sweep.csv", "tar_ci_high", "2"),
    "sweep-distance-nan": ("sweep.csv", "distance_m", "nan"), "sweep-distance-negative": ("sweep.csv", "distance_m", "-1"),
    "sweep-distance-inf": ("sweep.csv", "distance_m", "inf"), "sweep-face-px-zero": ("sweep.csv", "face_px", "0"),
    "sweep-n-genuine-negative": ("sweep.csv", "n_genuine", "-3"), "sweep-n-impostor-fraction": ("sweep.csv", "n_impostor", "2.5"),
    "sweep-threshold-above-one": ("sweep.csv", "threshold", "7"), "sweep-prenorm-negative": ("sweep.csv", "prenorm_mean", "-1"),
    # a reliable distance may be +inf (reliable beyond the sweep, issue 15), never below zero
    "cliff-tar-close-two": ("cliff.csv", "tar_close", "2"),
    "cliff-reliable-distance-minus-inf": ("cliff.csv", "reliable_distance_m", "-inf"),
    "cliff-cliff-distance-minus-inf": ("cliff.csv", "cliff_distance_m", "-inf"),
    "cliff-interval-end-zero": ("cliff.csv", "reliable_distance_low_m", "0"),  # an end is > 0, or +-inf
    "cliff-worse-from-inf": ("cliff.csv", "worse_from_m", "inf"),
    "cost-spread-negative": ("cost.csv", "cpu_latency_low_ms", "-1"),
    "identification-tpir-inf": ("identification.csv", "tpir", "inf"), "identification-fpir-negative": ("identification.csv", "fpir", "-0.5"),
    "identification-distance-zero": ("identification.csv", "distance_m", "0"),
    "cost-file-bytes-negative": ("cost.csv", "file_bytes", "-10"),
}


@pytest.mark.parametrize("name,column,value", IMPOSSIBLE_VALUES.values(), ids=IMPOSSIBLE_VALUES.keys())
def test_reader_refuses_impossible_values(name: str, column: str, value: str, results_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]):
    """What a run cannot produce (a rate outside [0, 1], a distance that is not a positive
    number, a negative count) is refused where the directory is read: recommend, the TUI."""
    from tui import state

    broken = tmp_path / "results"
    shutil.copytree(results_dir, broken)
    _set_value(broken / name, column, value)
    _refused(capsys, ["recommend", "--results", str(broken)], f"{name}:2", column, results=broken)
    with pytest.raises(FacequantError, match=f"{name}:2: column {column}"):
        state.load_run(broken)


def test_reader_accepts_a_bom_in_results(results_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    copy = tmp_path / "results"
    shutil.copytree(results_dir, copy)
    (copy / "sweep.csv").write_bytes(b"\xef\xbb\xbf" + (copy / "sweep.csv").read_bytes())  # saved by a spreadsheet
    assert main(["recommend", "--results", str(copy)]) == 0
    assert (copy / "recommend.csv").is_file() and "error" not in capsys.readouterr().err


SCENARIO_CASES = {  # id: (scenario keys over a valid one, key the error names)
    "camera-width-text": ({"camera": {"width_px": "wide", "hfov_deg": 90}}, "width_px"),
    "camera-fov-nan": ({"camera": {"width_px": 1920, "hfov_deg": float("nan")}}, "hfov_deg"),
    "camera-no-fov": ({"camera": {"width_px": 1920}}, "hfov_deg"),
    "camera-a-list": ({"camera": [1920, 90]}, "camera"), "camera-zero-fov": ({"camera": "1920x0"}, "hfov_deg"),
    "distance-a-number": ({"distance_m": 3}, "distance_m"), "distance-text": ({"distance_m": [1, "far"]}, "distance_m"),
    "distance-reversed": ({"distance_m": [5, 1]}, "distance_m"),
    "required-tar-quoted": ({"required_tar": "0.9"}, "required_tar"),
    "required-tar-boolean": ({"required_tar": True}, "required_tar"),
    "budget-a-list": ({"budget": [1]}, "budget"), "budget-negative": ({"budget": {"max_latency_ms": -1}}, "max_latency_ms"),
    "far-factor-inf": ({"max_far_vs_target": float("inf")}, "max_far_vs_target"),
    "unknown-key": ({"reqired_tar": 0.9}, "reqired_tar"),
}


@pytest.mark.parametrize("changes,key", SCENARIO_CASES.values(), ids=SCENARIO_CASES.keys())
def test_reader_refuses_bad_scenario(changes: dict[str, object], key: str, results_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]):
    scenario = tmp_path / "site.yaml"
    scenario.write_text(yaml.safe_dump({"camera": "1080p-90", "distance_m": [1, 3], "required_tar": 0.9, **changes}))
    _refused(capsys, ["recommend", "--results", str(results_dir), "--scenario", str(scenario)], str(scenario), key,
             results=results_dir)


DEVICE_CASES = {
    "a-list": "- fp32\n", "latency-text": "device: npu\nsource: bench\nlatency_ms: {fp32: fast}\n",
    "latency-nan": "device: npu\nsource: bench\nlatency_ms: {fp32: .nan}\n",
    "latency-a-list": "device: npu\nsource: bench\nlatency_ms: [1, 2]\n", "missing-source": "device: npu\nlatency_ms: {fp32: 3}\n",
    "power-negative": "device: npu\nsource: bench\nlatency_ms: {fp32: 3}\npower_w: -2\n", "not-yaml": "latency_ms: {fp32: [\n",
}


@pytest.mark.parametrize("text", DEVICE_CASES.values(), ids=DEVICE_CASES.keys())
def test_reader_refuses_bad_device_profile(text: str, results_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]):
    profile = tmp_path / "device.yaml"
    profile.write_text(text)
    _refused(capsys, ["recommend", "--results", str(results_dir), "--device-profile", str(profile)], str(profile),
             results=results_dir)


NAME_MAP_CASES = {  # id: (CSV text, what the error names besides the file)
    "short-row": ("onnx,hailo\nConv_91,conv91\nConv_94\n", ":3:"), "long-row": ("Conv_91,conv91,extra\n", ":1:"),
    "empty-name": ("Conv_91,\n", ":1:"), "mapped-twice": ("Conv_91,a\nConv_91,b\n", "twice"),
    "not-utf8": (None, "cannot read"),
}


@pytest.mark.parametrize("text,detail", NAME_MAP_CASES.values(), ids=NAME_MAP_CASES.keys())
def test_reader_refuses_bad_name_map(text: str | None, detail: str, tmp_path: Path, celebs13: Path,
                                     capsys: pytest.CaptureFixture[str]):
    names = tmp_path / "names.csv"
    names.write_bytes(b"\xff\xfe\x00C" if text is None else text.encode())
    out = tmp_path / "export"
    _refused(capsys, ["export-precision", "int8-pt", "--data", str(celebs13), "--name-map", str(names), "--out", str(out)],
             str(names), detail)
    assert not out.exists()


def test_reader_name_map_with_a_bom_reads(tmp_path: Path):
    from facequant.backends.quantize.export import load_name_map

    names = tmp_path / "names.csv"
    names.write_bytes("\ufeffonnx,hailo\nConv_91,conv91\n".encode())  # Excel's "CSV UTF-8"
    assert load_name_map(names) == {"Conv_91": "conv91"}


def _external_spec(tmp_path: Path) -> object:
    from facequant.models.spec import ModelSpec

    return ModelSpec(path=str(tmp_path / "m.onnx"), input_name="x", output_name="y", input_size=(112, 112),
                     mean=127.5, std=127.5, channel_order="RGB", embedding_dim=3, opset=13, batch_dim="batch")


@pytest.mark.parametrize("text,detail", [("id,e0,e1,e2\na@enrol,1,2,3\nb@enrol,1,2\n", "line 3"),
                                         ("a@enrol,1,2,3\n,4,5,6\n", "line 2"),
                                         ("a@enrol,1,2,3\nb@enrol,1,two,3\n", "line 2")],
                         ids=["short-row", "empty-id", "text-in-number"])
def test_reader_refuses_bad_external_csv(text: str, detail: str, tmp_path: Path):
    from facequant.backends.external import ExternalBackend

    device = tmp_path / "device.csv"
    device.write_text(text)
    with pytest.raises(FacequantError) as info:
        ExternalBackend.from_spec(f"external:npu={device}", _external_spec(tmp_path))  # type: ignore[arg-type]
    assert str(device) in str(info.value) and detail in str(info.value) and "\n" not in str(info.value)


def test_reader_external_csv_with_a_bom_reads(tmp_path: Path):
    from facequant.backends.external import ExternalBackend

    device = tmp_path / "device.csv"
    device.write_bytes("\ufeffid,e0,e1,e2\na@enrol,1,2,3\n".encode())
    backend = ExternalBackend.from_spec(f"external:npu={device}", _external_spec(tmp_path))  # type: ignore[arg-type]
    assert np.allclose(backend.embed_probes(None, ["a@enrol"]), [[1, 2, 3]])


# --------------------------------------------------------------------------- class 7: the safety net


def test_net_internal_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    import facequant.cli as cli
    import facequant.cli.tools

    def boom(_args: object) -> int:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(facequant.cli.tools, "cmd_cameras", boom)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert main(["cameras"]) == 1
    err = one_line_error(capsys, "facequant: internal error: RuntimeError: a bug", cli.DEBUG_ENV)
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(RuntimeError):  # the traceback, for whoever asked for it
        main(["cameras"])
    assert err


def test_net_error_with_a_newline_in_a_name_stays_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    odd = tmp_path / "two\nlines.yaml"
    odd.write_text("bogus: 1\n")
    _refused(capsys, ["sweep", "--config", str(odd), "--out", str(tmp_path / "r")], "two\\nlines.yaml", "bogus")


def test_reader_layer_file_error_quotes_no_file_lines(tmp_path: Path, model_path: Path):
    """A file= selector naming a file that is not a list of the model's nodes: one line naming
    the file, quoting a few names at most (never the file's lines: it may be anything)."""
    from facequant.backends.quantize.layers import resolve_recipe

    secrets = tmp_path / "secrets.txt"
    secrets.write_text("".join(f"user{i}:password{i}:/home/user{i}\n" for i in range(200)))
    with pytest.raises(FacequantError) as info:
        resolve_recipe(f"int8-pt+16bit:file={secrets}", model_path)
    message = str(info.value)
    assert str(secrets) in message and "\n" not in message and len(message) < 500, message
    assert "password150" not in message and "200" in message  # how many, not which

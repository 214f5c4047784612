"""Statistical honesty corpus: a number the data cannot support is flagged, a suspect photo or
pair is reported, a collapsed embedding is DEGENERATE, and healthy numbers do not move.

Each class is one kind of problem, each test one case. Datasets are built at test time from a
few celebs13 photos (copied into tmp_path identity folders); degenerate models are built with
onnx.helper; device embeddings are written as .npy. Runs use `--backends fp32 --distances 1,3
--no-latency --quiet` unless the case needs otherwise.
"""

from __future__ import annotations

import io
import math
import shutil
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import pandas as pd
import pytest
from corpus import one_line_error, snapshot
from onnx import TensorProto, helper, numpy_helper

from facequant.cli import main
from facequant.datasets.folders import load_identity_folders
from facequant.errors import FacequantError
from facequant.evaluate import honesty
from facequant.evaluate.degenerate import BROKEN_REFERENCE, degenerate_reason
from facequant.results import directory as reports
from facequant.results.summary import summary_rows

FAST = ["--backends", "fp32", "--distances", "1,3", "--no-latency", "--quiet", "--save-comparisons"]
SMALL_PEOPLE = ("person08", "person09", "person10", "person11")  # 4 + 4 + 3 + 2 photos


# --------------------------------------------------------------------------- helpers


@dataclass
class Run:
    """One finished `facequant sweep`: its run.json, cliff.csv, sweep.csv and printed summary."""

    out: Path
    run: dict[str, object]
    cliff: pd.DataFrame
    sweep: pd.DataFrame
    summary: str  # stdout with whitespace collapsed (rich wraps lines at 80 columns)

    @property
    def warnings(self) -> list[str]:
        value = self.run["warnings"]
        assert isinstance(value, list)
        return value

    def warning(self, *needles: str) -> str:
        """The one warning holding every needle; it is printed in the summary too."""
        hits = [w for w in self.warnings if all(n in w for n in needles)]
        assert len(hits) == 1, (needles, self.warnings)
        assert " ".join(hits[0].split()) in self.summary, hits[0]
        return hits[0]

    def degenerate(self, backend: str = "fp32") -> str:
        reason = str(self.cliff.set_index("backend").loc[backend, "degenerate"])
        flagged = self.run["degenerate"]
        assert isinstance(flagged, dict) and flagged.get(backend, "") == reason  # run.json says the same
        return reason


def sweep(out: Path, *args: str) -> Run:
    text = io.StringIO()
    with redirect_stdout(text), redirect_stderr(io.StringIO()):
        assert main(["sweep", *args, "--out", str(out)]) == 0
    loaded = reports.load_results(out)  # as the TUI and recommend read it back
    cliff, sweep_table, run = loaded["cliff"], loaded["sweep"], loaded["run"]
    assert isinstance(cliff, pd.DataFrame) and isinstance(sweep_table, pd.DataFrame) and isinstance(run, dict)
    return Run(out, run, cliff, sweep_table, " ".join(text.getvalue().split()))


def copy_people(celebs13: Path, root: Path, people: tuple[str, ...] = SMALL_PEOPLE) -> Path:
    """A few celebs13 people as a writable identity-folder dataset."""
    root.mkdir(parents=True)
    for person in people:
        shutil.copytree(celebs13 / person, root / person)
        for f in (root / person).iterdir():
            f.chmod(0o644)
    return root


def first_photo(folder: Path) -> Path:
    return sorted(folder.iterdir())[0]


def embedding_model(path: Path, dim: int = 512, scale: float = 1.0, constant: float | None = None) -> Path:
    """A tiny ONNX "embedding" model: 14x14 average pooling, a fixed random projection to `dim`
    values, times `scale` (0: all-zero output), plus `constant` (every face the same vector)."""
    w = np.random.default_rng(0).normal(size=(192, dim)).astype(np.float32)
    out = "out" if constant is None else "scaled"
    nodes = [helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[14, 14], strides=[14, 14]),
             helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["proj"]),
             helper.make_node("Mul", ["proj", "scale"], [out])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(scale, np.float32), "scale")]
    if constant is not None:
        nodes.append(helper.make_node("Add", ["scaled", "constant"], ["out"]))
        inits.append(numpy_helper.from_array(np.full((dim,), constant, np.float32), "constant"))
    graph = helper.make_graph(nodes, "embedding",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_pairs(path: Path, rows: list[str], bom: bool = False) -> Path:
    text = "image_a,image_b,same_identity\n" + "\n".join(rows) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("honesty")


@pytest.fixture(scope="module")
def small(tmp: Path, celebs13: Path) -> Path:
    return copy_people(celebs13, tmp / "small")


@pytest.fixture(scope="module")
def small_run(tmp: Path, small: Path, model_path: Path) -> Run:
    """13 photos of 4 people: 124 impostor and 32 genuine comparisons per distance."""
    return sweep(tmp / "small-run", "--model", str(model_path), "--data", str(small), *FAST)


@pytest.fixture(scope="module")
def dup_run(tmp: Path, celebs13: Path, model_path: Path) -> Run:
    """The small set with one photo copied byte for byte under another person, one re-saved
    smaller under another person, and one copied twice within its own person."""
    data = copy_people(celebs13, tmp / "dups")
    shutil.copy(first_photo(data / "person08"), data / "person09" / "copy.jpg")
    image = cv2.imread(str(first_photo(data / "person11")))
    smaller = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(data / "person08" / "resaved.jpg"), smaller, [cv2.IMWRITE_JPEG_QUALITY, 85])
    shutil.copy(first_photo(data / "person10"), data / "person10" / "again.jpg")
    return sweep(tmp / "dups-run", "--model", str(model_path), "--data", str(data), *FAST)


@pytest.fixture(scope="module")
def pairs_run(tmp: Path, celebs13: Path, model_path: Path) -> Run:
    """A pairs file with a BOM, a pair repeated as is and reversed, a photo paired with
    itself, a photo not in the dataset and a photo without a face (noise)."""
    data = copy_people(celebs13, tmp / "pairs-data")
    cv2.imwrite(str(data / "person09" / "noise.jpg"),
                np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8))
    a, b = (f"person08/{p.name}" for p in sorted((data / "person08").iterdir())[:2])
    c, d = (f"person09/{p.name}" for p in sorted((data / "person09").iterdir())[:2])
    pairs = write_pairs(tmp / "pairs.csv", [
        f"{a},{b},1",  # line 2
        f"{b},{a},1",  # line 3: the same pair reversed
        f"{a},{a},1",  # line 4: a photo against itself
        f"{a},{c},0",  # line 5
        f"{a},{c},0",  # line 6: repeated as is
        f"{a},person09/missing.jpg,0",  # line 7
        f"person09/noise.jpg,{c},1",  # line 8: no face in the photo
        f"{c},{d},yes",  # line 9
        f"{d},{b},different",  # line 10
    ], bom=True)
    return sweep(tmp / "pairs-run", "--model", str(model_path), "--data", str(data), "--pairs", str(pairs), *FAST)


@pytest.fixture(scope="module")
def tiny_set(tmp: Path, celebs13: Path) -> Path:
    """Three people with two photos each: enough for a degenerate model's run."""
    return copy_people(celebs13, tmp / "tiny", ("person11", "person12", "person13"))


@pytest.fixture(scope="module")
def degenerate_runs(tmp: Path, tiny_set: Path) -> dict[str, Run]:
    models = {"zero": {"scale": 0.0}, "near-zero": {"scale": 1e-9}, "constant": {"scale": 0.0, "constant": 0.5},
              "8-d": {"dim": 8}, "scalar": {"dim": 1}, "healthy-random": {}}
    runs = {}
    for name, kwargs in models.items():
        path = embedding_model(tmp / f"{name}.onnx", **kwargs)  # type: ignore[arg-type]
        runs[name] = sweep(tmp / f"run-{name}", "--model", str(path), "--data", str(tiny_set), *FAST)
    return runs


# --------------------------------------------------------------------------- healthy: unchanged


@pytest.mark.slow
def test_healthy_celebs13_threshold_resolved_and_no_warning(tmp: Path, model_path: Path, celebs13: Path):
    before = snapshot(celebs13)
    run = sweep(tmp / "celebs13", "--model", str(model_path), "--data", str(celebs13), "--backends", "fp32",
                "--distances", "0.5,3", "--no-latency", "--quiet")
    threshold = run.run["threshold"]
    assert isinstance(threshold, dict)
    assert threshold["value"] == pytest.approx(0.4203, abs=1e-4)  # the README's number, unchanged
    assert threshold["n_impostor"] == 3380
    assert threshold["min_resolvable_far"] == pytest.approx(8.9e-4, abs=5e-6)  # 3 / 3380
    assert threshold["far_resolved"] is True
    assert run.warnings == [] and run.run["duplicates"] == [] and "pairs" not in run.run
    assert "warning" not in run.summary and "NOT RESOLVED" not in run.summary
    close = run.sweep.sort_values("distance_m").iloc[0]
    assert (close.n_genuine, close.n_impostor) == (280, 3380) and round(close.tar, 3) == 0.993
    assert (run.cliff.degenerate == "").all()
    assert snapshot(celebs13) == before


def test_healthy_rule_of_three_numbers():
    assert honesty.min_resolvable_far(3380) == pytest.approx(8.876e-4, rel=1e-3)
    assert honesty.min_resolvable_far(0) == math.inf
    assert honesty.far_resolution(3380, 1e-3) == {
        "n_impostor": 3380, "min_resolvable_far": 3 / 3380, "far_resolved": True}
    assert honesty.far_resolution(2999, 1e-3)["far_resolved"] is False
    assert honesty.far_resolution_warning(0.421, 1e-3, 3380, 0.5) == ""
    assert honesty.far_resolution_warning(0.421, 1e-3, 3380, 0.5, given=True) == ""
    assert honesty.MIN_GENUINE == 97  # 1.96^2 / (4 * 0.1^2), rounded up


def test_healthy_random_projection_model_is_not_degenerate(degenerate_runs: dict[str, Run]):
    # A model that ignores faces is bad, but not collapsed: no flag, no zero-embedding warning.
    run = degenerate_runs["healthy-random"]
    assert run.degenerate() == ""
    assert not [w for w in run.warnings if "degenerate" in w or "zero" in w]


# --------------------------------------------------------------------------- FAR resolution


class TestFarResolution:
    def test_158ish_impostors_cannot_resolve_far_1e3(self, small_run: Run):
        threshold = small_run.run["threshold"]
        assert isinstance(threshold, dict)
        assert threshold["n_impostor"] == 124
        assert threshold["min_resolvable_far"] == pytest.approx(3 / 124)
        assert threshold["far_resolved"] is False
        text = small_run.warning("threshold", "resolve FAR only down to")
        assert f"threshold {threshold['value']:.3f} is set at FAR 0.001 on 124 fp32 impostor comparisons at 1 m" in text
        assert "~0.024" in text and "just above the largest impostor score" in text
        assert "give --threshold" in text and ">= 3000 impostor comparisons" in text
        assert "FAR target 0.001 NOT RESOLVED by 124 impostors" in small_run.summary
        # the value is kept (and flagged): just above the largest close-range impostor score
        comps = pd.read_parquet(small_run.out / "comparisons.parquet")
        close_imp = comps[(comps.distance_m == 1.0) & ~comps.genuine].cosine
        assert close_imp.max() < threshold["value"] < close_imp.max() + 1e-6

    def test_given_threshold_on_few_impostors_cannot_show_its_far(self, tmp: Path, small: Path, model_path: Path):
        run = sweep(tmp / "given", "--model", str(model_path), "--data", str(small), *FAST, "--threshold", "0.4")
        threshold = run.run["threshold"]
        assert isinstance(threshold, dict)
        assert threshold["set_on"] == "given" and threshold["far_resolved"] is False
        assert threshold["n_impostor"] == 124 and threshold["min_resolvable_far"] == pytest.approx(3 / 124)
        text = run.warning("resolve FAR only down to")
        assert text.startswith("FAR is measured on 124 fp32 impostor comparisons at 1 m")
        assert "cannot show whether threshold 0.400 meets FAR 0.001 (a FAR of 0 means below ~0.024)" in text
        assert "threshold 0.400 (given)" in run.summary and "NOT RESOLVED" not in run.summary

    def test_several_impostors_allowed_still_unresolved(self):
        # 1500 impostors at FAR 1e-3: one false accept allowed, yet 3 / 1500 = 0.002 > 0.001
        text = honesty.far_resolution_warning(0.5, 1e-3, 1500, 0.5)
        assert "just above the 2nd-largest impostor score" in text and "~0.002" in text
        # one sentence whose numbers agree with its words: 3 / 2998 printed apart from the target
        text = honesty.far_resolution_warning(0.5, 1e-3, 2998, 0.5)
        assert "down to ~0.001001 (rule of three, 95 %), above the target 0.001" in text
        assert "known only to be below ~0.001001, not below 0.001" in text

    def test_far_above_3x_target_on_one_impostor_cannot_tell(self, small_run: Run):
        row = small_run.sweep[(small_run.sweep.distance_m == 3.0)].iloc[0]
        assert row.far == pytest.approx(1 / 124)  # one false accept at 3 m
        text = small_run.warning("FAR 0.0081")
        assert "(1 of 124 impostors) at 3 m is above 3x the target 0.001, but 124 impostors cannot tell" in text
        assert "bought with false accepts" not in text


class TestTarSampleSize:
    def test_32_genuine_comparisons_do_not_resolve_reliable_or_cliff(self, small_run: Run):
        assert small_run.sweep.n_genuine.tolist() == [32, 32]
        text = small_run.warning("TAR rests on")
        assert text.startswith("TAR rests on 32 genuine comparisons at 1, 3 m (about 97 are needed")
        assert "the reliable and cliff distances are not resolved" in text

    def test_enough_genuine_comparisons_say_nothing(self):
        sweep_rows = pd.DataFrame({"backend": "fp32", "distance_m": [1.0, 3.0], "n_genuine": [280, 97],
                                   "tar_ci_low": [0.97, 0.4], "tar_ci_high": [1.0, 0.6]})
        assert honesty.thin_tar_warning(sweep_rows) == ""
        sweep_rows.loc[1, "n_genuine"] = 96
        assert "96 genuine comparisons at 3 m" in honesty.thin_tar_warning(sweep_rows)


# --------------------------------------------------------------------------- duplicates


class TestDuplicates:
    def test_identical_file_under_two_identities(self, dup_run: Run):
        dups = dup_run.run["duplicates"]
        assert isinstance(dups, list)
        same_file = [d for d in dups if d["how"] == "identical file (sha256)" and not d["same_identity"]]
        assert same_file == [{"a": "person08/img34.jpg", "b": "person09/copy.jpg", "identity_a": "person08",
                              "identity_b": "person09", "same_identity": False, "how": "identical file (sha256)",
                              "cosine": 1.0}]
        text = dup_run.warning("person08/img34.jpg", "person09/copy.jpg")
        assert "under 'person08'" in text and "under 'person09'" in text and "are the same image" in text
        assert "impostor scores include it" in text

    def test_resaved_copy_found_by_embedding(self, dup_run: Run):
        dups = dup_run.run["duplicates"]
        assert isinstance(dups, list)
        near = [d for d in dups if d["how"] == "near-identical embedding"]
        assert [(d["a"], d["b"]) for d in near] == [("person08/resaved.jpg", "person11/img20.jpg")]
        assert near[0]["cosine"] >= honesty.DUPLICATE_COSINE
        dup_run.warning("person08/resaved.jpg", "near-identical embedding")

    def test_identical_files_within_one_identity_inflate_tar(self, dup_run: Run):
        dups = dup_run.run["duplicates"]
        assert isinstance(dups, list)
        within = [d for d in dups if d["same_identity"]]
        assert [(d["a"], d["b"], d["how"]) for d in within] == [
            ("person10/again.jpg", "person10/img18.jpg", "identical file (sha256)")]
        text = dup_run.warning("person10/again.jpg", "person10/img18.jpg")
        assert "both under 'person10'" in text and "inflate TAR" in text

    def test_threshold_pushed_by_duplicates_is_quantified(self, dup_run: Run):
        threshold = dup_run.run["threshold"]
        assert isinstance(threshold, dict)
        assert threshold["value"] > 0.99  # a copy scores ~1 against itself: the threshold goes above it
        text = dup_run.warning("is pushed to")
        assert f"the threshold at FAR 0.001 is pushed to {threshold['value']:.3f} by 4 impostor" in text
        without = threshold["without_duplicates"]
        assert f"({without:.3f} without them)" in text and without < 0.9
        # the pairs stay in: the comparisons still hold them
        comps = pd.read_parquet(dup_run.out / "comparisons.parquet")
        assert ((comps.probe == "person09/copy.jpg") & (comps.gallery == "person08/img34.jpg")).sum() == 2

    def test_celebs13_margin_is_above_its_true_pairs(self):
        # the measured celebs13 maxima the threshold was chosen against (honesty.DUPLICATE_COSINE)
        assert 0.90 + 0.05 < honesty.DUPLICATE_COSINE < 0.9915


# --------------------------------------------------------------------------- pairs CSV


class TestPairsCsv:
    def test_bom_and_every_left_out_row_reported(self, pairs_run: Run):
        pairs = pairs_run.run["pairs"]
        assert isinstance(pairs, dict)
        assert pairs["rows"] == 9 and pairs["used"] == 4
        assert pairs["duplicate_lines"] == [3, 6] and pairs["self_pair_lines"] == [4]
        assert pairs["unknown_lines"] == [7] and pairs["unknown_photos"] == ["person09/missing.jpg"]
        assert pairs["no_face_pairs"] == 1 and pairs["no_face_photos"] == ["person09/noise.jpg"]
        dataset = pairs_run.run["dataset"]
        assert isinstance(dataset, dict)
        assert (dataset["genuine"], dataset["impostor"]) == (4, 4)  # 4 pairs, each compared both ways

    def test_duplicate_and_reversed_pair_counted_once(self, pairs_run: Run):
        text = pairs_run.warning("duplicate pair")
        assert "2 duplicate pair(s) counted once (lines 3, 6; (b, a) repeats (a, b)" in text

    def test_self_pair_dropped(self, pairs_run: Run):
        assert "1 pair(s) compare a photo with itself, dropped" in pairs_run.warning("with itself")

    def test_unknown_photo_reported_with_count(self, pairs_run: Run):
        text = pairs_run.warning("not in the dataset")
        assert "1 pair(s) name a photo not in the dataset, dropped (line 7; e.g. person09/missing.jpg)" in text

    def test_photo_without_face_reported_with_count(self, pairs_run: Run):
        text = pairs_run.warning("without a usable face")
        assert "1 pair(s) name a photo without a usable face, not compared (person09/noise.jpg" in text

    @pytest.mark.parametrize("row, message", [
        ("person08/img34.jpg,,1", "pairs.csv:3: missing image_b"),
        ("person08/img34.jpg,person08/img35.jpg", "pairs.csv:3: missing same_identity"),
        ("person08/img34.jpg,person08/img35.jpg,maybe", "pairs.csv:3: same_identity 'maybe' is not a label"),
        ("person08/img34.jpg,person08/img35.jpg,0", "pairs.csv:3: label same_identity=0 contradicts"),
    ], ids=["missing-field", "short-row", "bad-label", "contradicting-label"])
    def test_bad_row_is_a_one_line_error_naming_file_and_line(self, row: str, message: str, small: Path,
                                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]):
        pairs = write_pairs(tmp_path / "pairs.csv", ["person08/img34.jpg,person09/img38.jpg,0", row])
        before = snapshot(small)
        out = tmp_path / "out"
        assert main(["sweep", "--data", str(small), "--pairs", str(pairs), *FAST, "--out", str(out)]) == 2
        one_line_error(capsys, str(pairs), message)
        assert not out.exists() and snapshot(small) == before

    def test_nothing_left_is_an_error_saying_why(self, small: Path, tmp_path: Path):
        pairs = write_pairs(tmp_path / "pairs.csv", ["person08/img34.jpg,person08/img34.jpg,1",
                                                     "person08/img34.jpg,person09/gone.jpg,0"])
        with pytest.raises(FacequantError, match=r"none of its 2 row\(s\).*with itself.*person09/gone.jpg"):
            load_identity_folders(small, pairs)

    def test_bom_alone_parses(self, small: Path, tmp_path: Path):
        pairs = write_pairs(tmp_path / "pairs.csv", ["person08/img34.jpg,person09/img38.jpg,false"], bom=True)
        ds = load_identity_folders(small, pairs)
        assert ds.pairs is not None and len(ds.pairs) == 1 and not ds.pairs[0].same


# --------------------------------------------------------------------------- degenerate embeddings


class TestDegenerateEmbeddings:
    def test_all_zero_model_is_a_broken_reference(self, degenerate_runs: dict[str, Run]):
        run = degenerate_runs["zero"]
        reason = run.degenerate()
        assert reason.startswith("6 of 6 embeddings zero or near zero (pre-norm < 0.0001)")
        assert reason.endswith(BROKEN_REFERENCE)
        assert "fp32 is degenerate" in run.summary and "not quantization damage" in run.summary
        assert summary_rows(run.cliff)[0][2:4] == ("DEGENERATE", "DEGENERATE")  # no distances shown
        text = run.warning("all-zero embeddings")
        assert "fp32: 12 of 12 probes (at 1, 3 m) and 6 of 6 enrolled photos are all-zero" in text
        assert "written as 0 and counted as non-matches" in text

    def test_zero_cosine_is_never_nan_nor_a_silent_match(self, degenerate_runs: dict[str, Run]):
        run = degenerate_runs["zero"]
        comps = pd.read_parquet(run.out / "comparisons.parquet")
        assert comps.cosine.notna().all() and (comps.cosine == 0).all()
        assert run.sweep.tar.notna().all() and (run.sweep.tar == 0).all()  # and the flag above says why

    def test_constant_embedding(self, degenerate_runs: dict[str, Run]):
        reason = degenerate_runs["constant"].degenerate()
        assert "every face gives the same embedding (impostor cosine 1.0000)" in reason
        assert "pre-norm CV 0 (constant)" in reason and reason.endswith(BROKEN_REFERENCE)

    def test_near_zero_prenorm(self, degenerate_runs: dict[str, Run]):
        run = degenerate_runs["near-zero"]
        assert run.degenerate().startswith("6 of 6 embeddings zero or near zero")
        text = run.warning("near-zero pre-norm")
        assert "12 of 12 probes (at 1, 3 m) and 6 of 6 enrolled photos have a near-zero pre-norm (< 0.0001)" in text

    @pytest.mark.parametrize("name, dim", [("8-d", 8), ("scalar", 1)])
    def test_output_too_small_to_be_an_embedding(self, name: str, dim: int, degenerate_runs: dict[str, Run]):
        reason = degenerate_runs[name].degenerate()
        assert f"embedding has {dim} value(s) per face (< 32): too small to be a face embedding" in reason

    def test_zero_embeddings_from_a_device_file(self, tmp: Path, small: Path, model_path: Path):
        export = tmp / "export"
        with redirect_stdout(io.StringIO()):
            assert main(["export-probes", "--model", str(model_path), "--data", str(small), "--distances", "1,3",
                         "--out", str(export), "--quiet"]) == 0
        device = tmp / "device"
        device.mkdir()
        for name in ("manifest.csv", "manifest.json"):
            shutil.copy(export / name, device)
        for tensors in export.glob("*.npy"):
            np.save(device / f"{tensors.stem}.emb.npy", np.zeros((len(np.load(tensors)), 512), np.float32))
        backend = f"external:dev={device}"
        run = sweep(tmp / "device-run", "--model", str(model_path), "--data", str(small), "--backends",
                    f"fp32,{backend}", "--distances", "1,3", "--no-latency", "--quiet")
        assert run.degenerate("fp32") == ""
        reason = run.degenerate(backend)
        assert reason == "13 of 13 embeddings zero or near zero (pre-norm < 0.0001): no direction to compare"
        assert f"{backend} is degenerate: {reason}" in run.warnings
        run.warning(backend, "are all-zero embeddings")

    def test_zero_prenorm_from_tables_alone(self):
        rows = pd.DataFrame([{"backend": "b", "distance_m": 1.0, "genuine_cos_mean": 0.0, "impostor_cos_mean": 0.0,
                              "far": 0.0, "n_probes": 10, "prenorm_p05": 0.0, "prenorm_p50": 0.0,
                              "prenorm_p95": 0.0}])
        assert "embeddings zero or near zero" in degenerate_reason(rows, None)
        assert "embedding has 4 value(s)" in degenerate_reason(rows, None, embedding_dim=4)


# --------------------------------------------------------------------------- the TUI shows them


def test_tui_results_header_counts_warnings_and_cliff_tab_lists_them(small_run: Run):
    import asyncio

    from textual.widgets import Static

    from facequant.render import plain
    from tui.app import FacequantApp
    from tui.widgets import CliffPane

    async def go() -> None:
        app = FacequantApp(results=small_run.out, runs_dir=small_run.out.parent)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            title = str(app.screen.query_one("#results-title", Static).render())
            assert f"{len(small_run.warnings)} warnings" in title
            await pilot.press("2")
            notes = " ".join(plain(app.screen.query_one(CliffPane).items, width=80).split())
            assert "warning: threshold" in notes and "resolve FAR only down to" in notes

    asyncio.run(go())

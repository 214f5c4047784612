"""Layer diagnostics: the statistics on their own, then `diagnose` on the shared model and photos
(3 distances, a 12-photo subset, so the module stays well under two minutes on 2 cores)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

from facequant.analysis.diagnose import measure as dmeasure
from facequant.analysis.diagnose import report as dreport
from facequant.analysis.diagnose import run as drun
from facequant.analysis.diagnose import taps as dtaps
from facequant.cli import main
from facequant.errors import FacequantError
from facequant.sweep.config import SweepConfig

DISTANCES = (1.0, 4.0, 8.0)
BACKENDS = ("int8-pt", "int8-pc", "a16w8")
MAX_PROBES = 12


# --- pure statistics ---------------------------------------------------------------------------

def test_snr_matches_onnxruntimes_definition():
    rng = np.random.default_rng(0)
    f = rng.standard_normal(10_000).astype(np.float32)
    q = (f + 0.05 * rng.standard_normal(10_000)).astype(np.float32)
    ours = dmeasure.snr_db(float(np.dot(f.astype(np.float64), f)), float(np.sum((f.astype(np.float64) - q) ** 2)))
    assert ours == pytest.approx(compute_signal_to_quantization_noice_ratio(f, q), abs=1e-3)
    # accumulated batch by batch it is the same number: the sums are what we keep, not the tensors
    halves = [(f[:5000], q[:5000]), (f[5000:], q[5000:])]
    sumsq = sum(dmeasure.float_stats(a)[0] for a, _ in halves)
    tap = dtaps.Tap("l", "n", "Conv", "t", "t")
    sse = sum(dmeasure.quant_stats(a, b.copy(), None, tap, dmeasure.TensorSums(), False) for a, b in halves)
    assert dmeasure.snr_db(sumsq, sse) == pytest.approx(ours, abs=1e-3)
    assert dmeasure.snr_db(1.0, 0.0) == math.inf  # identical tensors


def test_psnr_takes_its_peak_from_the_float_tensor():
    f = np.array([0.0, 2.0, -4.0, 1.0], np.float32)
    q = f + np.array([0.1, -0.1, 0.1, -0.1], np.float32)
    sumsq, peak, n = dmeasure.float_stats(f)
    assert peak == 4.0 and n == 4
    sse = dmeasure.quant_stats(f, q.copy(), None, dtaps.Tap("l", "n", "Conv", "t", "t"), dmeasure.TensorSums(), False)
    assert dmeasure.psnr_db(peak, sse, n) == pytest.approx(10 * math.log10(16 / 0.01), abs=1e-4)


def test_codes_at_the_rails_are_counted():
    tap = dtaps.Tap("l", "n", "Conv", "t", "t_q", "t_codes", 8, False, 0.1, 10)
    f = np.zeros(6, np.float32)
    acc = dmeasure.TensorSums()
    dmeasure.quant_stats(f, f.copy(), np.array([0, 0, 5, 9, 255, 7], np.uint8), tap, acc, False)
    assert acc.rails == 3 and np.count_nonzero(acc.seen) == 5
    dmeasure.quant_stats(f, f.copy(), np.array([1, 2, 3, 4, 5, 6], np.uint8), tap, acc, False)
    assert acc.rails == 3  # no code at a rail: nothing added


def test_weight_statistics():
    w = np.zeros((3, 2, 1, 1), np.float32)
    w[0] = [[[1.0]], [[-1.0]]]  # range 2
    w[1] = [[[0.5]], [[0.25]]]  # range 0.25
    w[2] = 0.0  # a dead channel: left out of the ratio
    stats = dtaps.weight_stats(w, axis=0)
    assert stats["weight_range"] == pytest.approx(2.0)
    assert stats["weight_asymmetry"] == pytest.approx(0.0)
    assert stats["channel_range_ratio"] == pytest.approx(8.0)
    one_sided = dtaps.weight_stats(np.array([[0.0, 1.0, 2.0]], np.float32), axis=0)
    assert one_sided["weight_asymmetry"] == pytest.approx(1.0)
    assert dtaps.weight_stats(np.array([[-1.0, 3.0]]), axis=0)["weight_asymmetry"] == pytest.approx(0.5)


@pytest.mark.parametrize("dtype,bits", [(np.uint8, 8), (np.int8, 8), (np.uint16, 16), (np.int16, 16)])
def test_code_counts_in_level_order(dtype: type, bits: int):
    info = np.iinfo(dtype)
    codes = np.random.default_rng(1).integers(info.min, info.max, 4321, endpoint=True).astype(dtype)
    by_pattern = dmeasure.code_counts(codes, bits)
    assert by_pattern.sum() == codes.size
    tap = dtaps.Tap("l", "n", "Conv", "t", "t_q", "t_codes", bits, info.min < 0, 0.1, 0)
    by_level = dmeasure.level_counts(by_pattern, tap)
    expected = np.bincount(codes.astype(np.int64) - info.min, minlength=1 << bits)
    assert np.array_equal(by_level, expected)
    assert tap.level_values()[0] == pytest.approx(info.min * 0.1)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16])
def test_occupancy_is_exact(dtype: type):
    # a peaked distribution with sparse tails, as activations have, and a lone far outlier
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype)
    centre = 0 if info.min < 0 else info.max // 2
    values = np.clip(np.rint(rng.standard_t(3, 200_000) * (4 if info.bits == 8 else 400)) + centre, info.min, info.max)
    codes = values.astype(dtype)
    codes[123] = info.min
    tap = dtaps.Tap("l", "n", "Conv", "t", "t_q", "t_codes", info.bits, info.min < 0, 0.1, 0)
    seen = np.zeros(1 << info.bits, bool)
    for part in np.array_split(codes, 3):  # batch by batch, as the run adds them
        dmeasure.add_occupancy(seen, part, tap)
    expected = np.bincount(codes.astype(np.int64) - info.min, minlength=1 << info.bits) > 0
    assert np.array_equal(seen, expected) and seen[0]


def test_summary_table():
    rows = []
    for depth, (layer, snr, head) in enumerate([("Conv_0", 30.0, False), ("Conv_1", 9.0, False), ("Conv_2", 20.0, False),
                                                ("Conv_3", 8.0, True), ("output", 7.0, True)]):
        rows.append({"backend": "b", "distance_m": 1.0, "layer": layer, "op_type": "Conv", "depth": depth,
                     "snr_db": snr, "psnr_db": snr + 10, "face_px": 100.0, "n_probes": 3, "tensor": layer,
                     "head": head, "is_output": layer == "output"})
    summary = drun.summary_table(pd.DataFrame(rows), threshold_db=10.0)
    r = summary.iloc[0]
    assert r.layers_below_threshold == 3 and r.first_below_depth == 1 and r.first_below_layer == "Conv_1"
    assert r.min_snr_db == 7.0 and r.min_snr_layer == "output" and r.output_snr_db == 7.0
    assert r.head_mean_snr_db == pytest.approx(7.5) and r.backbone_mean_snr_db == pytest.approx(59 / 3)
    assert r.worst10.split(";")[:3] == ["output", "Conv_3", "Conv_1"]
    assert list(summary.columns) == list(drun.SUMMARY_COLUMNS)


@pytest.mark.parametrize("name", ["fp16", "int8-dyn", "external:hailo=probes/", "insightface"])
def test_non_qdq_backends_are_refused(name: str):
    with pytest.raises(FacequantError) as exc:
        drun.check_qdq_backend(name)
    text = str(exc.value)
    assert name.split("=")[0] in text and "QDQ" in text and len(text.splitlines()) == 1


def test_backend_list():
    assert drun.diagnose_backends(["fp32", "int8-pt", "int8-pt", "int8-pc+16bit:last3"]) == ["int8-pt", "int8-pc+16bit:last3"]
    with pytest.raises(FacequantError, match="no quantized backend"):
        drun.diagnose_backends(["fp32"])
    with pytest.raises(FacequantError, match="int3"):
        drun.diagnose_backends(["int3"])


def test_probe_subset_is_seeded_and_not_the_calibration_subset():
    a = drun.probe_subset(61, 12, seed=0)
    assert np.array_equal(a, drun.probe_subset(61, 12, seed=0)) and len(set(a.tolist())) == 12
    calibration = set(np.random.default_rng(0).permutation(61)[:12].tolist())
    assert set(a.tolist()) != calibration
    assert len(drun.probe_subset(61, None, seed=0)) == 61


# --- on the shared model and photos ---------------------------------------------------------------

#: The progress events of the module's diagnosis (stage, done, total).
EVENTS: list[tuple[str, int, int]] = []


@pytest.fixture(scope="module")
def result(model_path: Path, celebs13: Path) -> drun.DiagnoseResult:
    config = drun.DiagnoseConfig(SweepConfig(model=str(model_path), data=str(celebs13), backends=("fp32", *BACKENDS),
                                           distances_m=DISTANCES), max_probes=MAX_PROBES)
    return drun.run_diagnose(config, progress=lambda *event: EVENTS.append(event))


@pytest.mark.slow
def test_progress_counts_each_backend_built(result: drun.DiagnoseResult):
    built = [(done, total) for stage, done, total in EVENTS if stage == "calibration"]
    assert built == [(0, 3), (1, 3), (2, 3), (3, 3)]  # not "building backends 1/1" for three


def _mean_snr(result: drun.DiagnoseResult, backend: str, distance: float) -> float:
    s = result.summary
    return float(s[(s.backend == backend) & (s.distance_m == distance)].mean_snr_db.iloc[0])


@pytest.mark.slow
def test_per_tensor_int8_is_noisiest_at_every_distance(result: drun.DiagnoseResult):
    for d in DISTANCES:
        pt = _mean_snr(result, "int8-pt", d)
        assert pt < _mean_snr(result, "int8-pc", d), d
        assert pt < _mean_snr(result, "a16w8", d), d


@pytest.mark.slow
def test_embedding_snr_falls_with_distance_for_int8_pt(result: drun.DiagnoseResult):
    out = result.summary[result.summary.backend == "int8-pt"].set_index("distance_m").output_snr_db
    assert out[1.0] > out[8.0]
    rows = result.layers[(result.layers.backend == "int8-pt") & result.layers.is_output]
    assert set(rows.layer) == {"output"} and len(rows) == len(DISTANCES)


@pytest.mark.slow
def test_layers_table_shape_and_columns(result: drun.DiagnoseResult):
    layers = result.layers
    assert list(layers.columns[: len(drun.LAYER_COLUMNS)]) == list(drun.LAYER_COLUMNS)
    n_layers = layers[(layers.backend == "int8-pt") & (layers.distance_m == 1.0)].layer.nunique()
    assert n_layers > 50  # every Conv, PRelu, Add and the output of MobileFaceNet
    assert len(layers) == len(BACKENDS) * len(DISTANCES) * n_layers
    assert not layers.duplicated(["backend", "distance_m", "layer"]).any()
    first = layers[(layers.backend == "int8-pt") & (layers.distance_m == 1.0)]
    assert first.depth.tolist() == list(range(n_layers))
    assert "Conv_0" in set(first.layer) and first.layer.iloc[-1] == "output"
    assert (layers.n_probes == MAX_PROBES).all()
    conv = first[first.op_type == "Conv"]
    assert conv.weight_range.gt(0).all() and conv.weight_asymmetry.between(0, 1).all()
    assert conv.channel_range_ratio.ge(1).all()
    assert first[first.op_type == "PRelu"].weight_range.isna().all()


@pytest.mark.slow
def test_bins_used_within_the_bit_width(result: drun.DiagnoseResult):
    layers = result.layers.dropna(subset=["act_bins_used"])
    assert (layers.act_bins_used <= 2 ** layers.act_bits).all() and (layers.act_bins_used >= 1).all()
    assert np.allclose(layers.act_bin_utilization, layers.act_bins_used / 2 ** layers.act_bits)
    a16 = result.layers[result.layers.backend == "a16w8"]
    assert a16.act_bits.notna().all() and (a16.act_bits == 16).all()
    assert (result.layers[result.layers.backend == "int8-pt"].act_bits == 8).all()
    assert a16.act_bins_used.max() > 256  # 16-bit codes really are counted on 65536 levels
    assert layers.act_at_rails.between(0, 1).all()


@pytest.mark.slow
def test_diagnosed_graph_is_the_backend(result: drun.DiagnoseResult, model_path: Path, celebs13: Path):
    # exposing only dequantized tensors keeps ORT's integer kernels: the same embedding, bit for bit
    for name in BACKENDS:
        assert result.run["checks"][name]["max_abs_diff_vs_backend"] == 0.0  # type: ignore[index]
    assert result.run["layers"]["int8-pt"]["unmatched_float_tensors"] == []  # type: ignore[index]
    assert set(result.run["layers"]["int8-pt"]["head"]) == {"Conv_91", "Conv_93", "Conv_94", "output"}  # type: ignore[index]


@pytest.mark.slow
def test_snr_agrees_with_onnxruntime_on_the_embedding(result: drun.DiagnoseResult, model_path: Path, celebs13: Path):
    # the embedding row, recomputed from the sweep's own backends and ORT's SNR function
    from facequant.backends.registry import BackendFactory
    from facequant.sweep.probes import prepare_probes

    ps = prepare_probes(SweepConfig(model=str(model_path), data=str(celebs13), distances_m=DISTANCES))
    factory = BackendFactory(ps.normalized, ps.model_sha, ps.spec, ps.calibration_tensors)
    chosen = drun.probe_subset(len(ps.images), MAX_PROBES, 0)
    crops, ok, _ = ps.probe_crops(2)
    crops = crops[chosen[ok[chosen]]]
    fp32, q = factory.make("fp32").embed(crops), factory.make("int8-pt").embed(crops)
    expected = compute_signal_to_quantization_noice_ratio(fp32, q)
    row = result.layers[(result.layers.backend == "int8-pt") & (result.layers.distance_m == 8.0) & result.layers.is_output]
    assert float(row.snr_db.iloc[0]) == pytest.approx(expected, abs=0.01)


@pytest.mark.slow
def test_histograms_default_to_the_worst_layer_at_the_farthest_distance(result: drun.DiagnoseResult):
    for name in BACKENDS:
        hist = result.histograms[name]
        far = result.layers[(result.layers.backend == name) & (result.layers.distance_m == 8.0)]
        assert hist.distance_m == 8.0 and hist.layer == far.loc[far.snr_db.idxmin(), "layer"]
        used = int(far[far.layer == hist.layer].act_bins_used.iloc[0])
        assert np.count_nonzero(hist.counts) == used and len(hist.counts) == 2 ** hist.tap.bits


@pytest.mark.slow
def test_write_and_refuse_to_overwrite(result: drun.DiagnoseResult, tmp_path: Path):
    out = dreport.write_diagnosis(result, tmp_path / "diag")
    files = {p.name for p in out.iterdir()}
    assert {"layers.csv", "summary.csv", "run.json", "output_snr_vs_distance.png"} <= files
    assert {"heartbeat_int8-pt.png", "histogram_a16w8.png"} <= files
    layers = pd.read_csv(out / "layers.csv")
    assert list(layers.columns[: len(drun.LAYER_COLUMNS)]) == list(drun.LAYER_COLUMNS)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["max_probes"] == MAX_PROBES and run["versions"]["onnxruntime"]
    assert run["timings"]["diagnose_s"] > 0 and run["seeds"]["seed"] == 0
    before = (out / "layers.csv").stat().st_mtime_ns
    with pytest.raises(FacequantError, match="--force"):
        dreport.write_diagnosis(result, out)
    assert (out / "layers.csv").stat().st_mtime_ns == before


@pytest.mark.slow
def test_cli_diagnose(tmp_path: Path, model_path: Path, celebs13: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "cli"
    args = ["diagnose", "--model", str(model_path), "--data", str(celebs13), "--backends", "int8-pt+16bit:last3",
            "--distances", "2,8", "--max-probes", "4", "--layer", "Conv_94", "--out", str(out), "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "int8-pt+16bit:last3" in text and "Conv_94" in text
    layers = pd.read_csv(out / "layers.csv")
    head = layers[layers.layer.isin(["Conv_91", "Conv_93", "Conv_94"])]
    assert (head.act_bits == 16).all() and (layers[layers.layer == "Conv_0"].act_bits == 8).all()
    run = json.loads((out / "run.json").read_text())
    assert run["histograms"]["int8-pt+16bit:last3"]["layer"] == "Conv_94"
    # never overwritten without --force; the refusal comes before any work
    stamp = (out / "run.json").stat().st_mtime_ns
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err and (out / "run.json").stat().st_mtime_ns == stamp
    # non-QDQ backends: one line, nothing written
    bad = tmp_path / "bad"
    assert main(["diagnose", "--backends", "int8-pt,fp16", "--out", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "fp16" in err and "QDQ" in err and len(err.splitlines()) == 1 and not bad.exists()
    assert main([*args[:-3], "--layer", "Conv_999", "--out", str(tmp_path / "l"), "--quiet"]) == 2
    assert "Conv_999" in capsys.readouterr().err

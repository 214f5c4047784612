"""facequant recommend: the rules on small hand-built tables, then end to end on celebs13."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facequant.analysis import recommend as rc
from facequant.cli import main
from facequant.errors import FacequantError
from facequant.simulate.camera import camera_from_spec

# ---------------------------------------------------------------- hand-built tables

RUN_CAMERA = "1080p-90"


def make_results(curves: dict[str, list[tuple[float, float, float]]], cost: dict[str, dict[str, float]] | None = None,
                 degenerate: dict[str, str] | None = None, camera: str = RUN_CAMERA, target_far: float = 1e-3,
                 face_px: bool = False) -> dict[str, object]:
    """A results dict as load_results returns it. ``curves``: backend -> (distance_m, tar, far)
    rows, or (face_px, tar, far) rows when face_px is True."""
    cam = camera_from_spec(camera)
    rows = []
    for backend, points in curves.items():
        for x, tar, far in points:
            px = x if face_px else cam.face_px(x)
            d = cam.distance_for_face_px(px) if face_px else x
            rows.append({"model": "m", "backend": backend, "distance_m": d, "face_px": px, "tar": tar,
                         "tar_ci_low": max(tar - 0.03, 0.0), "tar_ci_high": min(tar + 0.03, 1.0), "far": far})
    sweep = pd.DataFrame(rows)
    cliff = pd.DataFrame({"backend": list(curves), "degenerate": [(degenerate or {}).get(b, "") for b in curves]})
    cost_rows = []
    for backend in curves:
        c = {"file_bytes": 1_000_000, "layers_16bit": 0, "layers_float": 0, "cpu_latency_p50_ms": 10.0,
             "device_latency_ms": math.nan, **(cost or {}).get(backend, {})}
        cost_rows.append({"backend": backend, **c})
    costs = pd.DataFrame(cost_rows)
    fp32_cpu = float(costs.loc[costs.backend == "fp32", "cpu_latency_p50_ms"].iloc[0]) if "fp32" in curves else 10.0
    costs["latency_vs_fp32"] = costs.cpu_latency_p50_ms / fp32_cpu
    costs["latency_vs_fp32_basis"] = "cpu"
    info = camera_from_spec(camera).to_dict()
    run = {"config": {"target_far": target_far, "iod_mm": 63.0}, "camera": info,
           "model": {"spec": {"input_size": [112, 112]}}}
    return {"sweep": sweep, "cliff": cliff, "cost": costs, "run": run}


def scenario(near: float = 1.0, far: float = 3.0, tar: float = 0.95, camera: str = RUN_CAMERA,
             budget: float | None = 1.5, name: str = "test") -> rc.Scenario:
    return rc.Scenario(name=name, camera=camera_from_spec(camera), near_m=near, far_m=far, required_tar=tar,
                       max_far_vs_target=3.0, max_latency_vs_fp32=budget)


def flat(tar: float, far: float = 0.001, distances: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0)) -> list[tuple[float, float, float]]:
    return [(d, tar, far) for d in distances]


def by_backend(v: rc.ScenarioVerdict) -> dict[str, rc.BackendVerdict]:
    return {b.backend: b for b in v.backends}


def test_cheapest_that_meets_wins_and_the_rest_are_costlier():
    results = make_results({"fp32": flat(0.99), "int8-a": flat(0.98), "int8-b": flat(0.97)},
                           cost={"int8-a": {"cpu_latency_p50_ms": 8.0}, "int8-b": {"cpu_latency_p50_ms": 5.0}})
    v = rc.evaluate_scenario(results, scenario())
    assert v.recommended == "int8-b"
    verdicts = by_backend(v)
    assert verdicts["int8-b"].verdict == rc.RECOMMENDED
    assert verdicts["int8-a"].verdict == verdicts["fp32"].verdict == rc.COSTLIER
    assert verdicts["int8-a"].reason == "meets; slower than int8-b by more than 10%: 0.80x fp32 > 0.50x fp32"
    assert [b.backend for b in v.backends] == ["int8-b", "int8-a", "fp32"]  # cost order
    assert v.summary.startswith("test: int8-b - cheapest that meets")


def test_cpu_latency_ties_broken_by_file_size_then_wide_layers():
    results = make_results(
        {"fp32": flat(0.99), "big": flat(0.99), "small": flat(0.99), "small16": flat(0.99)},
        cost={"fp32": {"file_bytes": 5_000_000}, "big": {"cpu_latency_p50_ms": 8.0, "file_bytes": 2_000_000},
              # 8.5 ms is within 10 % of 8.0: a tie on CPU timing, a proxy that moves more than that
              "small": {"cpu_latency_p50_ms": 8.5, "file_bytes": 1_500_000},
              "small16": {"cpu_latency_p50_ms": 8.2, "file_bytes": 1_500_000, "layers_16bit": 3}})
    v = rc.evaluate_scenario(results, scenario())
    assert v.recommended == "small"
    verdicts = by_backend(v)
    assert "more 16-bit/float layers: 3 > 0" in verdicts["small16"].reason
    assert "larger file: 2.00 MB > 1.50 MB" in verdicts["big"].reason
    assert verdicts["small16"].reason == ("meets; latency ties small within noise (0.82x fp32 vs 0.85x fp32); "
                                          "more 16-bit/float layers: 3 > 0")
    # Without the tolerance the fastest CPU figure wins outright.
    assert rc.evaluate_scenario(results, scenario(), latency_tolerance=0.0).recommended == "big"


def test_a_later_tie_group_is_named_slower_than_the_fastest_not_larger():
    # big (0.80x) and small (0.87x) tie, small wins on file size; tiny (0.89x) is beyond 10 %
    # of the fastest, so it is slower, even though its file is the smallest.
    results = make_results(
        {"fp32": flat(0.99), "big": flat(0.99), "small": flat(0.99), "tiny": flat(0.99)},
        cost={"big": {"cpu_latency_p50_ms": 8.0, "file_bytes": 2_000_000},
              "small": {"cpu_latency_p50_ms": 8.7, "file_bytes": 1_500_000},
              "tiny": {"cpu_latency_p50_ms": 8.9, "file_bytes": 900_000}})
    v = rc.evaluate_scenario(results, scenario())
    assert v.recommended == "small"
    assert by_backend(v)["tiny"].reason == "meets; slower than big by more than 10%: 0.89x fp32 > 0.80x fp32"


def test_device_latency_orders_when_every_backend_has_it():
    results = make_results({"fp32": flat(0.99), "a": flat(0.99), "b": flat(0.99)},
                           cost={"fp32": {"device_latency_ms": 12.0}, "a": {"cpu_latency_p50_ms": 5, "device_latency_ms": 3.0},
                                 "b": {"cpu_latency_p50_ms": 9, "device_latency_ms": 1.5}})
    v = rc.evaluate_scenario(results, scenario())
    assert v.recommended == "b" and v.cost_basis.startswith("device latency")
    assert "slower than b: 3.00 ms > 1.50 ms" in by_backend(v)["a"].reason


def test_tar_shortfall_reason_names_distance_and_numbers():
    curve = [(1.0, 0.99, 0.001), (2.0, 0.96, 0.001), (3.0, 0.88, 0.001), (5.0, 0.5, 0.001)]
    results = make_results({"fp32": flat(0.99), "int8": curve}, cost={"int8": {"cpu_latency_p50_ms": 5.0}})
    v = rc.evaluate_scenario(results, scenario(1.0, 3.0, 0.95))
    bad = by_backend(v)["int8"]
    assert bad.verdict == rc.REJECTED
    assert bad.reason == "TAR 0.88 at 3.0 m < 0.95 (-0.07)"
    assert bad.worst_distance_m == 3.0 and bad.shortfall == pytest.approx(0.07)
    assert v.recommended == "fp32"
    # Two failing distances: the worst is named, the others listed.
    v = rc.evaluate_scenario(results, scenario(1.0, 3.0, 0.97))
    assert by_backend(v)["int8"].reason == "TAR 0.88 at 3.0 m < 0.97 (-0.09), also fails at 2.0 m"


def test_shortfall_shows_enough_decimals_to_be_visible():
    results = make_results({"fp32": flat(0.986)})
    failure = by_backend(rc.evaluate_scenario(results, scenario(tar=0.99)))["fp32"].failures[0]
    assert failure.startswith("TAR 0.986 at 3.0 m < 0.99 (-0.004), also fails at")


def test_degenerate_is_never_recommended():
    results = make_results({"fp32": flat(0.96), "collapsed": flat(1.0)},
                           cost={"collapsed": {"cpu_latency_p50_ms": 1.0, "file_bytes": 10}},
                           degenerate={"collapsed": "impostor cosine 0.93 close to genuine 0.95"})
    v = rc.evaluate_scenario(results, scenario())
    assert v.recommended == "fp32"
    bad = by_backend(v)["collapsed"]
    assert bad.verdict == rc.REJECTED and bad.reason == "degenerate: impostor cosine 0.93 close to genuine 0.95"
    # Even when nothing else qualifies it is not named as the closest.
    results = make_results({"fp32": flat(0.5), "collapsed": flat(1.0)}, degenerate={"collapsed": "collapsed"})
    v = rc.evaluate_scenario(results, scenario())
    assert v.recommended is None and v.closest == "fp32"


def test_far_over_limit_rejects():
    curve = [(0.5, 1.0, 0.001), (1.0, 1.0, 0.016), (2.0, 1.0, 0.002), (3.0, 1.0, 0.001)]
    results = make_results({"fp32": flat(0.99), "loose": curve}, cost={"loose": {"cpu_latency_p50_ms": 2.0}})
    v = rc.evaluate_scenario(results, scenario())
    bad = by_backend(v)["loose"]
    assert bad.verdict == rc.REJECTED and bad.reason == "FAR 0.016 > 0.003 at 1.0 m"
    assert bad.worst_far == pytest.approx(0.016)
    assert v.recommended == "fp32"


def test_over_budget_rejects_with_numbers():
    results = make_results({"fp32": flat(0.99), "a16": flat(0.99)}, cost={"a16": {"cpu_latency_p50_ms": 19.0}})
    v = rc.evaluate_scenario(results, scenario(budget=1.5))
    assert by_backend(v)["a16"].reason == "over budget: 1.90x fp32 (cpu) > 1.5x"
    assert rc.evaluate_scenario(results, scenario(budget=None)).backends[1].verdict == rc.COSTLIER


def test_camera_conversion_reads_tar_at_the_same_face_px():
    # The run measured on a 90-degree 1080p camera at two face sizes; the scenario's 60-degree
    # camera sees 3 m as 111 px, between them: TAR is read there, interpolated in log px.
    results = make_results({"fp32": [(128.0, 1.0, 0.001), (96.0, 0.6, 0.001), (40.0, 0.1, 0.0)]}, face_px=True)
    s = scenario(3.0, 3.0, 0.9, camera="1080p-60", budget=None)
    px = s.camera.face_px(3.0)
    assert px == pytest.approx(111.0, abs=0.1)
    expected = 0.6 + 0.4 * (math.log(px) - math.log(96)) / (math.log(128) - math.log(96))
    v = rc.evaluate_scenario(results, s)
    fp32 = by_backend(v)["fp32"]
    assert fp32.worst_tar == pytest.approx(expected)
    assert fp32.points[0].how == "interpolated"
    assert "face px" in v.tar_basis and "1080p-60" in v.tar_basis and RUN_CAMERA in v.tar_basis
    assert fp32.failures == (f"TAR {expected:.2f} at 3.0 m (111 px) < 0.9 ({expected - 0.9:+.2f})",)
    # On the run's own camera, 3 m is 64 px: a different (worse) reading, straight from the rows.
    v_same = rc.evaluate_scenario(results, scenario(3.0, 3.0, 0.9, budget=None))
    assert by_backend(v_same)["fp32"].worst_tar < expected
    assert v_same.tar_basis.startswith("sweep rows")


def test_faces_larger_than_the_sweep_read_its_largest_only_above_model_input():
    results = make_results({"fp32": [(384.0, 0.99, 0.001), (64.0, 0.9, 0.001)]}, face_px=True)
    s = scenario(0.5, 0.5, 0.95, camera="4k-110", budget=None)  # 0.5 m: 538 px > 384 px swept
    point = by_backend(rc.evaluate_scenario(results, s))["fp32"].points[0]
    assert point.how == "held" and point.tar == 0.99
    small = make_results({"fp32": [(100.0, 0.99, 0.001), (64.0, 0.9, 0.001)]}, face_px=True)
    with pytest.raises(rc.NotCoveredError, match="outside the sweep"):
        rc.evaluate_scenario(small, s)  # 100 px < the model's 112: a larger face is not known


def test_none_meets_names_the_closest_and_why():
    results = make_results(
        {"fp32": flat(0.70), "int8": flat(0.75), "a16w8": flat(0.79), "npu": flat(0.60)},
        cost={"int8": {"cpu_latency_p50_ms": 5.0}, "a16w8": {"cpu_latency_p50_ms": 20.0},
              "npu": {"cpu_latency_p50_ms": 4.0}})
    v = rc.evaluate_scenario(results, scenario(tar=0.80))
    # a16w8 is nearer on TAR but over budget: the closest is the nearest one still within budget.
    assert v.recommended is None and v.closest == "int8"
    assert v.backends[0].backend == "int8" and v.backends[0].closest
    assert v.backends[0].reason.startswith("closest (meets TAR nowhere in range): TAR 0.75 at 3.0 m < 0.8 (-0.05)")
    assert "no backend meets TAR >= 0.8 at 1.0-3.0 m" in v.summary and "closest: int8" in v.summary
    assert any(n.startswith("fp32 fails too") for n in v.notes)
    table = v.table()
    assert table.loc[table.closest, "backend"].tolist() == ["int8"]
    assert set(table.verdict) == {rc.REJECTED}
    # Without a budget a16w8 is within everything, and nearest.
    assert rc.evaluate_scenario(results, scenario(tar=0.80, budget=None)).closest == "a16w8"


def test_none_meets_mentions_a_diagnostics_recipe():
    results = make_results({"fp32": flat(0.5)})
    results["search"] = {"recipe": "int8-pc+16bit:last3", "other": 1}
    v = rc.evaluate_scenario(results, scenario())
    assert v.recipe == "int8-pc+16bit:last3"
    assert any("int8-pc+16bit:last3" in n and "search.json" in n for n in v.notes)
    results["search"] = None
    assert rc.evaluate_scenario(results, scenario()).recipe is None
    # A recipe that is among the swept backends: its own verdict is quoted.
    results = make_results({"fp32": flat(0.5), "int8+16bit:last3": flat(0.9)})
    results["search"] = {"recipe": "int8+16bit:last3"}
    notes = rc.evaluate_scenario(results, scenario()).notes
    assert any(n.startswith("diagnostics' mixed-precision recipe int8+16bit:last3 (search.json) was swept: closest")
               for n in notes)


def test_search_json_is_found_in_the_run_or_beside_a_search_final(tmp_path: Path):
    assert rc.load_search(tmp_path) is None
    (tmp_path / "final").mkdir()
    (tmp_path / "search.json").write_text('{"recipe": "int8-pt+16bit:nodes=Conv_91", "layers": ["Conv_91"]}')
    assert rc.load_search(tmp_path / "final")["recipe"] == "int8-pt+16bit:nodes=Conv_91"
    (tmp_path / "final" / "search.json").write_text("not json")
    assert rc.load_search(tmp_path / "final")["recipe"] == "int8-pt+16bit:nodes=Conv_91"


def test_partial_coverage_is_evaluated_and_said():
    results = make_results({"fp32": flat(0.99, distances=(1.0, 2.0, 3.0))})
    v = rc.evaluate_scenario(results, scenario(2.0, 8.0))
    assert v.evaluated_m == (2.0, 3.0)
    assert v.coverage.startswith("evaluated 2.0-3.0 m only: 8.0 m not covered")
    assert v.recommended == "fp32" and "[evaluated 2.0-3.0 m only]" in v.backends[0].reason
    with pytest.raises(rc.NotCoveredError, match="lies outside the sweep"):
        rc.evaluate_scenario(results, scenario(6.0, 8.0))
    rec = rc.recommend(results, [scenario(1.0, 3.0, name="near"), scenario(6.0, 8.0, name="far")])
    assert list(rec.verdicts) == ["near"] and "far" in rec.skipped
    assert list(rec.table.scenario.unique()) == ["near"]


def test_range_ends_between_swept_distances_are_checked():
    # Swept at 2 and 4 m only: a 1-3 m scenario is read at 1 (not covered), 2 and 3 m (interpolated).
    results = make_results({"fp32": [(0.5, 1.0, 0.0), (2.0, 1.0, 0.0), (4.0, 0.5, 0.0)]})
    v = rc.evaluate_scenario(results, scenario(1.0, 3.0, 0.95))
    fp32 = by_backend(v)["fp32"]
    assert [p.distance_m for p in fp32.points] == [1.0, 2.0, 3.0]
    assert fp32.worst_distance_m == 3.0 and fp32.points[-1].how == "interpolated"
    assert v.recommended is None


def test_table_columns_and_csv_written_atomically(tmp_path: Path):
    results = make_results({"fp32": flat(0.99), "int8": flat(0.5)})
    rec = rc.recommend(results, [scenario()])
    assert list(rec.table.columns[: len(rc.RECOMMEND_COLUMNS)]) == list(rc.RECOMMEND_COLUMNS)
    (tmp_path / "sweep.csv").write_text("keep")
    path = rc.write_recommendation(rec, tmp_path)
    assert path.name == "recommend.csv" and (tmp_path / "sweep.csv").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recommend.csv", "sweep.csv"]
    back = pd.read_csv(path)
    assert back.verdict.tolist() == ["recommended", "rejected"]
    assert back.shortfall.iloc[1] == pytest.approx(0.45)


# ---------------------------------------------------------------- scenario files


def test_shipped_scenarios_and_their_defaults():
    scenarios = rc.load_scenarios()
    assert set(scenarios) == {"kiosk", "corridor", "far-field"}
    k, c, f = scenarios["kiosk"], scenarios["corridor"], scenarios["far-field"]
    assert (k.near_m, k.far_m, k.required_tar) == (0.5, 1.0, 0.99)
    assert (c.near_m, c.far_m, c.required_tar) == (1.0, 3.0, 0.95)
    assert (f.near_m, f.far_m, f.required_tar) == (3.0, 8.0, 0.80)
    for s in scenarios.values():
        assert s.max_latency_vs_fp32 == 1.5 and s.max_far_vs_target == 3.0 and s.max_latency_ms is None
    assert rc.get_scenario("corridor").camera.name == "1080p-60"


@pytest.mark.parametrize("text, message", [
    ("camera: 1080p-90\ndistance_m: [1, 3]\nrequired_tar: high\n", "required_tar must be a number in (0, 1], got 'high'"),
    ("camera: 1080p-90\ndistance_m: [1, 3]\nrequird_tar: 0.9\n", "unknown key 'requird_tar'"),
    ("camera: 1080p-90\ndistance_m: [1, 3]\n", "missing key 'required_tar'"),
    ("camera: 1080p-90\ndistance_m: [3, 1]\nrequired_tar: 0.9\n", "distance_m must be [near, far] with near <= far"),
    ("camera: 1080p-90\ndistance_m: 3\nrequired_tar: 0.9\n", "distance_m must be [near, far]"),
    ("camera: nocam\ndistance_m: [1, 3]\nrequired_tar: 0.9\n", "camera: camera 'nocam'"),
    ("camera: 1080p-90\ndistance_m: [1, 3]\nrequired_tar: 0.9\nbudget: {max_latency: 2}\n", "unknown key 'budget.max_latency'"),
    ("camera: 1080p-90\ndistance_m: [1, 3]\nrequired_tar: 0.9\nbudget: {max_latency_vs_fp32: -1}\n", "budget.max_latency_vs_fp32"),
    ("camera: 1080p-90\ndistance_m: [1, 3\n", "not valid YAML at line"),
    ("- a\n- b\n", "scenario must be a mapping"),
])
def test_invalid_scenario_file_is_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(FacequantError) as info:
        rc.load_scenario_file(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(FacequantError, match=r"scenario 'lobby' unknown; known: corridor, far-field, kiosk"):
        rc.get_scenario("lobby")


def test_custom_scenario_file_with_inline_camera(tmp_path: Path):
    path = tmp_path / "gate.yaml"
    path.write_text("camera: {width_px: 2560, hfov_deg: 50}\ndistance_m: [2, 4]\nrequired_tar: 0.9\n")
    s = rc.get_scenario(str(path))
    assert s.name == "gate" and s.camera.width_px == 2560 and s.max_latency_vs_fp32 is None


# ---------------------------------------------------------------- end to end on celebs13


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, model_path: Path, celebs13: Path) -> Path:
    out = tmp_path_factory.mktemp("recommend") / "celebs13"
    assert main(["sweep", "--backends", "fp32,int8-pt,int8-pc,a16w8", "--out", str(out), "--quiet"]) == 0
    return out


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.name != rc.RECOMMEND_CSV}


@pytest.mark.slow
def test_cli_on_celebs13(run_dir: Path, capsys: pytest.CaptureFixture[str]):
    before = _digests(run_dir)
    assert main(["recommend", "--results", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert _digests(run_dir) == before  # only recommend.csv is written
    table = pd.read_csv(run_dir / "recommend.csv")
    assert list(table.columns[: len(rc.RECOMMEND_COLUMNS)]) == list(rc.RECOMMEND_COLUMNS)
    assert list(table.scenario.unique()) == ["kiosk", "corridor", "far-field"]
    for name, rows in table.groupby("scenario"):
        assert len(rows) == 4 and set(rows.backend) == {"fp32", "int8-pt", "int8-pc", "a16w8"}
        assert set(rows.verdict) <= {rc.RECOMMENDED, rc.REJECTED, rc.COSTLIER}
        # Exactly one answer per scenario: a recommendation, or a named closest.
        assert (rows.verdict == rc.RECOMMENDED).sum() + rows.closest.sum() == 1, name
        assert rows.reason.str.len().gt(0).all()
        assert (rows.file_bytes > 0).all() and rows.latency_vs_fp32.notna().all()
        assert out.count(f"{name}: ") >= 2  # table title and summary line
    # Every backend holds TAR >= 0.95 from 1 to 3 m with the corridor camera (>= 110 px faces).
    corridor = table[table.scenario == "corridor"]
    assert (corridor.worst_tar >= 0.95).all()
    assert (corridor.verdict == rc.RECOMMENDED).sum() == 1
    rejected = corridor[corridor.verdict == rc.REJECTED]
    assert rejected.reason.str.startswith("over budget").all()  # the only way to lose here
    # The far field is read through face px (4K camera vs the run's 1080p).
    assert table[table.scenario == "far-field"].tar_basis.str.contains("face px").all()


@pytest.mark.slow
def test_recommendation_is_reproducible_and_the_api_matches_the_csv(run_dir: Path):
    assert main(["recommend", "--results", str(run_dir)]) == 0
    first = (run_dir / "recommend.csv").read_bytes()
    assert main(["recommend", "--results", str(run_dir)]) == 0
    assert (run_dir / "recommend.csv").read_bytes() == first
    rec = rc.recommend_dir(run_dir, write=False)
    assert (run_dir / "recommend.csv").read_bytes() == first
    back = pd.read_csv(run_dir / "recommend.csv")
    pd.testing.assert_frame_equal(rec.table, back, check_dtype=False)
    for name, verdict in rec.verdicts.items():
        rows = rec.table[rec.table.scenario == name]
        assert verdict.recommended == (rows.loc[rows.verdict == rc.RECOMMENDED, "backend"].tolist() or [None])[0]


@pytest.mark.slow
def test_device_profile_reorders_by_device_latency(run_dir: Path):
    from facequant import settings

    profile = settings.configs_dir() / "devices" / "hailo8-example.yaml"
    rec = rc.recommend_dir(run_dir, "kiosk", device_profile=profile, write=False)
    v = rec.verdicts["kiosk"]
    assert v.cost_basis.startswith("device latency")
    verdicts = by_backend(v)
    # int8-pt and int8-pc tie at 1.5 ms exactly; int8-pt's file is smaller.
    assert v.recommended == "int8-pt"
    assert "latency ties int8-pt (1.50 ms vs 1.50 ms)" in verdicts["int8-pc"].reason
    # On the device a16w8 costs 2.8 / 12 = 0.23x fp32: within budget, only slower.
    assert verdicts["a16w8"].verdict == rc.COSTLIER
    assert "slower than int8-pt: 2.80 ms > 1.50 ms" in verdicts["a16w8"].reason


@pytest.mark.slow
def test_cli_errors_are_one_line(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cases = [
        (["--results", str(tmp_path / "none")], "no such results directory"),
        (["--results", str(tmp_path)], "not a facequant results directory (missing sweep.csv)"),
        (["--results", str(run_dir), "--scenario", "lobby"], "known: corridor, far-field, kiosk"),
    ]
    far = tmp_path / "beyond.yaml"
    far.write_text("camera: 1080p-90\ndistance_m: [20, 30]\nrequired_tar: 0.5\n")
    cases.append((["--results", str(run_dir), "--scenario", str(far)], "lies outside the sweep"))
    for args, message in cases:
        assert main(["recommend", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_partially_covered_scenario_on_celebs13(run_dir: Path, tmp_path: Path):
    wide = tmp_path / "wide.yaml"
    wide.write_text("camera: 1080p-90\ndistance_m: [5, 20]\nrequired_tar: 0.01\n")
    v = rc.recommend_dir(run_dir, str(wide), write=False).verdicts["wide"]
    assert v.evaluated_m == (5.0, 6.0, 8.0, 10.0, 12.0)
    assert "20.0 m not covered" in v.coverage and v.coverage in v.notes
    assert np.isfinite(v.backends[0].worst_tar)

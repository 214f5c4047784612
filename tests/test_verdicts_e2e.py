"""Verdicts end to end on the real model and photos, through the path a device takes: the
sweep's exact inputs exported, "run on a device" (the float model here), and brought back as
external backends. One brings back fp32's own embeddings: it must be `same`, at every bootstrap
seed. The other brings them back with the genuine scores lowered from 5 m on: `worse` from 5 m."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facequant.cli import main
from facequant.evaluate import people, verdicts

DISTANCES = "1,3,5,6,8,12"  # to 12 m: fp32's cliff lies inside the sweep in every resample
LOWERED_FROM = 5.0


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory, model_path: Path, celebs13: Path) -> Path:
    from facequant.backends.runtime import OrtBackend
    from facequant.models.normalize import normalize_model
    from facequant.models.spec import inspect_model

    root = tmp_path_factory.mktemp("verdicts")
    export = root / "probes"
    assert main(["export-probes", "--model", str(model_path), "--data", str(celebs13), "--distances", DISTANCES,
                 "--out", str(export), "--quiet"]) == 0
    device = OrtBackend("device", normalize_model(model_path), inspect_model(model_path))
    rng = np.random.default_rng(0)
    for name, change in (("exact", False), ("lowered", True)):
        folder = root / name
        folder.mkdir()
        shutil.copy(export / "manifest.csv", folder)
        shutil.copy(export / "manifest.json", folder)
        for npy in sorted(export.glob("*.npy")):
            emb = device.run(np.load(npy))
            if change and npy.stem.startswith("probe_") and float(npy.stem[6:-1]) >= LOWERED_FROM:
                # mix each probe with a random direction of its own size: its genuine cosines halve
                noise = rng.normal(size=emb.shape).astype(np.float32)
                noise *= np.linalg.norm(emb, axis=1, keepdims=True) / np.linalg.norm(noise, axis=1, keepdims=True)
                emb = emb + noise
            np.save(folder / f"{npy.stem}.emb.npy", emb)
    out = root / "run"
    assert main(["sweep", "--model", str(model_path), "--data", str(celebs13), "--distances", DISTANCES,
                 "--backends", f"fp32,external:exact={root / 'exact'},external:lowered={root / 'lowered'}",
                 "--no-latency", "--out", str(out), "--quiet"]) == 0
    return out


def _names(cliff: pd.DataFrame) -> dict[str, str]:
    return {b.split("=")[0].removeprefix("external:"): b for b in cliff.backend}


@pytest.mark.slow
def test_fp32s_own_embeddings_are_same_and_lowered_scores_are_worse_from_there_at_every_seed(sweep_dir: Path):
    cliff = pd.read_csv(sweep_dir / "cliff.csv", keep_default_na=False, na_values=[""])
    names = _names(cliff)
    table = cliff.set_index("backend")
    exact, lowered = table.loc[names["exact"]], table.loc[names["lowered"]]
    assert exact.verdict == "same" and np.isnan(exact.worse_from_m)
    assert exact.distance_cost_m == exact.distance_cost_low_m == exact.distance_cost_high_m == 0.0
    assert lowered.verdict == "worse" and lowered.worse_from_m == LOWERED_FROM
    run = json.loads((sweep_dir / "run.json").read_text())
    tests = pd.DataFrame(run["verdicts"]["backends"][names["lowered"]]["distances"])
    assert not tests[tests.distance_m < LOWERED_FROM].significant.any()  # untouched there: no difference
    assert tests[tests.distance_m == LOWERED_FROM].significant.all()
    # the same verdicts for bootstrap seeds 0..4, recomputed from the files the sweep wrote
    sweep = pd.read_csv(sweep_dir / "sweep.csv")
    probes = pd.read_csv(sweep_dir / "probes.csv")
    counts = people.person_counts(people.outcomes(pd.read_parquet(sweep_dir / "genuine.parquet"), cliff.threshold[0]),
                                  dict(zip(probes.image, probes.identity, strict=False)), list(cliff.backend),
                                  sorted(sweep.distance_m.unique()))
    base = cliff.drop(columns=list(verdicts.VERDICT_COLUMNS))
    for seed in range(5):
        again, _ = verdicts.judge(base, sweep, counts, 1e-3, verdicts.VerdictSettings(seed=seed))
        again = again.set_index("backend")
        assert again.loc[names["exact"], "verdict"] == "same"
        assert again.loc[names["lowered"], "verdict"] == "worse"
        assert again.loc[names["lowered"], "worse_from_m"] == LOWERED_FROM


@pytest.mark.slow
def test_the_summary_leads_with_the_verdicts(sweep_dir: Path):
    from facequant.results.directory import load_results
    from facequant.results.summary import distance_lines, summary_rows, verdict_lines

    loaded = load_results(sweep_dir)
    cliff, run = loaded["cliff"], loaded["run"]
    assert isinstance(cliff, pd.DataFrame) and isinstance(run, dict)
    lines = verdict_lines(cliff, run)
    assert lines[0].startswith("verdicts against fp32 on the same pairs of 13 people")
    assert any(line.startswith("  exact: SAME: no distance where its TAR differs significantly") for line in lines)
    assert any(line.startswith("  lowered: WORSE: TAR significantly below fp32's at 5, 6") for line in lines)
    rows = {r[0]: r for r in summary_rows(cliff, loaded["sweep"])}  # type: ignore[arg-type]
    assert rows["lowered"][1] == "worse\nfrom 5 m" and rows["exact"][1] == "same"
    assert rows["exact"][4] == "none\n[+0.00, +0.00]"  # a zero cost is never said as a difference
    assert any("lowered: worse from 5 m; reliable to" in line for line in distance_lines(cliff))

"""facequant.evaluate.scoring and identification against brute force on synthetic embeddings:
the blocked scorer must give exactly what one row per comparison would."""

from __future__ import annotations

import numpy as np
import pytest

from facequant.evaluate import identification as ident
from facequant.evaluate import metrics, scoring


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(probes: np.ndarray, rows: np.ndarray, gallery: np.ndarray, identity: np.ndarray, same_photo: bool):
    genuine, impostor = [], []
    for i, r in enumerate(rows.tolist()):
        for g in range(len(gallery)):
            score = float(probes[i] @ gallery[g])
            if identity[r] != identity[g]:
                impostor.append((r, g, score))
            elif (g == r) if same_photo else (g != r):
                genuine.append((r, g, score))
    return genuine, impostor


@pytest.mark.parametrize("far", [1e-3, 1e-2, 0.05, 0.3])
def test_threshold_from_top_is_threshold_at_far(far: float):
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=5000), 3)  # rounded: many ties, where off-by-one errors hide
    top = scoring.TopK(scoring.impostors_allowed(len(scores), far) + 1)
    for block in np.array_split(np.arange(len(scores)), 7):  # blocks, as the scorer feeds it
        top.add(scores[block], block, block)
    values, _ = top.sorted_desc()
    assert scoring.threshold_from_top(values, len(scores), far) == metrics.threshold_at_far(scores, np.array([]), far)


@pytest.mark.parametrize("same_photo", [False, True])
def test_all_pairs_equal_brute_force(same_photo: bool, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(scoring, "BLOCK_ENTRIES", 50)  # many blocks on a small set
    rng = np.random.default_rng(1)
    identity = np.repeat(np.arange(6), [1, 2, 3, 4, 2, 3])
    gallery = _unit(rng, len(identity))
    rows = np.array([0, 2, 3, 5, 6, 9, 10, 12, 14])  # some photos not simulated at this distance
    probes = _unit(rng, len(rows))
    genuine, impostor = _brute(probes, rows, gallery, identity, same_photo)
    threshold = 0.2
    sunk = []
    cell = scoring.score_all_pairs(probes, rows, gallery, identity, same_photo, threshold, keep_top=5,
                                   sink=lambda *a: sunk.append(a))
    p, g, c = cell.genuine.arrays()
    assert sorted(zip(p.tolist(), g.tolist(), np.round(c, 12).tolist(), strict=True)) == sorted(
        (a, b, round(s, 12)) for a, b, s in genuine)
    imp = np.array([s for _, _, s in impostor])
    assert cell.impostors.n == len(imp) and cell.impostors.total == pytest.approx(imp.sum(), abs=1e-9)
    assert cell.impostors.accepted == int((imp >= threshold).sum())
    top, pairs = cell.top.sorted_desc()
    assert np.allclose(top, np.sort(imp)[::-1][:5])
    best = {(a, b) for a, b, s in impostor if s >= top[-1] - 1e-12}  # GEMM and dot differ by ~1e-16
    assert {tuple(x) for x in pairs.tolist()} <= best
    rows_sunk = sum(len(a[0]) for a in sunk)
    assert rows_sunk == len(genuine) + len(impostor)


def test_listed_pairs_skip_unsimulated_probes():
    rng = np.random.default_rng(2)
    gallery = _unit(rng, 5)
    probe = np.array([0, 1, 2, 3, 4, 0])
    enrolled = np.array([1, 0, 3, 4, 2, 4])
    genuine = np.array([True, True, False, False, True, False])
    by_row = {0: _unit(rng, 1)[0], 2: _unit(rng, 1)[0], 4: _unit(rng, 1)[0]}  # photos 1 and 3 not simulated
    cell = scoring.score_listed_pairs(by_row, gallery, probe, enrolled, genuine, threshold=-1.0)
    p, g, c = cell.genuine.arrays()
    assert list(zip(p.tolist(), g.tolist(), strict=True)) == [(0, 1), (4, 2)]
    assert np.allclose(c, [by_row[0] @ gallery[1], by_row[4] @ gallery[2]])
    assert cell.impostors.n == 2 and cell.impostors.accepted == 2  # (2, 3) and (0, 4); threshold -1 takes all


def test_zero_embedding_has_no_direction():
    unit, norm = scoring.unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]]), 1e-12)
    assert np.allclose(unit, [[0.6, 0.8], [0.0, 0.0]]) and np.allclose(norm, [5.0, 0.0])


def test_split_is_seeded_and_consistent():
    identity = np.repeat(np.arange(10), [1, 3, 2, 4, 2, 2, 5, 1, 3, 2])
    names = [f"p{i}" for i in range(10)]
    a = ident.split_identities(identity, names, seed=3)
    b = ident.split_identities(identity, names, seed=3)
    c = ident.split_identities(identity, names, seed=4)
    assert a is not None and b is not None and c is not None
    assert np.array_equal(a.gallery_rows, b.gallery_rows) and a.not_enrolled == b.not_enrolled
    assert (a.not_enrolled, a.gallery_rows.tolist()) != (c.not_enrolled, c.gallery_rows.tolist())
    assert len(a.not_enrolled) == 2 and set(a.not_enrolled) == {"p0", "p7"}  # one-photo people are left out first
    enrolled = set(identity[a.gallery_rows].tolist())
    assert len(enrolled) == len(a.gallery_rows) == 8  # one gallery photo per enrolled person
    assert not enrolled & set(identity[a.nonmated_rows].tolist())
    assert not set(a.gallery_rows.tolist()) & set(a.mated_rows.tolist())
    assert len(a.mated_rows) + len(a.gallery_rows) + len(a.nonmated_rows) == len(identity)
    assert ident.split_identities(np.zeros(4, np.int64), ["x"], seed=0) is None  # one person: nobody to reject


def test_search_equals_brute_force():
    rng = np.random.default_rng(5)
    identity = np.repeat(np.arange(6), 3)
    split = ident.split_identities(identity, [str(i) for i in range(6)], seed=0)
    assert split is not None
    units = _unit(rng, len(identity))
    gallery = units[split.gallery_rows]
    probes = {r: _unit(rng, 1)[0] for r in range(len(identity)) if r not in set(split.gallery_rows.tolist())}
    s = ident.search(split, probes, gallery, identity)
    for r, correct, top in zip(s.mated_rows, s.mated_correct, s.mated_top, strict=True):
        scores = gallery @ probes[int(r)]
        assert top == pytest.approx(scores.max()) and correct == (split.gallery_identity[scores.argmax()] == identity[r])
    for r, top in zip(s.nonmated_rows, s.nonmated_top, strict=True):
        assert top == pytest.approx((gallery @ probes[int(r)]).max())
    row = ident.identification_row("m", "fp32", 1.0, 100.0, s, threshold=0.3)
    assert row["rank1"] == pytest.approx(s.mated_correct.mean())
    assert row["tpir"] == pytest.approx(np.mean(s.mated_correct & (s.mated_top >= 0.3)))
    assert row["fpir"] == pytest.approx(np.mean(s.nonmated_top >= 0.3))
    assert row["tpir"] <= row["rank1"] and row["tpir_ci_low"] <= row["tpir"] <= row["tpir_ci_high"]


def test_cell_row_equals_sweep_table():
    """The sweep row from counts equals sweep_table's from per-comparison rows."""
    import pandas as pd

    rng = np.random.default_rng(7)
    gen, imp = rng.uniform(0, 1, 40), rng.uniform(-0.3, 0.6, 300)
    probes = pd.DataFrame({"model": "m", "backend": "b", "distance_m": 2.0, "face_px": 50.0,
                           "image": [f"p{i}" for i in range(10)], "identity": "x", "prenorm": rng.uniform(1, 5, 10),
                           "cos_to_fp32": rng.uniform(0.9, 1, 10), "simulated": True})
    comps = pd.DataFrame({"backend": "b", "distance_m": 2.0, "face_px": 50.0, "probe": "p0", "gallery": "p1",
                          "genuine": [True] * len(gen) + [False] * len(imp), "cosine": np.concatenate([gen, imp]),
                          "probe_prenorm": 1.0})
    want = metrics.sweep_table(probes, comps, 0.4, "m").iloc[0]
    got = metrics.table_from_rows([metrics.cell_row("m", "b", 2.0, 50.0, probes, gen, len(imp), float(imp.sum()),
                                                    int((imp >= 0.4).sum()), 0.4, 0)]).iloc[0]
    for column, value in want.items():
        if isinstance(value, float):
            assert got[column] == pytest.approx(value, rel=1e-12, abs=1e-12), column
        else:
            assert got[column] == value, column


from __future__ import annotations

from pathlib import Path

import pytest

from facequant.datasets.folders import comparisons, load_identity_folders
from facequant.errors import FacequantError


def test_celebs13_folders_and_pairs(celebs13: Path):
    ds = load_identity_folders(celebs13)
    assert len(ds.images) == 61
    assert len(ds.identities) == 13
    with_pairs = load_identity_folders(celebs13, celebs13 / "pairs.csv")
    assert with_pairs.pairs is not None and len(with_pairs.pairs) == 520
    assert sum(p.same for p in with_pairs.pairs) == 140


def test_all_pairs_protocol_counts(celebs13: Path):
    ds = load_identity_folders(celebs13)
    triples = list(comparisons(ds))
    counts: dict[str, int] = {}
    for img in ds.images:
        counts[img.identity] = counts.get(img.identity, 0) + 1
    n = len(ds.images)
    genuine_expected = sum(k * (k - 1) for k in counts.values())  # ordered pairs within identities
    assert sum(g for _, _, g in triples) == genuine_expected
    assert sum(not g for _, _, g in triples) == n * (n - 1) - genuine_expected
    assert all(p != g for p, g, _ in triples)


def test_same_photo_mode_and_usable_filter(celebs13: Path):
    ds = load_identity_folders(celebs13)
    keys = {img.key for img in ds.images[:10]}
    triples = list(comparisons(ds, "same-photo", usable=keys))
    genuine = [(p, g) for p, g, same in triples if same]
    assert sorted(genuine) == sorted((k, k) for k in keys)
    assert all(p in keys and g in keys for p, g, _ in triples)
    with pytest.raises(FacequantError):
        list(comparisons(ds, "nonsense"))


def test_bad_inputs(tmp_path: Path, celebs13: Path):
    with pytest.raises(FacequantError, match="not found"):
        load_identity_folders(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FacequantError, match="no images"):
        load_identity_folders(tmp_path / "empty")
    bad = tmp_path / "pairs.csv"
    bad.write_text("image_a,image_b,same_identity\nperson01/img1.jpg,person02/nope.jpg,0\n")
    with pytest.raises(FacequantError, match="nope.jpg"):
        load_identity_folders(celebs13, bad)
    wrong = tmp_path / "wrong.csv"
    first = sorted((celebs13 / "person01").iterdir())[:2]
    wrong.write_text(f"image_a,image_b,same_identity\nperson01/{first[0].name},person01/{first[1].name},0\n")
    with pytest.raises(FacequantError, match="contradicts"):
        load_identity_folders(celebs13, wrong)


@pytest.mark.slow
def test_lfw_without_network_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from facequant.datasets.lfw import load_lfw

    # a dead local proxy: fails at once, downloads nothing even where a network exists
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for spec in ("lfw", "lfw-pairs"):
        with pytest.raises(FacequantError, match="could not download LFW"):
            load_lfw(spec, tmp_path)
    assert not (tmp_path / "lfw_home" / "lfw_funneled").exists()


def test_lfw_layout_and_official_pairs_are_read_as_scikit_learn_leaves_them(tmp_path: Path, celebs13: Path,
                                                                           monkeypatch: pytest.MonkeyPatch):
    """What scikit-learn's download leaves (lfw_home/lfw_funneled/<Name>/<Name>_0001.jpg and
    pairs.txt), built here from celebs13 photos: facequant reads it without downloading."""
    from facequant.datasets import lfw
    from facequant.datasets.load import load_dataset

    home = tmp_path / "sklearn"
    for name, person in (("Ann_Lee", "person01"), ("Bo_Chan", "person02")):
        folder = home / "lfw_home" / "lfw_funneled" / name
        folder.mkdir(parents=True)
        for i, photo in enumerate(sorted((celebs13 / person).iterdir())[:3], start=1):
            (folder / f"{name}_{i:04d}.jpg").write_bytes(photo.read_bytes())
    (home / "lfw_home" / "pairs.txt").write_text("1\t2\nAnn_Lee\t1\t2\nBo_Chan\t1\t3\n"
                                                 "Ann_Lee\t3\tBo_Chan\t2\nAnn_Lee\t1\tBo_Chan\t1\n")
    monkeypatch.setattr(lfw, "_download", lambda *_a: None)  # present: nothing to fetch
    people = load_dataset("lfw", cache_root=home)
    assert len(people.images) == 6 and people.identities == ["Ann_Lee", "Bo_Chan"] and people.pairs is None
    listed = load_dataset("lfw-pairs", cache_root=home)
    assert [(p.a, p.b, p.same) for p in listed.pairs] == [
        ("Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee/Ann_Lee_0002.jpg", True),
        ("Bo_Chan/Bo_Chan_0001.jpg", "Bo_Chan/Bo_Chan_0003.jpg", True),
        ("Ann_Lee/Ann_Lee_0003.jpg", "Bo_Chan/Bo_Chan_0002.jpg", False),
        ("Ann_Lee/Ann_Lee_0001.jpg", "Bo_Chan/Bo_Chan_0001.jpg", False)]
    (home / "lfw_home" / "pairs.txt").write_text("1\t1\nAnn_Lee\tone\t2\n")
    with pytest.raises(FacequantError, match=r"pairs.txt:2: 'one' is not an image number"):
        load_dataset("lfw-pairs", cache_root=home)

"""Face datasets: identity folders, labelled pairs, and LFW through scikit-learn."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facequant.errors import FacequantError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
GENUINE_MODES = ("different-photo", "same-photo")


@dataclass(frozen=True)
class FaceImage:
    """One photo and who is in it; `key` is its path relative to the dataset root."""

    key: str
    path: Path
    identity: str


@dataclass(frozen=True)
class Pair:
    """A labelled comparison of two photos (keys into the dataset)."""

    a: str
    b: str
    same: bool


@dataclass
class Dataset:
    name: str
    root: Path
    images: list[FaceImage]
    pairs: list[Pair] | None = None  # None: every ordered pair of photos is compared
    notes: list[str] = field(default_factory=list)

    def by_key(self) -> dict[str, FaceImage]:
        return {img.key: img for img in self.images}

    @property
    def identities(self) -> list[str]:
        return sorted({img.identity for img in self.images})

    def subset(self, n: int, seed: int) -> list[FaceImage]:
        """A seeded sample of n photos (all when n >= len)."""
        if n >= len(self.images):
            return list(self.images)
        order = np.random.default_rng(seed).permutation(len(self.images))[:n]
        return [self.images[i] for i in sorted(order)]


def load_identity_folders(root: Path, pairs_csv: Path | None = None) -> Dataset:
    """root/<identity>/<photo>; every photo labelled by its folder."""
    root = Path(root)
    if not root.is_dir():
        raise FacequantError(f"{root}: dataset folder not found")
    images = [
        FaceImage(key=p.relative_to(root).as_posix(), path=p, identity=p.parent.name)
        for p in sorted(root.glob("*/*"))
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    ]
    if not images:
        raise FacequantError(f"{root}: no images found in identity folders (expected {root}/<person>/<photo>.jpg)")
    dataset = Dataset(name=root.name, root=root, images=images)
    if pairs_csv is not None:
        dataset.pairs = load_pairs_csv(pairs_csv, dataset)
    counts = {ident: sum(1 for i in images if i.identity == ident) for ident in dataset.identities}
    singles = [ident for ident, n in counts.items() if n < 2]
    if singles:
        dataset.notes.append(f"{len(singles)} identities have one photo: they serve as impostors only")
    return dataset


def load_pairs_csv(path: Path, dataset: Dataset) -> list[Pair]:
    """image_a,image_b,same_identity with paths relative to the dataset root."""
    path = Path(path)
    known = dataset.by_key()
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise FacequantError(f"{path}: cannot read pairs file ({exc.strerror})") from exc
    need = {"image_a", "image_b", "same_identity"}
    if not rows or not need <= set(rows[0]):
        raise FacequantError(f"{path}: expected columns {', '.join(sorted(need))}")
    pairs = []
    for line, row in enumerate(rows, start=2):
        for col in ("image_a", "image_b"):
            if row[col] not in known:
                raise FacequantError(f"{path}:{line}: {row[col]} is not in the dataset {dataset.root}")
        same = row["same_identity"].strip().lower() in ("1", "true", "yes", "same")
        if same != (known[row["image_a"]].identity == known[row["image_b"]].identity):
            raise FacequantError(f"{path}:{line}: label same_identity={row['same_identity']} contradicts the identity folders")
        pairs.append(Pair(row["image_a"], row["image_b"], same))
    return pairs


def comparisons(dataset: Dataset, genuine_mode: str = "different-photo", usable: set[str] | None = None) -> Iterator[tuple[str, str, bool]]:
    """(probe key, gallery key, genuine) triples, both directions of every pair.

    The gallery photo is enrolled at close range, the probe is simulated at distance, so
    (a, b) and (b, a) are different measurements. With genuine_mode 'same-photo' a probe's
    genuine comparison is against its own enrolment: pure degradation, no pose change.
    """
    if genuine_mode not in GENUINE_MODES:
        raise FacequantError(f"genuine mode '{genuine_mode}': choose {' or '.join(GENUINE_MODES)}")
    ident = {img.key: img.identity for img in dataset.images}
    keys = [k for k in ident if usable is None or k in usable]
    if dataset.pairs is not None:
        impostor_pairs = [(p.a, p.b) for p in dataset.pairs if not p.same]
        genuine_pairs = [(p.a, p.b) for p in dataset.pairs if p.same]
    else:
        impostor_pairs = [(a, b) for a, b in itertools.combinations(keys, 2) if ident[a] != ident[b]]
        genuine_pairs = [(a, b) for a, b in itertools.combinations(keys, 2) if ident[a] == ident[b]]
    ok = set(keys)
    for a, b in impostor_pairs:
        if a in ok and b in ok:
            yield a, b, False
            yield b, a, False
    if genuine_mode == "same-photo":
        for k in keys:
            yield k, k, True
        return
    for a, b in genuine_pairs:
        if a in ok and b in ok:
            yield a, b, True
            yield b, a, True


def load_lfw(cache_root: Path, min_faces_per_person: int = 20, max_images: int = 500) -> Dataset:
    """LFW through scikit-learn (downloads where a network exists), written out as identity
    folders so it goes through the same face pipeline as any folder."""
    from sklearn.datasets import fetch_lfw_people

    out = Path(cache_root) / f"lfw-min{min_faces_per_person}"
    if not out.is_dir():
        try:
            lfw = fetch_lfw_people(data_home=str(Path(cache_root) / "sklearn"), min_faces_per_person=min_faces_per_person,
                                   color=True, resize=1.0, slice_=None, download_if_missing=True)
        except OSError as exc:
            raise FacequantError(f"could not download LFW through scikit-learn (no network?): {exc}") from exc
        import cv2

        tmp = out.with_suffix(".partial")
        for i, (img, target) in enumerate(zip(lfw.images[:max_images], lfw.target[:max_images], strict=True)):
            person = tmp / lfw.target_names[target].replace(" ", "_")
            person.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
            cv2.imwrite(str(person / f"{i:05d}.jpg"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        tmp.rename(out)
    return load_identity_folders(out)


def load_dataset(spec: str | Path, pairs_csv: Path | None = None, cache_root: Path | None = None) -> Dataset:
    """A folder of identity folders, or 'lfw'."""
    if str(spec) == "lfw":
        from facequant import settings

        return load_lfw(cache_root or settings.cache_dir() / "datasets")
    return load_identity_folders(Path(spec), pairs_csv)

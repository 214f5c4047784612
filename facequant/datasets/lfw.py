"""Labeled Faces in the Wild through scikit-learn, where a network exists.

scikit-learn downloads LFW once into its data home and keeps the original JPEGs there in
identity folders (lfw_home/lfw_funneled/<Name>/<Name>_0001.jpg) and the official pairs lists
beside them (pairs.txt: 10 folds x 300 same-person and 300 different-person pairs). facequant
reads those files as they are, through the same face pipeline as any folder:

    --data lfw          every photo (13,233 of 5,749 people), all-vs-all or identification
    --data lfw-pairs    the official 6,000 pairs (verification on LFW's own protocol)
"""

from __future__ import annotations

import csv
from pathlib import Path

from facequant.datasets.folders import Dataset, load_identity_folders
from facequant.errors import FacequantError

LFW_SPECS = ("lfw", "lfw-pairs")
_FOLDER = Path("lfw_home") / "lfw_funneled"
_PAIRS = Path("lfw_home") / "pairs.txt"


def _download(data_home: Path, pairs: bool) -> None:
    """Have scikit-learn fetch what is missing (a clear error without a network)."""
    from sklearn.datasets import fetch_lfw_pairs, fetch_lfw_people

    try:
        if not (data_home / _FOLDER).is_dir():
            fetch_lfw_people(data_home=str(data_home), download_if_missing=True, resize=0.1)
        if pairs and not (data_home / _PAIRS).is_file():
            fetch_lfw_pairs(data_home=str(data_home), subset="10_folds", download_if_missing=True, resize=0.1)
    except (OSError, ValueError) as exc:
        raise FacequantError(f"could not download LFW through scikit-learn (no network?): {exc}") from exc


def _image_key(name: str, number: str, line: int, path: Path) -> str:
    try:
        return f"{name}/{name}_{int(number):04d}.jpg"
    except ValueError:
        raise FacequantError(f"{path}:{line}: '{number}' is not an image number") from None


def pairs_csv_from_lfw(pairs_txt: Path, out_csv: Path) -> Path:
    """LFW's pairs.txt (name n1 n2 / name1 n1 name2 n2 lines after a 'folds pairs' header) as
    facequant's pairs CSV (image_a,image_b,same_identity), keys relative to lfw_funneled."""
    try:
        lines = pairs_txt.read_text().splitlines()
    except OSError as exc:
        raise FacequantError(f"{pairs_txt}: cannot read ({exc.strerror})") from exc
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if len(fields) == 3:
            rows.append((_image_key(fields[0], fields[1], number, pairs_txt),
                         _image_key(fields[0], fields[2], number, pairs_txt), 1))
        elif len(fields) == 4:
            rows.append((_image_key(fields[0], fields[1], number, pairs_txt),
                         _image_key(fields[2], fields[3], number, pairs_txt), 0))
        elif fields:
            raise FacequantError(f"{pairs_txt}:{number}: expected 3 or 4 fields, got {len(fields)}")
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_a", "image_b", "same_identity"])
        writer.writerows(rows)
    return out_csv


def load_lfw(spec: str, data_home: Path, pairs_csv: Path | None = None) -> Dataset:
    """`lfw` or `lfw-pairs` (LFW_SPECS) from scikit-learn's data home."""
    if spec not in LFW_SPECS:
        raise FacequantError(f"--data {spec}: choose {' or '.join(LFW_SPECS)}, or a folder")
    with_pairs = spec == "lfw-pairs"
    _download(data_home, with_pairs)
    if with_pairs:
        if pairs_csv is not None:
            raise FacequantError("--data lfw-pairs brings LFW's own pairs; give --pairs with --data lfw instead")
        pairs_csv = pairs_csv_from_lfw(data_home / _PAIRS, data_home / "facequant-lfw-pairs.csv")
    return load_identity_folders(data_home / _FOLDER, pairs_csv)

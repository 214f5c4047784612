"""Face datasets: identity folders, labelled pairs, and LFW through scikit-learn."""

from __future__ import annotations

import csv
import errno
import itertools
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facequant.errors import FacequantError
from facequant.names import display

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
    pairs_report: PairsReport | None = None  # what load_pairs_csv left out of the pairs file
    excluded: list[dict[str, str]] = field(default_factory=list)  # {"file", "reason"}: files not used

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
    """root/<identity>/<photo>; every photo labelled by its folder. What is left out (photos at
    the root or nested deeper, broken links, non-files) is listed in Dataset.excluded."""
    root = Path(root)
    if not root.is_dir():
        raise FacequantError(f"{display(root)}: dataset folder not found")
    scan = _Scan(root)
    scan.run()
    images = scan.images
    if not images:
        raise FacequantError(f"{display(root)}: no images found in identity folders (expected {display(root)}/<person>/<photo>.jpg)")
    dataset = Dataset(name=display(root.name), root=root, images=images, excluded=scan.excluded)
    if pairs_csv is not None:
        dataset.pairs = load_pairs_csv(pairs_csv, dataset)
    counts = {ident: sum(1 for i in images if i.identity == ident) for ident in dataset.identities}
    singles = [ident for ident, n in counts.items() if n < 2]
    if singles:
        dataset.notes.append(f"{len(singles)} identities have one photo: they serve as impostors only")
    return dataset


TRUE_LABELS = frozenset({"1", "true", "yes", "same"})
FALSE_LABELS = frozenset({"0", "false", "no", "different"})


@dataclass
class PairsReport:
    """What a pairs file held and what was left out of it, with the file's line numbers:
    run.json's "pairs" and its warnings, so nothing is dropped silently."""

    path: str
    rows: int = 0
    duplicate_lines: list[int] = field(default_factory=list)  # repeats an earlier pair, in either order
    self_pair_lines: list[int] = field(default_factory=list)  # a photo against itself
    unknown_lines: list[int] = field(default_factory=list)  # names a photo not in the dataset
    unknown_photos: list[str] = field(default_factory=list)

    def to_dict(self, n_used: int, no_face: list[str]) -> dict[str, object]:
        return {"file": self.path, "rows": self.rows, "used": n_used, "duplicate_lines": self.duplicate_lines,
                "self_pair_lines": self.self_pair_lines, "unknown_lines": self.unknown_lines,
                "unknown_photos": self.unknown_photos, "no_face_pairs": len(no_face), "no_face_photos": no_face}

    def warnings(self, no_face_pairs: int, no_face: list[str]) -> list[str]:
        """One sentence per kind of row left out (none when every row was used)."""
        out = []
        if self.duplicate_lines:
            out.append(f"{self.path}: {len(self.duplicate_lines)} duplicate pair(s) counted once ("
                       f"{_lines(self.duplicate_lines)}; (b, a) repeats (a, b): each pair is compared both ways)")
        if self.self_pair_lines:
            out.append(f"{self.path}: {len(self.self_pair_lines)} pair(s) compare a photo with itself, dropped "
                       f"(not a genuine comparison of two photos; {_lines(self.self_pair_lines)})")
        if self.unknown_lines:
            out.append(f"{self.path}: {len(self.unknown_lines)} pair(s) name a photo not in the dataset, dropped "
                       f"({_lines(self.unknown_lines)}; e.g. {', '.join(self.unknown_photos[:3])})")
        if no_face_pairs:
            out.append(f"{self.path}: {no_face_pairs} pair(s) name a photo without a usable face, not compared "
                       f"({', '.join(no_face[:3])}{' ...' if len(no_face) > 3 else ''}; reasons in skipped_images)")
        return out


def _lines(numbers: list[int], n: int = 5) -> str:
    """'line 4' or 'lines 3, 6, ...' (the first n)."""
    listed = ", ".join(str(x) for x in numbers[:n]) + (" ..." if len(numbers) > n else "")
    return f"line{'s' if len(numbers) > 1 else ''} {listed}"


def _label(value: str, path: Path, line: int) -> bool:
    text = value.strip().lower()
    if text in TRUE_LABELS or text in FALSE_LABELS:
        return text in TRUE_LABELS
    raise FacequantError(f"{path}:{line}: same_identity '{value}' is not a label (use 1/0, true/false, yes/no "
                         "or same/different)")


def _read_pair_rows(path: Path) -> list[tuple[int, dict[str, str | None]]]:
    """(line number, row) of a pairs CSV; a UTF-8 BOM (as Excel writes) is accepted."""
    need = {"image_a", "image_b", "same_identity"}
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not need <= {f.strip() for f in reader.fieldnames}:
                raise FacequantError(f"{path}: expected columns {', '.join(sorted(need))}")
            reader.fieldnames = [f.strip() for f in reader.fieldnames]
            return [(reader.line_num, row) for row in reader]
    except OSError as exc:
        raise FacequantError(f"{path}: cannot read pairs file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise FacequantError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except csv.Error as exc:
        raise FacequantError(f"{path}: not a readable CSV ({exc})") from exc


def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES


def _link_problem(p: Path) -> str | None:
    """Why a symbolic link cannot be followed, or None (not a link, or a good one)."""
    if not p.is_symlink():
        return None
    try:
        p.stat()
    except OSError as exc:
        return "symlink loop" if exc.errno == errno.ELOOP else f"broken link ({exc.strerror or exc})"
    return None


def _not_a_file(p: Path) -> str | None:
    """What p is when it is not a regular file (it is reached through any link)."""
    mode = p.stat().st_mode
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return None if stat.S_ISREG(mode) else next((k for test, k in kinds.items() if test(mode)), "not a file")


class _Scan:
    """One pass over root/<identity>/<photo>: the photos, and everything left out with why."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images: list[FaceImage] = []
        self.excluded: list[dict[str, str]] = []
        self._keys: dict[str, Path] = {}

    def leave_out(self, p: Path, reason: str) -> None:
        self.excluded.append({"file": display(p.relative_to(self.root).as_posix()), "reason": reason})

    def run(self) -> None:
        for entry in self._list(self.root):
            if entry.name.startswith(".") and not _is_image_name(entry):
                continue  # .git, .DS_Store and friends: never photos nor people
            problem = _link_problem(entry)
            if problem:
                self.leave_out(entry, problem)
            elif entry.name.startswith("."):
                self.leave_out(entry, "hidden (the name starts with '.')")
            elif entry.is_dir():
                if entry.is_symlink() and self.root.resolve().is_relative_to(entry.resolve()):
                    self.leave_out(entry, "symlink loop (links to the dataset folder or above it)")
                else:
                    self._identity(entry)
            elif _is_image_name(entry):
                self.leave_out(entry, "photo at the dataset root: not in an identity folder (root/<person>/<photo>)")

    def _list(self, folder: Path) -> list[Path]:
        try:
            return sorted(folder.iterdir())
        except OSError as exc:
            if folder != self.root:
                self.leave_out(folder, f"cannot list folder ({exc.strerror or exc})")
                return []
            raise FacequantError(f"{display(folder)}: cannot list dataset folder ({exc.strerror or exc})") from exc

    def _identity(self, folder: Path) -> None:
        for p in self._list(folder):
            if p.name.startswith(".") and not _is_image_name(p):
                continue  # .DS_Store and friends: never photos
            problem = _link_problem(p)
            if problem:
                self.leave_out(p, problem)
            elif p.name.startswith("."):
                self.leave_out(p, "hidden (the name starts with '.')")
            elif p.is_dir():
                if _is_image_name(p):
                    self.leave_out(p, "a folder, not a photo")
                self._nested(p, folder.name)
            elif not _is_image_name(p):
                self.leave_out(p, f"not an image type (suffix {p.suffix or 'none'!r}; read: "
                                  f"{', '.join(sorted(IMAGE_SUFFIXES))})")
            elif (kind := _not_a_file(p)) is not None:
                self.leave_out(p, f"not a regular file ({kind})")
            else:
                self._add(p)

    def _nested(self, folder: Path, identity: str) -> None:
        """Photos below an identity folder's own level are not read; each is listed."""
        if folder.is_symlink():
            self.leave_out(folder, "linked folder below an identity folder: not followed")
            return
        for top, dirs, files in os.walk(folder, followlinks=False, onerror=lambda e: None):
            for name in sorted(files) + sorted(d for d in dirs if Path(top, d).is_symlink()):
                if _is_image_name(Path(name)):
                    self.leave_out(Path(top, name), f"nested below the identity folder {display(identity)!r}: "
                                                    "only <person>/<photo> is read")

    def _add(self, p: Path) -> None:
        key = display(p.relative_to(self.root).as_posix())
        if key in self._keys:  # a name with a literal '\xNN' beside one with that raw byte
            self.leave_out(p, f"its name, with undecodable bytes shown as \\xNN, is the same as another file's ({key})")
            return
        self._keys[key] = p
        self.images.append(FaceImage(key=key, path=p, identity=display(p.parent.name)))


def load_pairs_csv(path: Path, dataset: Dataset) -> list[Pair]:
    """image_a,image_b,same_identity with paths relative to the dataset root.

    A row with a missing field, a label that is not one (1/0, true/false, yes/no,
    same/different) or that contradicts the identity folders is an error naming the line.
    Left out, and recorded in dataset.pairs_report: a pair repeated in either order (each pair
    is compared both ways, so (b, a) is (a, b) again), a photo paired with itself, and a pair
    naming a photo not in the dataset. No pair left is an error.
    """
    path = Path(path)
    known = dataset.by_key()
    report = PairsReport(str(path))
    pairs: list[Pair] = []
    seen: set[frozenset[str]] = set()
    for line, row in _read_pair_rows(path):
        report.rows += 1
        values = {col: (row.get(col) or "").strip() for col in ("image_a", "image_b", "same_identity")}
        for col, value in values.items():
            if not value:
                raise FacequantError(f"{path}:{line}: missing {col}")
        a, b = values["image_a"], values["image_b"]
        same = _label(values["same_identity"], path, line)
        missing = [k for k in (a, b) if k not in known]
        if missing:
            report.unknown_lines.append(line)
            report.unknown_photos += [k for k in missing if k not in report.unknown_photos]
            continue
        if same != (known[a].identity == known[b].identity):
            raise FacequantError(f"{path}:{line}: label same_identity={values['same_identity']} contradicts the "
                                 "identity folders")
        if a == b:
            report.self_pair_lines.append(line)
        elif frozenset((a, b)) in seen:
            report.duplicate_lines.append(line)
        else:
            seen.add(frozenset((a, b)))
            pairs.append(Pair(a, b, same))
    if not pairs:
        why = "; ".join(w.split(": ", 1)[1] for w in report.warnings(0, []))
        raise FacequantError(f"{path}: none of its {report.rows} row(s) pairs two different photos of the dataset "
                             f"{dataset.root}" + (f" ({why})" if why else ""))
    dataset.pairs_report = report
    return pairs


def pairs_summary(dataset: Dataset, usable: set[str]) -> tuple[dict[str, object], list[str]] | None:
    """run.json's "pairs" and its warnings: what the pairs file held, what was left out and
    why, including pairs whose photo gave no usable face. None without a pairs file."""
    report = dataset.pairs_report
    if dataset.pairs is None or report is None:
        return None
    no_face = sorted({k for p in dataset.pairs for k in (p.a, p.b) if k not in usable})
    n_no_face = sum(1 for p in dataset.pairs if p.a not in usable or p.b not in usable)
    return (report.to_dict(len(dataset.pairs) - n_no_face, no_face), report.warnings(n_no_face, no_face))


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

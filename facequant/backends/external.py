"""Hardware in the loop: export a sweep's exact model inputs, bring back a device's embeddings.

`facequant export-probes --out DIR` writes every crop a sweep feeds the backends:

    DIR/manifest.csv     one row per crop: id, image, identity, kind (enrol|probe), distance_m
                         (empty for enrol), face_px, simulated, npy, row, png
    DIR/manifest.json    model path + sha256, spec (mean, std, channel order, layout NCHW), camera,
                         config, the id order of each tensor file, a README text
    DIR/README.txt       the same README text
    DIR/enrol.npy        model input of the enrolment (gallery) set, float32 NCHW [N, 3, H, W]
    DIR/probe_<d>m.npy   ... of the probes at distance d (e.g. probe_1m.npy, probe_0.5m.npy)
    DIR/png/<set>/NNNN_<image>.png   the same crops, RGB uint8 at the model input size
                                     (sorted file names follow the tensor's row order)

A probe id is `<image key>@enrol` or `<image key>@<distance>m` (facequant.sweep.engine.probe_id).

The device run comes back as the backend `external:NAME=PATH` (NAME labels it in the tables).
PATH is one of these layouts, holding *raw* embeddings (before L2 normalisation), D = the
model's embedding size:

  1. a folder with the export's manifest.csv and, per tensor file run, `<set>.emb.npy` of shape
     [N, D] in that tensor's row order (enrol.npy -> enrol.emb.npy); tensors not run are only
     an error if the sweep needs their ids;
  2. a folder with the export's manifest.csv and `embeddings.npy` of shape [rows of
     manifest.csv, D] in manifest.csv order;
  3. a CSV file `id,e0,...,e{D-1}`, one row per id (a header row starting with `id` is optional);
  4. an .npz file with arrays `ids` (strings) and `embeddings` [N, D].

In the folder layouts, extra singleton axes ([N, 1, 1, D]) are dropped and any numeric dtype is
read as float32; a manifest.json beside manifest.csv is checked against the sweep's model (same
file hash and preprocessing). Ids in the file that the sweep does not ask for are fine (counted
in describe()). Every problem is a one-line FacequantError naming the file.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from facequant.backends.base import FLOAT_BACKENDS, Backend
from facequant.backends.quantize.recipes import RECIPES
from facequant.errors import FacequantError
from facequant.models.files import file_sha256, model_sha256
from facequant.models.spec import ModelSpec, channel_values

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
README_TXT = "README.txt"
EMBEDDINGS_NPY = "embeddings.npy"
EMB_SUFFIX = ".emb.npy"
MANIFEST_COLUMNS = ["id", "image", "identity", "kind", "distance_m", "face_px", "simulated", "npy", "row", "png"]
FORMAT = "facequant-probes/1"

LAYOUTS_HELP = """\
external:NAME=PATH brings back embeddings a device computed on `facequant export-probes` tensors
(raw, before L2 normalisation; D = the model's embedding size). PATH is one of:
  1. a folder with the export's manifest.csv and <set>.emb.npy [N, D] per tensor file run,
     in that tensor's row order (enrol.npy -> enrol.emb.npy, probe_1m.npy -> probe_1m.emb.npy);
  2. a folder with the export's manifest.csv and embeddings.npy [rows of manifest.csv, D],
     in manifest.csv order;
  3. a CSV file id,e0,...,e{D-1} keyed by manifest.csv's id column (header row optional);
  4. an .npz file with arrays ids (strings) and embeddings [N, D]."""

def tensor_name(distance_m: float | None) -> str:
    """File stem of one exported set: 'enrol' or 'probe_<d>m' (formatted like probe ids)."""
    return "enrol" if distance_m is None else f"probe_{distance_m:g}m"


# --------------------------------------------------------------------------- external backend


def _first(items: Sequence[str], n: int = 3) -> str:
    return ", ".join(items[:n])


def _as_matrix(raw: np.ndarray, n: int, source: Path) -> np.ndarray:
    """(N, D) float32 from a numeric array of N rows; singleton axes ([N, 1, 1, D]) dropped."""
    if raw.dtype.kind not in "fiu":
        raise FacequantError(f"{source}: embeddings are {raw.dtype}, not numbers")
    if raw.ndim < 2 or raw.shape[0] != n:
        raise FacequantError(f"{source}: shape {list(raw.shape)}, expected [{n}, D]")
    extra = [s for s in raw.shape[1:] if s != 1]
    if len(extra) > 1:
        raise FacequantError(f"{source}: shape {list(raw.shape)}, expected [{n}, D]")
    return raw.reshape(n, -1).astype(np.float32)


def _check_rows(source: Path, ids: Sequence[str], emb: np.ndarray, dim: int) -> None:
    """The checks every layout shares: embedding size, no NaN/inf rows."""
    if emb.shape[1] != dim:
        raise FacequantError(f"{source}: embeddings have {emb.shape[1]} values per row; the model's embedding size is {dim}")
    bad = np.flatnonzero(~np.all(np.isfinite(emb), axis=1))
    if len(bad):
        raise FacequantError(f"{source}: {len(bad)} row(s) hold NaN or infinite values "
                             f"(first 3 ids: {_first([ids[int(i)] for i in bad])})")


def _check_unique(source: Path, ids: Sequence[str]) -> None:
    dups = [i for i, c in Counter(ids).items() if c > 1]
    if dups:
        raise FacequantError(f"{source}: {len(dups)} duplicate id(s) (first 3: {_first(dups)})")


def _load_npy(path: Path) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise FacequantError(f"{path}: cannot read as .npy ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    if not isinstance(data, np.ndarray):  # an .npz renamed .npy
        data.close()
        raise FacequantError(f"{path}: cannot read as .npy (it is an .npz archive)")
    return data


def _load_csv(path: Path) -> tuple[list[str], np.ndarray]:
    ids: list[str] = []
    values: list[np.ndarray] = []
    width: int | None = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: a spreadsheet's BOM
            for lineno, row in enumerate(csv.reader(f), 1):
                if not any(cell.strip() for cell in row):
                    continue
                if width is None and not ids and row[0].strip().lower() == "id":
                    continue  # the optional header row
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    raise FacequantError(f"{path}: line {lineno} has {len(row)} columns, the first row {width}")
                if not row[0].strip():
                    raise FacequantError(f"{path}: line {lineno} has an empty id")
                try:
                    values.append(np.array(row[1:], dtype=np.float64))
                except ValueError:
                    raise FacequantError(f"{path}: not a CSV of id,e0,...,eD-1 (line {lineno} holds text where numbers belong)") from None
                ids.append(row[0].strip())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FacequantError(f"{path}: cannot read as CSV ({exc})") from exc
    if not ids or width is None or width < 2:
        raise FacequantError(f"{path}: no rows of id,e0,...,eD-1")
    return ids, np.stack(values).astype(np.float32)


def _load_npz(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.keys())
            if "ids" not in keys or "embeddings" not in keys:
                raise FacequantError(f"{path}: an .npz needs arrays 'ids' and 'embeddings', found: {', '.join(keys) or 'none'}")
            raw_ids, raw = data["ids"], data["embeddings"]
    except FacequantError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, pickled object arrays (ValueError), OSError, ...
        raise FacequantError(f"{path}: cannot read as .npz ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    if raw_ids.dtype.kind not in "US" or raw_ids.ndim != 1:
        raise FacequantError(f"{path}: 'ids' must be a 1-D string array (np.array(ids, dtype=str)), got {raw_ids.dtype} {list(raw_ids.shape)}")
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in raw_ids.tolist()]
    return ids, _as_matrix(raw, len(ids), path)


def _check_manifest_model(manifest_json: Path, spec: ModelSpec) -> None:
    """A folder's manifest.json must describe the sweep's model: the device ran those inputs."""
    try:
        manifest = json.loads(manifest_json.read_text())
        model = manifest["model"]
        sha, exported = str(model["sha256"]), model["spec"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FacequantError(f"{manifest_json}: not a facequant export manifest ({exc})") from exc
    if Path(spec.path).is_file() and sha != model_sha256(spec.path):
        raise FacequantError(f"{manifest_json}: exported for model sha256 {sha[:12]}, the sweep's model "
                             f"{spec.path} is another file; export again with the sweep's model")
    # Per-channel mean / std are lists in the manifest (ModelSpec.to_dict), scalars stay numbers.
    theirs = dict(exported)
    for key in ("mean", "std"):
        try:
            theirs[key] = channel_values(exported.get(key))
        except ValueError:
            pass  # not numbers: reported as different below
    ours = {"input_size": list(spec.input_size), "mean": channel_values(spec.mean), "std": channel_values(spec.std),
            "channel_order": spec.channel_order}
    differ = [f"{k} {exported.get(k)!r} vs {spec.to_dict().get(k, v)!r}" for k, v in ours.items() if theirs.get(k) != v]
    if differ:
        raise FacequantError(f"{manifest_json}: exported with other preprocessing than the sweep's ({'; '.join(differ)})")


class ExternalBackend(Backend):
    """Embeddings computed elsewhere (a device run of export-probes), looked up by probe id.

    It cannot embed new crops: the sweep asks embed_probes(crops, ids) and gets the rows of the
    ids of the crops it would have fed, so the device saw exactly the sweep's inputs."""

    def __init__(self, name: str, path: Path, layout: str, ids: list[str], embeddings: np.ndarray,
                 files: list[Path], absent: dict[str, Path] | None = None) -> None:
        self.name = name
        self.path = path
        self.model_path = None  # run elsewhere: no model file to cost here
        self.layout = layout
        self.files = files
        self._ids = ids
        self._index = {i: r for r, i in enumerate(ids)}
        self._emb = embeddings
        self._absent = absent or {}  # id -> the .emb.npy that would hold it (folder layout 1)
        self._used: set[str] = set()

    @classmethod
    def from_spec(cls, spec_text: str, model_spec: ModelSpec) -> ExternalBackend:
        """`external:NAME=PATH` -> a loaded, validated backend (see the module docstring)."""
        kind, _, rest = spec_text.partition(":")
        name, sep, path_text = rest.partition("=")
        name, path_text = name.strip(), path_text.strip()
        if kind != "external" or not sep or not path_text or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise FacequantError(f"backend '{spec_text}': expected external:NAME=PATH (NAME: letters, digits, . _ -)")
        if name in (*FLOAT_BACKENDS, *RECIPES):  # the label must not pass for a built-in backend in the tables
            raise FacequantError(f"backend '{spec_text}': NAME '{name}' is a built-in backend; choose another label")
        return cls.load(name, Path(path_text).expanduser(), model_spec)

    @classmethod
    def load(cls, name: str, path: Path, model_spec: ModelSpec) -> ExternalBackend:
        dim = model_spec.embedding_dim
        if path.is_dir():
            return cls._load_folder(name, path, model_spec)
        if not path.is_file():
            raise FacequantError(f"{path}: external embeddings not found")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            ids, emb = _load_csv(path)
        elif suffix == ".npz":
            ids, emb = _load_npz(path)
        elif suffix == ".npy":
            raise FacequantError(f"{path}: a bare .npy holds no ids; put it beside the export's {MANIFEST_CSV} "
                                 f"as <set>{EMB_SUFFIX} or {EMBEDDINGS_NPY} and give the folder")
        else:
            raise FacequantError(f"{path}: unsupported file type '{path.suffix}'; give a .csv, an .npz or an export folder")
        _check_unique(path, ids)
        _check_rows(path, ids, emb, dim)
        return cls(name, path, suffix[1:], ids, emb, [path])

    @classmethod
    def _load_folder(cls, name: str, folder: Path, model_spec: ModelSpec) -> ExternalBackend:
        manifest_csv = folder / MANIFEST_CSV
        if not manifest_csv.is_file():
            raise FacequantError(f"{manifest_csv}: missing file (a folder of device embeddings needs the export's manifest)")
        try:
            manifest = pd.read_csv(manifest_csv, dtype={"id": str, "npy": str}, keep_default_na=False, encoding="utf-8-sig")
            manifest = manifest[["id", "npy", "row"]].astype({"row": int})
        except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
            raise FacequantError(f"{manifest_csv}: not an export manifest with id, npy, row columns ({exc})") from exc
        _check_unique(manifest_csv, manifest.id.tolist())
        if (folder / MANIFEST_JSON).is_file():
            _check_manifest_model(folder / MANIFEST_JSON, model_spec)
        dim = model_spec.embedding_dim
        emb_files = sorted(folder.glob(f"*{EMB_SUFFIX}"))
        whole = folder / EMBEDDINGS_NPY
        if emb_files and whole.exists():
            raise FacequantError(f"{folder}: holds both {EMBEDDINGS_NPY} and *{EMB_SUFFIX}; keep one layout")
        if whole.exists():  # layout 2: every row of manifest.csv, in its order
            ids = manifest.id.tolist()
            emb = _as_matrix(_load_npy(whole), len(ids), whole)
            _check_rows(whole, ids, emb, dim)
            return cls(name, folder, EMBEDDINGS_NPY, ids, emb, [manifest_csv, whole])
        if not emb_files:
            raise FacequantError(f"{folder}: no embeddings found (expected <set>{EMB_SUFFIX} files, e.g. "
                                 f"enrol{EMB_SUFFIX}, or {EMBEDDINGS_NPY} beside {MANIFEST_CSV})")
        # Layout 1: one file per tensor run, rows in that tensor's order.
        by_tensor = {npy: rows.sort_values("row") for npy, rows in manifest.groupby("npy", sort=False)}
        ids = []
        parts: list[np.ndarray] = []
        for f in emb_files:
            tensor = f.name[: -len(EMB_SUFFIX)] + ".npy"
            rows = by_tensor.get(tensor)
            if rows is None:
                raise FacequantError(f"{f}: {MANIFEST_CSV} lists no tensor {tensor}")
            if rows.row.tolist() != list(range(len(rows))):
                raise FacequantError(f"{manifest_csv}: rows of {tensor} are not 0..{len(rows) - 1}")
            part_ids = rows.id.tolist()
            raw = _load_npy(f)
            if raw.ndim >= 1 and raw.shape[0] != len(part_ids):
                raise FacequantError(f"{f}: {raw.shape[0]} rows, {MANIFEST_CSV} lists {len(part_ids)} for {tensor}")
            emb = _as_matrix(raw, len(part_ids), f)
            _check_rows(f, part_ids, emb, dim)
            ids += part_ids
            parts.append(emb)
        done = {f.name for f in emb_files}
        absent = {i: folder / (npy[: -len(".npy")] + EMB_SUFFIX)
                  for npy, rows in by_tensor.items() if npy[: -len(".npy")] + EMB_SUFFIX not in done
                  for i in rows.id}
        return cls(name, folder, f"<set>{EMB_SUFFIX}", ids, np.concatenate(parts), [manifest_csv, *emb_files], absent)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Crops not exported cannot be embedded here (validate-sim's captures, say): refuse clearly."""
        raise FacequantError(f"backend external:{self.name} ({self.path}): embeddings exist only for exported "
                             "probe ids; it can serve a sweep, not new crops")

    def embed_probes(self, crops: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """Raw (N, D) float32 embeddings in the order of ids; every id must be present."""
        missing = [i for i in ids if i not in self._index]
        if missing:
            if all(i in self._absent for i in missing):  # exported, but that tensor was not run
                files = sorted({str(self._absent[i]) for i in missing})
                more = f" (and {len(files) - 1} more)" if len(files) > 1 else ""
                raise FacequantError(f"{files[0]}{more}: missing file ({len(missing)} id(s) the sweep needs, "
                                     f"first 3: {_first(missing)})")
            raise FacequantError(f"{self.path}: {len(missing)} id(s) the sweep needs are missing (first 3: "
                                 f"{_first(missing)}); export and sweep must use the same photos and distances")
        self._used.update(ids)
        return self._emb[[self._index[i] for i in ids]].copy()

    def describe(self) -> dict[str, object]:
        norms = np.linalg.norm(self._emb, axis=1)
        info: dict[str, object] = {
            "name": self.name, "kind": "external", "path": str(self.path), "layout": self.layout,
            "files": [{"path": str(f), "sha256": file_sha256(f)} for f in self.files],
            "ids_in_file": len(self._ids), "ids_used": len(self._used), "extra_ids": len(self._ids) - len(self._used),
        }
        if len(norms) and np.allclose(norms, 1.0, atol=1e-3):
            info["note"] = "embeddings are already L2-normalised: pre-norm is 1 for every probe and says nothing"
        return info

"""A model's files and their identity: every file it reads (external data included), hashed; loading a graph."""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from pathlib import Path

import onnx

from facequant.errors import BadModelError

#: insightface model packs that hold an ArcFace recognition model.
INSIGHTFACE_PACKS: tuple[str, ...] = ("buffalo_l", "buffalo_s", "antelopev2")

#: Name of the symbolic batch dimension in normalized models.
BATCH_PARAM = "batch"

#: sha256 of each file in faceplugin-face-recognition-js@0.0.1 package/model/ (SOURCE.md).
FACEPLUGIN_SHA256: dict[str, str] = {
    "fr_feature.onnx": "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
    "fr_detect.onnx": "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
    "fr_landmark.onnx": "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
}

# Keys normalize_model writes into metadata_props, so that inspecting the normalized copy
# gives the same preprocessing as the source (its sha256 and node names changed).
META_SOURCE_SHA = "facequant.source_sha256"
META_PREPROCESS = "facequant.preprocess"
META_VERSION = "facequant.normalize_version"
META_L2_CUT = "facequant.l2_cut"

_RACY_NS = 2_000_000_000


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):  # models can be hundreds of MB
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _file_sha256_cached(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    return _sha256(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's content, memoised on (path, size, mtime, ctime, inode): models
    are hashed once. Any rewrite changes ctime (which no one can set back) or the inode, and
    a file changed in the last 2 s is always read again."""
    st = os.stat(path)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_NS:
        return _sha256(os.fspath(path))
    return _file_sha256_cached(os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def model_files(path: str | os.PathLike[str]) -> list[Path]:
    """The model file and every external-data file it references: every byte the model reads.
    A missing external file is a one-line error naming it."""
    from onnx import external_data_helper

    path = Path(path).expanduser()
    model = load_onnx(path, external_data=False)
    files = [path]
    # onnx's own walk over initializers, Constant attributes and subgraphs
    for tensor in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(tensor):
            location = path.parent / external_data_helper.ExternalDataInfo(tensor).location
            if location not in files:
                files.append(location)
    for file in files[1:]:
        if not file.is_file():
            raise BadModelError(file, f"external data file of {path.name} not found")
    return files


def model_sha256(path: str | os.PathLike[str]) -> str:
    """Identity of a model for caches and run.json: the file's sha256 when it holds all its
    weights (so it matches published checksums), else a sha256 over the file's and each
    external-data file's hash."""
    files = model_files(path)
    if len(files) == 1:
        return file_sha256(files[0])
    h = hashlib.sha256()
    for file in files:
        h.update(f"{file.relative_to(files[0].parent).as_posix()}\0{file_sha256(file)}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- inspect


def load_graph(path: str | Path) -> onnx.ModelProto:
    """A model file's graph without its external data (structure and small constants), with
    facequant's errors for a missing or invalid file."""
    return load_onnx(Path(path).expanduser(), external_data=False)


def load_onnx(path: Path, external_data: bool) -> onnx.ModelProto:
    """onnx.load with facequant errors: missing file, not an ONNX protobuf."""
    if not path.is_file():
        raise BadModelError(path, "model file not found")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as e:  # protobuf DecodeError, external-data errors, ...
        raise BadModelError(path, f"not a valid ONNX protobuf ({one_line(e)})") from e
    # Arbitrary bytes sometimes decode as an (almost) empty ModelProto: treat that as invalid.
    if model.ir_version <= 0 or not model.HasField("graph") or len(model.graph.node) == 0:
        raise BadModelError(path, "not a valid ONNX protobuf (no graph)")
    return model


def one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."



"""Where models come from: a path, 'faceplugin' (the shared folder, or npm pack, sha256-verified), or an insightface pack."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from facequant import cache as cache_entry
from facequant import settings
from facequant.errors import FacequantError
from facequant.models.files import FACEPLUGIN_SHA256, INSIGHTFACE_PACKS, file_sha256, one_line
from facequant.models.spec import inspect_model

#: The npm package that ships the faceplugin models, and the sha256 of its tarball.
FACEPLUGIN_NPM_SPEC = "faceplugin-face-recognition-js@0.0.1"
FACEPLUGIN_TGZ_SHA256 = "7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba"

_NPM_TIMEOUT_S = 180
_PROBE_TIMEOUT_S = 5.0

# --------------------------------------------------------------------------- resolve


def results_stem(model: str) -> str:
    """How a results folder is named after its model (runs/<stem>-<time>): the model file's
    stem, as every table and title names the model ('faceplugin' is fr_feature.onnx)."""
    if model.strip().lower() == "faceplugin":
        return settings.default_model_path().stem
    return Path(model).stem


def split_models(value: str) -> list[str]:
    """--model's text as a list of models: one path, name or pack, or several joined by ','.
    A path that exists is one model even when its name holds a comma."""
    text = str(value)
    if "," not in text or Path(text).expanduser().exists():
        return [text]
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise FacequantError(f"--model: expected comma-separated models, got {value!r} (an empty item)")
    twice = [m for m, n in Counter(items).items() if n > 1]
    if twice:
        raise FacequantError(f"--model: {twice[0]} is listed twice")
    return items


def resolve_model(name_or_path: str, insightface_root: str | Path = "~/.insightface") -> Path:
    """A model file from a path, `faceplugin`, or an insightface pack name."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        return _recognition_model(p)  # e.g. ~/.insightface/models/buffalo_l itself

    name = name_or_path.strip().lower()
    if name == "faceplugin":
        return faceplugin_file("fr_feature.onnx")
    if name in INSIGHTFACE_PACKS:
        return _insightface_pack(name, Path(insightface_root).expanduser())

    if "," in name_or_path:
        # several models compare in one `facequant sweep`; every other command takes one
        raise FacequantError(f"model '{name_or_path}': several models are compared by `facequant sweep` only; "
                             "this command takes one model")
    known = ", ".join(("faceplugin", *INSIGHTFACE_PACKS))
    raise FacequantError(f"model '{name_or_path}' is neither a file nor a known name ({known})")


def _insightface_pack(pack: str, root: Path) -> Path:
    """The recognition model of an insightface pack, downloaded by insightface if missing."""
    pack_dir = root / "models" / pack
    if not pack_dir.is_dir():
        _download_pack(pack, root, pack_dir)
    return _recognition_model(pack_dir)


def _download_pack(pack: str, root: Path, pack_dir: Path) -> None:
    from insightface.utils import storage

    advice = (
        f"could not download insightface pack '{pack}' (no network?): "
        f"put it in {pack_dir} or pass a path"
    )
    # insightface's downloader calls requests.get without a timeout, so it can hang on a
    # network that drops packets: probe the host with a short timeout first.
    base = getattr(storage, "MODEL_ZOO_RELEASE_DOWNLOAD_URL", "https://github.com/")
    host = urlparse(base).hostname or "github.com"
    try:
        socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise FacequantError(f"{advice} [{one_line(e, 120)}]") from e
    try:
        storage.ensure_available("models", pack, root=str(root))
    except (OSError, RuntimeError, zipfile.BadZipFile) as e:  # requests errors are OSErrors
        # insightface creates the folder before extracting: an empty one would make
        # later calls think the pack is installed.
        if pack_dir.is_dir() and not any(pack_dir.iterdir()):
            pack_dir.rmdir()
        raise FacequantError(f"{advice} [{one_line(e, 120)}]") from e


def _recognition_model(folder: Path) -> Path:
    """The ArcFace model in a pack folder: 112x112 input and a [batch, D] output."""
    # rglob: antelopev2.zip extracts into a nested antelopev2/ folder.
    found = []
    for f in sorted(folder.rglob("*.onnx")):
        try:
            spec = inspect_model(f)
        except FacequantError:
            continue  # detector (many outputs) and the like
        # Landmark / attribute models also have rank-2 outputs, but 192x192 or 96x96 inputs.
        if spec.input_size == (112, 112):
            found.append(f)
    if not found:
        raise FacequantError(
            f"no recognition model (112x112 input, [batch, D] output) in {folder}: pass a model path"
        )
    if len(found) > 1:  # which one is meant is not facequant's to guess (the first by name was taken before)
        names = ", ".join(f.relative_to(folder).as_posix() for f in found[:4]) + (", ..." if len(found) > 4 else "")
        raise FacequantError(f"{folder}: {len(found)} recognition models ({names}); give the file itself as --model")
    return found[0]


# --------------------------------------------------------------------------- faceplugin


def faceplugin_file(name: str) -> Path:
    """One of the faceplugin models: from the shared folder when present, else the verified
    copy in the cache, else pulled with npm now."""
    if name not in FACEPLUGIN_SHA256:
        raise FacequantError(f"'{name}' is not a faceplugin model ({', '.join(FACEPLUGIN_SHA256)})")
    shared = settings.default_model_path().parent / name
    if shared.is_file():
        return shared
    dest = faceplugin_cache()
    cached = dest / name
    if not (cached.is_file() and file_sha256(cached) == FACEPLUGIN_SHA256[name]):
        pull_faceplugin(dest)
    return cached


def faceplugin_cache() -> Path:
    """The cache's copy of the faceplugin models, with any file that fails its sha256 removed
    (with a warning) so that it is fetched again."""
    dest = settings.cache_dir() / "faceplugin"
    for fname, sha in FACEPLUGIN_SHA256.items():
        if (dest / fname).is_file() and file_sha256(dest / fname) != sha:
            cache_entry.warn(f"{dest / fname}: cached faceplugin model does not match its sha256; fetching it again")
            (dest / fname).unlink()
    return dest


def pull_faceplugin(dest: Path) -> Path:
    """Fetch the faceplugin models with `npm pack`, verify sha256, return fr_feature.onnx.
    Refuses, before fetching, a `dest` holding another file under one of the three names."""
    dest = Path(dest).expanduser()
    for fname, sha in FACEPLUGIN_SHA256.items():
        existing = dest / fname
        if os.path.lexists(existing) and not (existing.is_file() and file_sha256(existing) == sha):
            raise FacequantError(f"{existing}: exists and is not faceplugin's {fname}; refusing to overwrite it "
                                 "(choose another --dest)")
    npm = shutil.which("npm")
    if npm is None:
        raise FacequantError(
            f"npm not found: install Node.js to fetch {FACEPLUGIN_NPM_SPEC}, "
            "or pass the path of an ArcFace-style ONNX model"
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=dest) as tmp_s:
        tmp = Path(tmp_s)
        cmd = [npm, "pack", FACEPLUGIN_NPM_SPEC, "--pack-destination", str(tmp)]
        try:
            proc = subprocess.run(
                cmd, cwd=tmp, capture_output=True, text=True, timeout=_NPM_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise FacequantError(
                f"npm pack {FACEPLUGIN_NPM_SPEC} timed out after {_NPM_TIMEOUT_S} s"
            ) from e
        tgzs = sorted(tmp.glob("*.tgz"))
        if proc.returncode != 0 or len(tgzs) != 1:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            last = err[-1] if err else f"exit code {proc.returncode}"
            raise FacequantError(f"npm pack {FACEPLUGIN_NPM_SPEC} failed: {last}")
        tgz = tgzs[0]
        got = file_sha256(tgz)
        if got != FACEPLUGIN_TGZ_SHA256:
            raise FacequantError(
                f"{tgz.name}: sha256 {got} does not match the expected {FACEPLUGIN_TGZ_SHA256}"
            )

        staged = tmp / "model"
        staged.mkdir()
        _extract_members(tgz, staged, FACEPLUGIN_SHA256)
        # All three verified: only now move them in, so dest never holds a bad file.
        for fname in FACEPLUGIN_SHA256:
            os.replace(staged / fname, dest / fname)
    return dest / "fr_feature.onnx"


def _extract_members(tgz: Path, out: Path, expected: Mapping[str, str]) -> None:
    """Copy package/model/<name> for each expected name out of the tarball, checking sha256.

    Safe extraction: only the named regular-file members are read, and written under names
    chosen here, so member paths and links in the archive can't escape `out`.
    """
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for fname, sha in expected.items():
                member_name = f"package/model/{fname}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise FacequantError(f"{tgz.name}: {member_name} is missing") from None
                if not member.isfile():
                    raise FacequantError(f"{tgz.name}: {member_name} is not a regular file")
                src = tar.extractfile(member)
                if src is None:
                    raise FacequantError(f"{tgz.name}: cannot read {member_name}")
                h = hashlib.sha256()
                with src, open(out / fname, "wb") as dst:
                    for chunk in _chunks(src):
                        h.update(chunk)
                        dst.write(chunk)
                if h.hexdigest() != sha:
                    raise FacequantError(
                        f"{fname}: sha256 {h.hexdigest()} does not match the expected {sha}"
                    )
    except (tarfile.TarError, OSError) as e:
        raise FacequantError(f"{tgz.name}: cannot extract ({one_line(e)})") from e


def _chunks(f: Any, size: int = 1 << 20) -> Iterable[bytes]:
    return iter(lambda: f.read(size), b"")

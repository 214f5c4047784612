"""Cached model artefacts (normalized and quantized models, power-of-two moves lists) are
sealed with a sidecar `<file>.json`: the artefact's sha256 and size, and the key it was built
from. An entry is used only when both still match; a corrupt, truncated, swapped or foreign
entry is removed with a one-line warning and rebuilt, never trusted and never fatal."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from facequant import __version__

SIDECAR_SUFFIX = ".json"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sha256_file(path: Path) -> str:
    """sha256 of the bytes on disk now (no memo: this is the check against tampering)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def warn(message: str) -> None:
    print(f"facequant: warning: {message}", file=sys.stderr)


def commit(built: Path, path: Path, key: Mapping[str, object]) -> Path:
    """Move a finished artefact (`built`, on the same file system) to `path` and record its
    hash and key beside it. Both files are written whole, then renamed: a crash leaves an
    entry without a record, which is rebuilt."""
    record = {"sha256": sha256_file(built), "size": built.stat().st_size, "key": dict(key),
              "facequant": __version__}
    for place in (path, sidecar(path)):  # a folder where a file belongs: no rename replaces it
        if place.is_dir() and not place.is_symlink():
            warn(f"{place}: a folder where a cached file belongs; set aside as {set_aside(place).name}")
    os.replace(built, path)
    target = sidecar(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def set_aside(place: Path) -> Path:
    """Move something that is not a cache entry out of an entry's way (never deleted: it is
    not facequant's to delete), to `<name>.corrupt-<time>` beside it."""
    aside = place.with_name(f"{place.name}.corrupt-{time.time_ns()}")
    os.rename(place, aside)
    return aside


def problem(path: Path, key: Mapping[str, object]) -> str | None:
    """Why the entry at `path` may not be used for `key`, or None when it may."""
    if path.is_dir() and not path.is_symlink():
        return "is a folder, not a file"
    if sidecar(path).is_dir() and not sidecar(path).is_symlink():
        return f"record is a folder ({sidecar(path).name})"
    try:
        record = json.loads(sidecar(path).read_text())
        sha, size, stored = str(record["sha256"]), int(record["size"]), record["key"]
    except FileNotFoundError:
        return f"has no {SIDECAR_SUFFIX} record of its hash"
    except (OSError, ValueError, KeyError, TypeError):
        return f"has an unreadable {sidecar(path).name}"
    if stored != json.loads(json.dumps(dict(key))):  # compared as JSON: tuples read back as lists
        return "was built from other inputs"
    if not path.is_file():
        return "is missing"
    if path.stat().st_size != size:
        return f"is {path.stat().st_size} bytes, {size} recorded (truncated or replaced)"
    if sha256_file(path) != sha:
        return "does not match its recorded sha256 (corrupt or replaced)"
    return None


def verified(path: Path, key: Mapping[str, object], what: str) -> bool:
    """True when the cached `what` at `path` may be used for `key`. A bad entry gets a
    one-line warning and False: the caller rebuilds it, and the rebuild replaces it (by a
    rename, so a process reading it meanwhile sees one whole file); an absent one says nothing."""
    if not path.exists() and not sidecar(path).exists():
        return False
    reason = problem(path, key)
    if reason is None:
        return True
    aside = ""
    for place in (path, sidecar(path)):
        if place.is_dir() and not place.is_symlink():
            try:
                aside = f"; set aside as {set_aside(place).name}"
            except OSError as exc:
                aside = f"; cannot move it aside ({exc.strerror})"
    warn(f"{path}: cached {what} {reason}{aside}; rebuilding it")
    return False


#: A build's scratch folder in the cache: `.facequant-build-<host>-<pid>-<random>`, so that a
#: killed build's leftovers are told from a running one's (its process is gone) and from
#: anything else in the folder (facequant removes only what carries this name).
BUILD_PREFIX = ".facequant-build-"


@contextmanager
def build_dir(parent: Path) -> Iterator[Path]:
    """A scratch folder beside the cache entry being built (the same file system, so the
    result is renamed, not copied, into place), removed afterwards. Stale ones left by killed
    builds are removed first (clean_stale_builds)."""
    clean_stale_builds(parent)
    host = re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())[:40]
    folder = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{host}-{os.getpid()}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def clean_stale_builds(parent: Path) -> list[Path]:
    """Remove scratch folders of this host's builds whose process is gone (a study killed
    mid-calibration left one per recipe being built). A live process's, another host's
    (a shared cache) and anything not named BUILD_PREFIX are left alone. Returns the removed."""
    from facequant.processes import process_alive

    host = re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())[:40]
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = re.fullmatch(re.escape(BUILD_PREFIX + host) + r"-(\d+)-[A-Za-z0-9_]+", entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir() or process_alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed

"""Where facequant writes results: one rule for every results directory.

Every results directory carries a marker, `.facequant.json` (tool, version, command, time and
the files written). An existing folder is replaced (`--force`) only when its marker lists
everything in it, and never when it is the working directory, an ancestor of it, or a folder
holding an input. Results are written into a hidden staging folder beside the target, which
records its owner (pid, host); at the end the old folder is moved into the staging folder, the
new one renamed in, and the staging folder deleted, so a crash between steps loses nothing: the
next run writing beside it finds the dead owner, puts the old folder back if the new one never
arrived, and removes the rest.

Anyone who can write beside --out can plant a folder named like a staging folder, so nothing in
one is trusted to say where it goes: a stale staging folder is restored only to the sibling its
own name gives (`.<target>.facequant-staging-<random>` -> `<target>`), never through a link, and
only when it carries facequant's own owner record (a dead process of this host, naming that same
target) and its old folder is facequant's (a marker, or empty). Anything else named like one is
left alone and named in one warning.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from facequant import __version__
from facequant.cache import warn
from facequant.errors import FacequantError
from facequant.interrupts import interrupts_deferred
from facequant.names import display
from facequant.processes import process_alive

#: The marker file in every results directory facequant writes.
MARKER = ".facequant.json"
#: Staging folders are hidden siblings named `.<target>.facequant-staging-<random>`.
STAGING_TAG = ".facequant-staging-"
#: Inside a staging folder: who owns it, the results being written, the replaced folder.
OWNER_JSON = "owner.json"
RESULT_DIR = "result"
OLD_DIR = "old"
#: A replaced folder being deleted with its staging folder: never restored.
DISCARD_DIR = "discard"
#: Files that mark a results directory of a facequant version before the marker existed.
LEGACY_FILES = ("run.json", "manifest.json", "search.json", "study.csv", "fidelity.csv")
#: A results folder another command writes inside a sweep's (`diagnose --out R/diagnostics`):
#: --force on R refuses rather than delete it with the sweep it sits in.
KEPT_DIR = "diagnostics"
#: Files facequant derives later from a results directory's own contents and writes into it
#: (`recommend`): a marked folder may hold them without listing them.
DERIVED_FILES = ("recommend.csv", "report.html")
_LEGACY = f"written by an earlier facequant version (no {MARKER})"
#: A staging folder younger than this without its owner record may be a run starting now.
_STARTING_S = 60.0

_command: list[str] = ["facequant"]

Inputs = Iterable[tuple[str, str | os.PathLike[str]]]


def set_command(argv: Sequence[str]) -> None:
    """The command line recorded in every marker this process writes."""
    _command[:] = ["facequant", *argv]


def recorded_command() -> str:
    """This process's command line, as markers record it."""
    return " ".join(_command)


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# --------------------------------------------------------------------------- checks


def check_output_dir(out: str | os.PathLike[str], force: bool, inputs: Inputs = ()) -> None:
    """Refuse, before any work, an output folder facequant may not write or replace.
    `inputs` are (option, path) pairs: a folder holding one is never replaced."""
    out = Path(out)
    problem = _protected(out, inputs) or _name_problem(out)
    if problem is None and out.is_symlink():
        problem = f"is a symbolic link to {os.path.realpath(out)}; give that folder itself"
    if problem is None and os.path.lexists(out) and not out.is_dir():
        problem = "is a file, not a results directory"
    if problem is None and out.is_dir() and any(out.iterdir()):
        problem = marker_problem(out)
        if problem is None and not force:
            raise FacequantError(f"{out}: results directory exists (use --force to replace it)")
        kept = out / KEPT_DIR
        if problem is None and kept.is_dir() and not kept.is_symlink() and any(kept.iterdir()):
            # facequant's own, but put there by another command (diagnose, as the TUI advises):
            # replacing the sweep must not take it along unsaid
            raise FacequantError(f"{out}: holds {KEPT_DIR}/ (facequant diagnose's layer diagnostics), which --force "
                                 f"would delete with the old results; move {kept} out first, or choose another --out")
    if problem is not None:
        advice = ": move it away or choose another --out" if problem.endswith(_LEGACY) else ""
        raise FacequantError(f"{out}: {problem}; refusing to replace it{advice}")
    _check_creatable(out)


def _name_problem(out: Path) -> str | None:
    """Why `out`'s own name cannot be a results folder's: it is '..' (the folder it names is
    not the one its parent path suggests, and that parent would be created for nothing), or
    too long for the staging folder beside it (the name plus STAGING_TAG and 8 characters)."""
    if out.name in ("", ".", ".."):
        return f"ends in '{out.name or '/'}': give the results folder's own name"
    anchor = Path(os.path.abspath(out)).parent
    while not anchor.is_dir() and anchor != anchor.parent:
        anchor = anchor.parent
    try:
        limit = os.pathconf(anchor, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    extra = len(f".{STAGING_TAG}") + 8
    size = len(os.fsencode(out.name))
    if size + extra > limit:
        return (f"its name is {size} bytes: at most {limit - extra} fit here (its staging folder's name adds "
                f"{extra} to it, and a name holds {limit}); choose a shorter --out")
    return None


def _protected(out: Path, inputs: Inputs) -> str | None:
    """Why `out` may never be written or replaced whatever the options, or None."""
    real = _real(out)
    cwd = Path.cwd().resolve()
    if _within(cwd, real):
        return f"is the working directory ({cwd})" if real == cwd else f"holds the working directory ({cwd})"
    for option, path in inputs:
        source = _real(path)
        folder = source if source.is_dir() else source.parent
        if _within(folder, real):
            return f"is the input {option} {path}" if source == real else f"holds the input {option} {path}"
        if source.is_dir() and _within(real, source):  # the next run over that folder would read the results
            return f"is inside the input {option} {path}"
    return None


def _check_creatable(out: Path) -> None:
    """The folder can be created (or replaced) there: the nearest existing ancestor is a
    writable folder. Tried for real (a probe folder made and removed): permissions alone
    do not tell for root or a read-only file system."""
    anchor = Path(os.path.abspath(out)).parent
    while not os.path.lexists(anchor):
        anchor = anchor.parent
    if not anchor.is_dir():
        raise FacequantError(f"{out}: cannot create it: {anchor} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".facequant-probe-", dir=anchor))
    except OSError as exc:
        raise FacequantError(f"{out}: cannot write there: {anchor} is not writable ({exc.strerror})") from exc


def _derived(rel: str, listed: Collection[str]) -> bool:
    """A file facequant adds later beside a results directory's run.json (recommend.csv), at
    the top or in a nested results folder it wrote (one model's of several)."""
    parent, _, name = rel.rpartition("/")
    derived = name in DERIVED_FILES or (name.startswith("recommend-") and name.endswith(".csv"))  # one scenario's
    return derived and (not parent or f"{parent}/run.json" in listed)


def marker_problem(folder: Path) -> str | None:
    """None when facequant wrote everything in `folder` (its marker lists every file, nested
    results directories carry their own), else the reason it may not be replaced."""
    listed = _marker_files(folder)
    if listed is None and (folder / MARKER).exists():
        return f"not written by facequant ({MARKER} is unreadable or another tool's)"
    if listed is None:
        if any((folder / name).is_file() for name in LEGACY_FILES):
            return _LEGACY
        return f"not written by facequant (no {MARKER})"
    unreadable: list[OSError] = []
    for root, dirs, files in os.walk(folder, onerror=unreadable.append):
        here = Path(root)
        for name in list(dirs):
            sub = here / name
            if sub.is_symlink():
                files.append(name)  # a link is an entry of its own: facequant writes none
                dirs.remove(name)
            elif _stale_staging(sub)[0] is not None:
                dirs.remove(name)  # a killed run's leftovers: removed with the folder
            elif (sub / MARKER).is_file():
                dirs.remove(name)
                problem = marker_problem(sub)
                if problem is not None:
                    return f"{sub.relative_to(folder).as_posix()}: {problem}"
        for name in files:
            rel = (here / name).relative_to(folder).as_posix()
            if rel != MARKER and rel not in listed and not _derived(rel, listed):
                return f"holds {rel}, which facequant did not write"
    if unreadable:  # what cannot be listed cannot be shown to be facequant's
        return f"cannot read {unreadable[0].filename} ({unreadable[0].strerror})"
    return None


def _marker_files(folder: Path) -> set[str] | None:
    try:
        data = json.loads((folder / MARKER).read_text())
        files = data["files"]
        if data.get("tool") != "facequant" or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return set(files)


# --------------------------------------------------------------------------- marker


def write_marker(folder: Path) -> Path:
    """The marker listing every file now in `folder` (nested ones too)."""
    files = sorted(rel for rel in (p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())
                   if rel != MARKER)
    marker: dict[str, object] = {"tool": "facequant", "version": __version__, "command": " ".join(_command),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
    _write_json(folder / MARKER, marker)
    return folder / MARKER


def add_to_marker(folder: Path, names: Iterable[str]) -> None:
    """Record files facequant added to an existing results directory (the TUI's exports), so
    a later --force may still replace it. A folder without a valid marker is left as it is."""
    marker = folder / MARKER
    if _marker_files(folder) is None:
        return
    data = json.loads(marker.read_text())
    data["files"] = sorted(set(data["files"]) | set(names))
    _write_json(marker, data)


def write_file(path: Path, write: Callable[[TextIO], object]) -> None:
    """A text file written whole or not at all: a temporary file beside it, then renamed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            write(fh)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, data: dict[str, object]) -> None:
    write_file(path, lambda fh: json.dump(data, fh, indent=1))


# --------------------------------------------------------------------------- staging


@contextmanager
def staged_output(out: str | os.PathLike[str], force: bool, inputs: Inputs = ()) -> Iterator[Path]:
    """A folder to write results into, renamed to `out` (with its marker) only when the
    block completes: a failure or a kill midway leaves any old results as they were. Ctrl-C
    is held back while the staging folder is made, during the swap and while it is removed,
    then raised: what is on disk is then whole, and written() says whether it is the new."""
    given = Path(out)
    inputs = list(inputs)
    check_output_dir(given, force, inputs)
    # Where the OS puts it: `..` inside the path resolved as the OS would (through any link
    # before it), so no folder that `..` steps out of is created for nothing.
    out = Path(os.path.realpath(given.parent)) / given.name
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FacequantError(f"{given}: cannot create {out.parent} ({exc.strerror})") from exc
    clean_stale_staging(out.parent)
    staging: Path | None = None
    try:
        with interrupts_deferred():
            staging = _new_staging(out)
        result = staging / RESULT_DIR
        result.mkdir()
        yield result
        write_marker(result)
        check_output_dir(given, force, inputs)  # again: something may have appeared meanwhile
        with interrupts_deferred():
            _swap(staging, out)
            _written.append(given)
            _discard(staging, out)
    finally:
        if staging is not None:
            with interrupts_deferred():
                _discard(staging, out)


#: Results directories this process has put in place (the CLI's message on Ctrl-C names them).
_written: list[Path] = []


def written() -> list[Path]:
    """The results directories put in place since forget_written()."""
    return list(_written)


def forget_written() -> None:
    _written.clear()


def _new_staging(out: Path) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGING_TAG}", dir=out.parent))
    staging.chmod(0o755)
    owner = {"tool": "facequant", "pid": os.getpid(), "host": socket.gethostname(),
             "target": out.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_json(staging / OWNER_JSON, owner)
    return staging


def _swap(staging: Path, out: Path) -> None:
    """Old folder into the staging folder, new one in its place; the old one goes when the
    staging folder is deleted. Each step is one rename on one file system."""
    try:
        if os.path.lexists(out):
            os.rename(out, staging / OLD_DIR)
        os.rename(staging / RESULT_DIR, out)
    except OSError as exc:
        _restore(staging, out)
        raise FacequantError(f"{out}: cannot replace it ({exc.strerror}); old results kept") from exc


def _restore(staging: Path, target: Path) -> None:
    """Put a replaced folder back when the new one never took its place (a folder, not a link)."""
    old = staging / OLD_DIR
    if old.is_dir() and not old.is_symlink() and not os.path.lexists(target):
        os.rename(old, target)


def _discard(staging: Path, out: Path) -> None:
    try:
        _restore(staging, out)
    except OSError as exc:  # never delete the user's old results with the staging folder
        raise FacequantError(f"{out}: could not put the old results back; they are in {staging / OLD_DIR}") from exc
    _remove_staging(staging)


def _remove_staging(staging: Path) -> None:
    """The owner record goes last, so a kill midway leaves a folder the next run still
    recognises and removes; a replaced folder is renamed first (DISCARD_DIR), so what is left
    of it is never mistaken for old results to restore."""
    if not os.path.lexists(staging):
        return
    old = staging / OLD_DIR
    if old.is_dir() and not old.is_symlink():
        with suppress(OSError):
            os.rename(old, staging / DISCARD_DIR)
    try:
        entries = [e for e in os.scandir(staging) if e.name != OWNER_JSON]
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with suppress(OSError):
                os.unlink(entry.path)
    with suppress(OSError):
        os.unlink(staging / OWNER_JSON)
    try:
        os.rmdir(staging)
    except OSError:  # something appeared meanwhile: it goes too
        shutil.rmtree(staging, ignore_errors=True)


def staging_target(folder: Path) -> str | None:
    """The sibling a staging folder belongs to, read from its own name only
    (`.<target>.facequant-staging-<random>`), or None when the name gives none."""
    name = folder.name
    if not name.startswith(".") or STAGING_TAG not in name:
        return None
    target = name[1:].rpartition(STAGING_TAG)[0]
    return None if target in ("", ".", "..") else target


def _stale_staging(folder: Path) -> tuple[str | None, bool]:
    """(target, foreign) of an entry named like a staging folder: target is the sibling to
    restore to when it is a killed facequant run's own leftover (removable); foreign is True
    when facequant cannot vouch for it (left alone and named). A live run's, another host's
    or one starting now are neither: left alone, silently."""
    if STAGING_TAG not in folder.name:
        return None, False
    if folder.is_symlink() or not folder.is_dir():
        return None, True
    target = staging_target(folder)
    record = folder / OWNER_JSON
    try:
        if record.is_symlink():
            return None, True
        owner = json.loads(record.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
        if owner.get("tool") != "facequant":
            return None, True
    except FileNotFoundError:
        try:
            starting = time.time() - folder.stat().st_mtime < _STARTING_S
        except OSError:
            starting = False
        return None, not starting
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, True
    if host != socket.gethostname() or process_alive(pid):
        return None, False
    if target is None or owner.get("target") != target or not _own_old_folder(folder / OLD_DIR):
        return None, True
    return target, False


def _own_old_folder(old: Path) -> bool:
    """What a run moved aside: absent, or a real folder (not a link) that is empty or carries
    facequant's marker (facequant replaces nothing else)."""
    if not os.path.lexists(old):
        return True
    if old.is_symlink() or not old.is_dir():
        return False
    try:
        return _marker_files(old) is not None or not any(old.iterdir())
    except OSError:
        return False


def clean_stale_staging(parent: Path) -> list[Path]:
    """Remove staging folders in `parent` left by killed runs (owner dead), after putting
    back any results folder one of them had moved aside (to the sibling its name gives).
    Folders named like staging that facequant cannot vouch for are left alone and named in
    one warning. Returns what was removed."""
    removed: list[Path] = []
    foreign: list[Path] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return removed
    for folder in entries:
        target, suspect = _stale_staging(folder)
        if suspect:
            foreign.append(folder)
        if target is None:
            continue
        try:
            _restore(folder, parent / target)
        except OSError:
            continue  # leave it: it holds old results we could not put back
        _remove_staging(folder)
        removed.append(folder)
    if foreign:
        names = ", ".join(display(str(f)).replace("\n", "\\n") for f in foreign)
        warn(f"left alone {len(foreign)} folder(s) named like facequant's staging that facequant cannot vouch for "
             f"(no owner record of its own, a link, or not restorable to their own name): {names}; "
             "remove them if they are not yours")
    return removed


# --------------------------------------------------------------------------- inputs


def inputs_of(config: object) -> list[tuple[str, str]]:
    """The input paths a sweep-like config reads (model, photos, pairs, calibration photos,
    device profile, external embeddings, layer files), as (option, path) pairs."""
    pairs = [("--model", getattr(config, "model", None)), ("--data", getattr(config, "data", None)),
             ("--pairs", getattr(config, "pairs", None)), ("--calib-data", getattr(config, "calibration_data", None)),
             ("--device-profile", getattr(config, "device_profile", None))]
    found = [(option, str(path)) for option, path in pairs if path and Path(str(path)).expanduser().exists()]
    return found + backend_inputs(getattr(config, "backends", ()) or ())


def backend_inputs(backends: Iterable[str] | str) -> list[tuple[str, str]]:
    """Paths named inside backend names: external:NAME=PATH and file=PATH selectors."""
    names = backends.split(",") if isinstance(backends, str) else list(backends)
    found = []
    for name in names:
        if name.startswith("external:") and "=" in name:
            found.append((f"--backends {name.partition('=')[0]}", name.partition("=")[2]))
        for part in name.split("+")[1:]:
            selector = part.partition(":")[2]
            if selector.startswith("file="):
                found.append(("--backends file=", selector[len("file="):]))
    return [(option, path) for option, path in found if path and Path(path).expanduser().exists()]

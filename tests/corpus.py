"""Helpers for the bad-input corpus: a snapshot of a folder's bytes, and the one-line error check."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest


def snapshot(root: Path) -> dict[str, str]:
    """Every file below root (links not followed) -> sha256 of its bytes; folders as ''."""
    out: dict[str, str] = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + str(p.readlink())
        elif p.is_dir():
            out[rel] = ""
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def one_line_error(capsys: pytest.CaptureFixture[str], *names: str) -> str:
    """The stderr of a refused command: exactly one line, naming each of `names`, no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, (name, err)
    return err


def shared_asset(path: Path) -> Path:
    """A file of ../shared: skipped where it is missing, a failure in CI (FACEQUANT_REQUIRE_SHARED),
    the rule of conftest's fixtures, so no test passes by skipping the real path there."""
    if not path.is_file():
        reason = f"shared asset missing: {path}"
        if os.environ.get("FACEQUANT_REQUIRE_SHARED"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def need_openvino() -> None:
    """The openvino extra (openvino and nncf): skipped where it is not installed, a failure in CI
    (which installs it: .ci/run), so no OpenVINO test passes there by skipping."""
    from facequant.backends.runtimes import EXTRA_HINT, extra_installed

    missing = [m for m in ("openvino", "nncf") if not extra_installed(m)]
    if missing:
        reason = f"{', '.join(missing)} not installed ({EXTRA_HINT})"
        if os.environ.get("CI") or os.environ.get("FACEQUANT_REQUIRE_SHARED"):
            pytest.fail(reason)
        pytest.skip(reason)

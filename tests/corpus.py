"""Helpers for the bad-input corpus: a snapshot of a folder's bytes, and the one-line error check."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
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


#: The corpus's own budget: no case may take more memory or time than this, so a regression
#: (a model declaring a gigapixel input, a YAML bomb, a hang) fails its test, not the machine.
MEMORY_LIMIT_BYTES = 2 << 30
TIME_LIMIT_S = 60.0


def run_limited(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = TIME_LIMIT_S, memory: int = MEMORY_LIMIT_BYTES,
                code: str = "import sys; from facequant.cli import main; sys.exit(main())",
                ) -> subprocess.CompletedProcess[str]:
    """`facequant argv` (or python `code` with argv) in a child process whose address space is
    capped (RLIMIT_AS) and whose run is timed out. A time-out fails the calling test."""
    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    command = [sys.executable, "-c", code, *argv]
    try:
        return subprocess.run(command, preexec_fn=limits, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"facequant {' '.join(argv)} still running after {timeout:g} s (the corpus's time limit)")


def refused_in_one_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """A child's refusal: exit 2, stderr exactly one `facequant: error:` line naming each of `names`."""
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, err[-2000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert err.startswith("facequant: error: "), err[-2000:]
    for name in names:
        assert name in err, (name, err)
    return err


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

"""Types are checked in CI (mypy, configured in pyproject.toml, run by .ci/run after ruff); a
`# type: ignore` is allowed only with its error code and the reason on the line (a third-party
package without types), so that none hides a mistake of ours."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as a package (the dev extra installs it there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<rest>.*)$")
WITH_REASON = re.compile(r"^\[[a-z-]+(,\s*[a-z-]+)*\]\s+#\s*\S")


def _mypy() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def _excused_modules() -> list[str]:
    """Modules mypy skips for now (ignore_errors), each override marked with its TODO."""
    return [m for o in _mypy().get("overrides", []) if o.get("ignore_errors") for m in o["module"]]


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def bare_ignores(root: Path = ROOT, excused: tuple[str, ...] = ()) -> list[str]:
    """file:line of every `type: ignore` without a code and a reason, outside the excused modules."""
    found = []
    for package in ("facequant", "tui"):
        for path in sorted((root / package).rglob("*.py")):
            module = _module(path) if root == ROOT else ".".join(path.relative_to(root).with_suffix("").parts)
            if any(module == m or (m.endswith(".*") and module.startswith(m[:-1])) for m in excused):
                continue
            for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                hit = IGNORE.search(text)
                if hit and not WITH_REASON.match(hit["rest"].strip()):
                    found.append(f"{path.relative_to(root)}:{n}")
    return found


def test_every_type_ignore_names_its_code_and_why():
    assert bare_ignores(excused=tuple(_excused_modules())) == []


def test_the_checker_finds_a_bare_ignore(tmp_path: Path):
    (tmp_path / "facequant").mkdir()
    (tmp_path / "tui").mkdir()
    (tmp_path / "facequant" / "a.py").write_text(
        "x = f()  # type: ignore\ny = g()  # type: ignore[arg-type]\n"
        "z = h()  # type: ignore[attr-defined]  # ray's wrapper is untyped\n")
    assert bare_ignores(tmp_path) == ["facequant/a.py:1", "facequant/a.py:2"]


def test_ci_runs_mypy_over_the_packages_after_ruff():
    assert _mypy()["files"] == ["facequant", "tui"]
    steps = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert steps.index("mypy") == steps.index("ruff check .") + 1
    assert steps.index("mypy") < steps.index("python -m pytest")


def test_modules_mypy_skips_are_only_the_ones_being_rewritten():
    """The temporary exclusion covers issue 16 part 1's files (TODO(A) in pyproject.toml), nothing else."""
    text = (ROOT / "pyproject.toml").read_text()
    assert set(_excused_modules()) <= {"facequant.config", "facequant.options", "facequant.ranges",
                                       "facequant.params", "facequant.cli.*"}
    if _excused_modules():
        assert "# TODO(A): remove after params.py lands" in text

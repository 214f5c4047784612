"""The docs cannot go stale quietly: every `facequant ...` command in README.md and docs/*.md
parses with the real command-line parser (a renamed or removed option breaks this test), every
docs page is in mkdocs.yml's nav, and every measured block names a benchmarks script that
exists and writes it, and holds what that script wrote (its provenance first), never numbers
typed by hand."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from facequant.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BENCHMARKS = ROOT / "benchmarks"
PAGES = sorted(DOCS.rglob("*.md"))
README_LINES = 250

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"(?<!`)`(facequant [^`\n]+)`(?!`)")
NOT_SHELL = {"python", "yaml", "yml", "json", "toml"}  # code blocks whose lines are not commands
SHELL = {"", "bash", "sh", "shell", "console"}  # every line a command; in other blocks (text: a
# command's output) only the lines after a `$ ` prompt


@functools.cache
def parser() -> argparse.ArgumentParser:
    """The CLI's own parser, built once (it is made to parse many times: tui and tests reuse it)."""
    return build_parser()


def docs_table() -> ModuleType:
    """benchmarks/docs_table.py, the one definition of a measured block's markers."""
    spec = importlib.util.spec_from_file_location("docs_table", BENCHMARKS / "docs_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shell_commands(line: str) -> list[list[str]]:
    """The `facequant` commands of one shell line: comments cut, split at &&, ||, ; and |."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set("&|;<>()"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c[:1] == ["facequant"]]


def commands_in(text: str) -> tuple[list[list[str]], list[list[str]]]:
    """(commands from code blocks, commands quoted inline in the prose), each as argv."""
    blocks: list[list[str]] = []
    for lang, body in FENCE.findall(text):
        if lang.lower() in NOT_SHELL:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("$ ") or (lang.lower() in SHELL and "facequant" in line):
                blocks += shell_commands(line.removeprefix("$ "))
    inline = [shlex.split(m.group(1)) for m in INLINE.finditer(FENCE.sub("", text))]
    return blocks, inline


def subcommands(command: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def names_a_command(argv: list[str]) -> bool:
    """`facequant models check` in prose names a command (no arguments to parse): true when
    every word is a command or subcommand the parser has."""
    command = parser()
    for word in argv[1:]:
        choices = subcommands(command)
        if word not in choices:
            return False
        command = choices[word]
    return True


def unknown_options(argv: list[str]) -> list[str]:
    """Options in `argv` that are not spelled as the command declares them: argparse accepts a
    prefix of an option (`--scenarios` for `--scenarios-dir`), so a renamed option could still
    parse; the docs spell every option in full."""
    command = parser()
    for word in argv[1:]:
        choices = subcommands(command)
        if word not in choices:
            break
        command = choices[word]
    known = {s for action in command._actions for s in action.option_strings}
    return [t for t in argv if t.startswith("--") and t.split("=")[0] not in known]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *PAGES]


def all_commands() -> list[tuple[str, list[str], bool]]:
    out = []
    for path in doc_files():
        blocks, inline = commands_in(path.read_text())
        out += [(path.relative_to(ROOT).as_posix(), argv, False) for argv in blocks]
        out += [(path.relative_to(ROOT).as_posix(), argv, True) for argv in inline]
    return out


# --------------------------------------------------------------------------- commands


def test_extraction__finds_commands_in_blocks_chains_and_prose():
    text = ("Run `facequant recommend --results R` or `facequant models check`.\n"
            "```bash\npython3 -m venv .venv && . .venv/bin/activate && facequant sweep --out runs/first\n"
            "facequant study calibration-distance --mixes '0.5;0.5,3'   # a comment; not a command\n"
            "$ facequant cameras | head\n```\n"
            "```text\n$ facequant models check faceplugin\ninferred  (faceplugin's model card)\n```\n"
            "```python\nfacequant = 1\n```\n")
    blocks, inline = commands_in(text)
    assert blocks == [["facequant", "sweep", "--out", "runs/first"],
                      ["facequant", "study", "calibration-distance", "--mixes", "0.5;0.5,3"],
                      ["facequant", "cameras"], ["facequant", "models", "check", "faceplugin"]]
    assert inline == [["facequant", "recommend", "--results", "R"], ["facequant", "models", "check"]]


def test_every_docs_command__parses_with_the_real_parser():
    """Every `facequant ...` line a user may copy, from README.md and docs/*.md, parses as written
    with the CLI's own parser (a renamed option, value or command fails here). Inline mentions
    that only name a command (`facequant models check`) must name one that exists."""
    commands = all_commands()
    assert len(commands) >= 40, len(commands)
    assert any(argv == ["facequant", "sweep", "--out", "runs/first"] for _, argv, _ in commands)
    failures = []
    for where, argv, inline in commands:
        if inline and names_a_command(argv):
            continue
        try:
            args = parser().parse_args(argv[1:])
            assert callable(args.func)
            assert not unknown_options(argv), f"not the option's full name: {unknown_options(argv)}"
        except (Exception, SystemExit) as exc:  # argparse's own exit, or the one-line FacequantError
            failures.append(f"{where}: {shlex.join(argv)}: {exc}")
    assert not failures, "\n".join(failures)


def test_parse_check__catches_a_renamed_option():
    """The check above can fail: an option that does not exist, or a value its converter refuses,
    is refused by the parser the test uses."""
    from facequant.errors import FacequantError

    with pytest.raises(FacequantError):
        parser().parse_args(["sweep", "--far-target", "1e-3"])
    with pytest.raises(FacequantError):
        parser().parse_args(["sweep", "--far", "2"])
    assert not names_a_command(["facequant", "models", "chek"])
    # argparse takes a prefix of --scenarios-dir: the test asks for the full name
    parser().parse_args(["recommend", "--results", "R", "--scenarios", "corridor"])
    assert unknown_options(["facequant", "recommend", "--results", "R", "--scenarios", "corridor"]) == ["--scenarios"]
    assert unknown_options(["facequant", "models", "check", "m.onnx", "--data", "D"]) == []


# --------------------------------------------------------------------------- the site


def nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return []


def test_every_docs_page__is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs" and config.get("strict") is True
    listed = nav_pages(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert len(listed) == len(set(listed)), "a page twice in the nav"
    assert sorted(pages - set(listed)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(listed) - pages) == [], "nav entries without a page"


def test_readme__short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_LINES
    first_blocks = [body for lang, body in FENCE.findall(text)[:2]]
    assert "pip install -e" in first_blocks[0] and "facequant sweep" in first_blocks[0]
    assert "python -m pytest" in first_blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest\n" in ci and "mkdocs build --strict" in ci


def test_readme_commands_table__names_commands_that_exist():
    """The README's table of commands names each command as the CLI spells it."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Commands"):]
    section = section[:section.index("\n## ", 1)]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    names = [name for row in rows for name in re.findall(r"`([^`]+)`", row)]
    assert len(names) >= 10
    assert [n for n in names if not names_a_command(["facequant", *n.split()])] == []


def test_readme_links__point_at_pages_that_exist():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#\s]+)", text)
    assert links
    missing = sorted({link for link in links if not (ROOT / link).exists()})
    assert not missing


# --------------------------------------------------------------------------- measured blocks


def measured_blocks() -> list[tuple[str, str, str, str]]:
    """(page, block name, script, body) of every measured block in README.md and docs/."""
    table = docs_table()
    out = []
    for path in doc_files():
        text = path.read_text()
        opened = len(re.findall(r"^<!-- measured", text, flags=re.M))
        found = table.blocks(text)
        assert opened == len(found), f"{path.name}: a measured marker not of the form {table.start_marker('NAME', 'X.py')}"
        assert len(table.END_RE.findall(text)) == len(found), f"{path.name}: {table.END} without its opening marker"
        out += [(path.relative_to(ROOT).as_posix(), name, script, body) for name, (script, body) in found.items()]
    return out


def block_problems(page: str, name: str, script: str, body: str) -> list[str]:
    """What is wrong with one measured block: a script that does not exist or does not write it,
    or a body its script did not write (every script's output starts with its provenance). A
    block not measured yet is empty or says which script fills it."""
    source = BENCHMARKS / script
    if not source.is_file():
        return [f"{page}: block '{name}' names benchmarks/{script}, which does not exist"]
    code = source.read_text()
    problems = []
    if f'"{name}"' not in code or Path(page).name not in code:
        problems.append(f"{page}: benchmarks/{script} does not write block '{name}' on {Path(page).name}")
    filled = body.strip()
    provenance = (f"- written by `python benchmarks/{script}", f"Written by `benchmarks/{script}`",
                  f"Run `python benchmarks/{script} --write` to fill")
    if filled and not filled.startswith(provenance):
        problems.append(f"{page}: block '{name}' holds something benchmarks/{script} did not write "
                        "(no provenance line first)")
    return problems


def test_measured_blocks__name_a_script_that_exists_and_writes_them():
    blocks = measured_blocks()
    assert len(blocks) >= 10
    problems = [p for block in blocks for p in block_problems(*block)]
    assert not problems, "\n".join(problems)


def test_benchmark_writes__target_a_marker_that_exists():
    """Every block a benchmark script writes has its markers on the page (else its --write stops)."""
    present = {(Path(page).name, name, script) for page, name, script, _ in measured_blocks()}
    writes = []
    for script in sorted(set(BENCHMARKS.glob("*.py")) - {BENCHMARKS / "docs_table.py"}):  # its docstring shows a call
        for page, name in re.findall(r'\.write\(\s*"([\w.-]+\.md)",\s*"([^"]+)"', script.read_text()):
            writes.append((page, name, script.name))
    assert len(writes) >= 10
    assert sorted(set(writes) - present) == []


def test_measured_block_check__catches_hand_typed_numbers_and_unknown_scripts():
    table = docs_table()
    typed = ("x\n" + table.start_marker("default sweep", "default_sweep.py")
             + "\n| backend | reliable |\n|---|---|\n| int8-pt | 5.00 m |\n" + table.END + "\n")
    ((name, (script, body)),) = table.blocks(typed).items()
    assert block_problems("docs/numbers.md", name, script, body)
    assert not block_problems("docs/numbers.md", name, script, "\n")  # not measured yet
    assert block_problems("docs/numbers.md", name, "no_such_script.py", "")
    assert block_problems("docs/numbers.md", "no such block", script, "- written by `python benchmarks/default_sweep.py`")
    assert not block_problems("docs/numbers.md", name, script, "- written by `python benchmarks/default_sweep.py --write`")
    assert not block_problems("docs/numbers.md", name, script, "Run `python benchmarks/default_sweep.py --write` to fill")

"""The layering rules, checked on the source (ast, no imports run): no import cycle among the
modules of facequant/ and tui/ (imports inside functions count: they are cycles deferred, not
removed), the TUI stands on facequant.api and never on the CLI, and no module outgrows what
a person reads in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("facequant", "tui")
#: Lines per module: about what reads in one sitting.
LINE_BUDGET = 500
#: Modules allowed over the budget (none today): each entry would be held at its size, to shrink.
OVER_BUDGET: dict[str, int] = {}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` imports, at any depth of the file (functions included)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                # `from facequant.cli import tools` imports the module facequant.cli.tools
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    # importing a.b.c runs a and a.b first: the parents are imported too
    with_parents = {".".join(m.split(".")[:i]) for m in out for i in range(1, m.count(".") + 2)}
    return {m for m in with_parents if m in known and m != name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    return {name: imports_of(path, name, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each a list of names."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_parent_link(a: str, b: str) -> bool:
    """A package and its own module: `facequant.cli` runs facequant/cli/__init__.py, which may
    import facequant.cli.main; the module importing its package back is no cycle Python minds."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def project_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    own = {m: {n for n in deps if not _is_parent_link(m, n)} for m, deps in graph.items()}
    return cycles(own)


# --------------------------------------------------------------------------- the rules


def test_no_import_cycles():
    found = project_cycles(import_graph())
    assert found == [], "import cycles (each group imports itself round): " + "; ".join(" <-> ".join(g) for g in found)


def test_tui_never_imports_the_cli():
    graph = import_graph()
    offenders = {m: sorted(d for d in deps if d == "facequant.cli" or d.startswith("facequant.cli."))
                 for m, deps in graph.items() if m.split(".")[0] == "tui"}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_tui_runs_sweeps_through_the_api():
    graph = import_graph()
    assert "facequant.api" in graph["tui.state"] and "facequant.api" in graph["tui.app"]
    calls = {m: [n.lineno for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.Call)
                 and getattr(n.func, "attr", getattr(n.func, "id", "")) in ("run_sweep", "prepare_probes")]
             for m, path in module_files().items() if m.startswith("tui")}
    assert {m: lines for m, lines in calls.items() if lines} == {}  # the engine only through facequant.api


def test_modules_fit_the_line_budget():
    over = {}
    for path in module_files().values():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > OVER_BUDGET.get(rel, LINE_BUDGET):
            over[rel] = lines
    assert over == {}, f"modules over {LINE_BUDGET} lines (split them by concern): {over}"


def private_imports(root: Path = ROOT) -> dict[str, list[str]]:
    """Module -> the private names (a leading underscore) it imports from another project module."""
    files = module_files(root)
    found: dict[str, list[str]] = {}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and node.module != name:
                    found.setdefault(name, []).extend(f"{node.module}.{p}" for p in private)
    return found


def test_no_module_imports_another_modules_private_names():
    assert private_imports() == {}


def test_private_import_checker_finds_one(tmp_path: Path):
    root = _tree(tmp_path, {"facequant/__init__.py": "", "facequant/a.py": "def _x():\n    pass\n",
                            "facequant/b.py": "from facequant.a import _x\n", "tui/__init__.py": ""})
    assert private_imports(root) == {"facequant.b": ["facequant.a._x"]}


# --------------------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


@pytest.mark.parametrize("case, files, expected", [
    ("top-level cycle", {"facequant/__init__.py": "", "facequant/a.py": "from facequant import b\n",
                         "facequant/b.py": "import facequant.a\n"}, [["facequant.a", "facequant.b"]]),
    ("cycle through a function-level import", {
        "facequant/__init__.py": "", "facequant/a.py": "from facequant.b import x\n",
        "facequant/b.py": "def x():\n    from facequant.a import y\n"}, [["facequant.a", "facequant.b"]]),
    ("relative import cycle across packages", {
        "facequant/__init__.py": "", "facequant/p/__init__.py": "", "facequant/p/a.py": "from ..q import b\n",
        "facequant/q/__init__.py": "", "facequant/q/b.py": "from facequant.p.a import f\n",
        "tui/__init__.py": ""}, [["facequant.p.a", "facequant.q.b"]]),
    ("tui through the cli and back", {
        "facequant/__init__.py": "", "facequant/cli.py": "def run():\n    import tui.app\n",
        "tui/__init__.py": "", "tui/app.py": "from facequant.cli import run\n"}, [["facequant.cli", "tui.app"]]),
    ("a chain is no cycle", {"facequant/__init__.py": "", "facequant/a.py": "import facequant.b\n",
                             "facequant/b.py": "import os\n", "tui/__init__.py": "import facequant.a\n"}, []),
])
def test_cycle_checker_finds_what_it_should__(tmp_path: Path, case: str, files: dict[str, str],
                                              expected: list[list[str]]):
    root = _tree(tmp_path, {"tui/__init__.py": "", **files})
    assert project_cycles(import_graph(root)) == expected, case

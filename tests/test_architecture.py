"""The package's shape, checked from its source: no import cycles, no overlong functions or modules.

Both rules are read from the source with :mod:`ast`, so they hold for imports inside functions
too (those are how a cycle hides: each import works on its own, and the circle only shows as
two modules that cannot be understood, tested or moved apart). docs/architecture.md states the
rules and the ``# long:`` convention.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "movie_reconstruction"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE


# ---------------------------------------------------------------------------- the import graph
def module_name(path: Path, root: Path = SOURCE, package: str = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def package_modules(root: Path = SOURCE, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    return {module_name(path, root, package): path for path in sorted(root.rglob("*.py"))}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    in_function: bool


def _base_package(module: str, path: Path, level: int) -> str:
    """The package a relative import of ``level`` dots starts from."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return package


def _inside_function(tree: ast.AST) -> set[int]:
    """ids of the import nodes that sit inside a function body."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return inside


def import_edges(modules: dict[str, Path], package: str = PACKAGE) -> list[Edge]:
    """Internal imports, module level and function level, relative and absolute.

    ``from . import x`` and ``from .pkg import x`` point at the submodule ``x`` when it is one,
    else at the module ``x`` is taken from.
    """
    edges: dict[tuple[str, str, int], Edge] = {}  # one edge per import statement and target
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        in_function = _inside_function(tree)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _base_package(module, path, node.level)
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.append(submodule if submodule in modules else source)
            else:
                continue
            for target in targets:
                if target.split(".")[0] != package:
                    continue
                while target not in modules:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target != module:
                    edges[module, target, node.lineno] = Edge(module, target, node.lineno, id(node) in in_function)
    return list(edges.values())


def find_cycle(edges: list[Edge]) -> list[Edge] | None:
    """One import cycle as the list of its edges, or None (depth-first search)."""
    graph: dict[str, list[Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
    state: dict[str, str] = {}  # "open" while on the path, "done" when fully explored
    path: list[Edge] = []

    def visit(node: str) -> list[Edge] | None:
        state[node] = "open"
        for edge in sorted(graph.get(node, []), key=lambda e: (e.target, e.line)):
            if state.get(edge.target) == "open":
                # the cycle: the path from where it first reached edge.target, closed by this edge
                start = next((i for i, e in enumerate(path) if e.source == edge.target), len(path))
                return path[start:] + [edge]
            if edge.target not in state:
                path.append(edge)
                found = visit(edge.target)
                if found:
                    return found
                path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def describe_cycle(cycle: list[Edge]) -> str:
    steps = [
        f"{e.source} imports {e.target} (line {e.line}{', inside a function' if e.in_function else ''})" for e in cycle
    ]
    return "import cycle:\n  " + "\n  ".join(steps)


def test_the_package_has_no_import_cycle():
    modules = package_modules()
    assert len(modules) > 40  # the walk found the package
    edges = import_edges(modules)
    cycle = find_cycle(edges)
    assert cycle is None, describe_cycle(cycle)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_cycle_check_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: a circle closed only by a function-local ``from . import x`` is found."""
    root = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "sub/__init__.py": "",
        "sub/c.py": "import pkg.a\n",
        "b.py": "def thing():\n    from .sub import c\n    return c\n",
    })
    modules = package_modules(root, "pkg")
    edges = import_edges(modules, "pkg")
    assert {(e.source, e.target, e.in_function) for e in edges} == {
        ("pkg.a", "pkg.b", False),
        ("pkg.b", "pkg.sub.c", True),
        ("pkg.sub.c", "pkg.a", False),
    }
    cycle = find_cycle(edges)
    assert cycle is not None
    assert [e.source for e in cycle] == ["pkg.a", "pkg.b", "pkg.sub.c"]
    assert "inside a function" in describe_cycle(cycle)


def test_the_cycle_check_passes_a_tree(tmp_path):
    root = _write_package(tmp_path, {
        "__init__.py": "from .a import x\n",
        "a.py": "from . import b\nx = 1\n",
        "b.py": "import os\nfrom pkg import c\n",
        "c.py": "",
    })
    edges = import_edges(package_modules(root, "pkg"), "pkg")
    assert {(e.source, e.target) for e in edges} == {("pkg", "pkg.a"), ("pkg.a", "pkg.b"), ("pkg.b", "pkg.c")}
    assert find_cycle(edges) is None


# ---------------------------------------------------------------------------- sizes
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400
LONG_MARK = "# long:"  # on the line(s) just above a def (or its decorators), or on the def line itself

# Modules still over MAX_MODULE_LINES, each with the ceiling it may not grow past (its size when
# the rule came in). Lower a ceiling when a module shrinks; remove the entry when it fits.
LONG_MODULES = {
}


def _has_long_mark(lines: list[str], node: ast.AST) -> bool:
    """Whether a ``# long: <reason>`` comment sits on the def line or in the comment block above it."""
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    if LONG_MARK in lines[node.lineno - 1]:
        return True
    index = first - 2
    while index >= 0 and lines[index].strip().startswith("#"):
        if lines[index].strip().startswith(LONG_MARK) and len(lines[index].strip()) > len(LONG_MARK) + 3:
            return True
        index -= 1
    return False


def long_functions(modules: dict[str, Path]) -> list[str]:
    """Functions over MAX_FUNCTION_LINES (def line to last line, docstring included) without a reason."""
    found = []
    for module, path in modules.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not _has_long_mark(lines, node):
                    found.append(f"{module}.{node.name} ({path.name}:{node.lineno}, {length} lines)")
    return found


def test_no_long_function_without_a_reason():
    found = long_functions(package_modules())
    assert not found, (
        f"functions over {MAX_FUNCTION_LINES} lines: split them, or say why they are one piece in a "
        f"'{LONG_MARK} <reason>' comment above the def:\n  " + "\n  ".join(found)
    )


def test_no_module_grows_past_its_limit():
    sizes = {module: len(path.read_text(encoding="utf-8").splitlines()) for module, path in package_modules().items()}
    too_long = {m: n for m, n in sizes.items() if n > LONG_MODULES.get(m, MAX_MODULE_LINES)}
    assert not too_long, f"modules over their line limit (split them; LONG_MODULES does not grow): {too_long}"
    fitting = sorted(m for m in LONG_MODULES if sizes.get(m, 0) <= MAX_MODULE_LINES)
    assert not fitting, f"these now fit in {MAX_MODULE_LINES} lines: remove them from LONG_MODULES: {fitting}"


def test_the_long_function_check_reads_the_mark(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    root = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": f"def bare():\n{body}\n\n\n# long: one table, clearer in one piece\n@staticmethod\ndef marked():\n{body}\n\n\n"
                f"def short():\n    return 1\n\n\n# long:\ndef empty_reason():\n{body}\n",
    })
    found = long_functions(package_modules(root, "pkg"))
    assert [f.split(" ")[0] for f in found] == ["pkg.a.bare", "pkg.a.empty_reason"]

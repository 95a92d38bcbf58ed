"""The seams, read off the import graph: every `import` and `from ... import` of a ponder module
anywhere in ponder/ (inside functions too, but not under `if TYPE_CHECKING:`) is an edge.

- core imports nothing else of ponder, and tools (the sandbox) nothing but core;
- schemes import no backend (ponder.models);
- models import nothing from schemes, train, eval or serve;
- no import cycles among ponder's modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "ponder"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module) -> Iterator[str]:
    """The ponder modules a file imports, outside `if TYPE_CHECKING:` blocks."""
    def walk(node: ast.AST) -> Iterator[ast.AST]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (n for s in child.orelse for n in walk(s))
                continue
            yield child
            yield from walk(child)

    for node in walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ponder"):
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("ponder"))


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in imported(ast.parse(path.read_text())) if m in files and m != name}
            for name, path in files.items()}


GRAPH = graph()


def package(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("core", {"models", "schemes", "scorers", "tasks", "verifiers", "eval", "serve", "train",
              "cli", "cli_args", "trace_view"}),
    ("schemes", {"models", "eval", "serve", "train", "cli", "cli_args"}),
    ("models", {"schemes", "train", "eval", "serve", "cli", "cli_args"}),
    ("scorers", {"schemes", "models", "eval", "serve", "train", "cli", "cli_args"}),
    ("tools", {"models", "schemes", "scorers", "tasks", "verifiers", "eval", "serve", "train",
               "cli", "cli_args", "trace_view"}),
])
def test_layers_import_only_what_they_may(layer: str, forbidden: set[str]) -> None:
    crossing = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if package(m) == layer
                      for d in deps if package(d) in forbidden)
    assert crossing == []


def test_core_imports_nothing_else_of_ponder() -> None:
    assert sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if package(m) == "core"
                  for d in deps if package(d) != "core") == []


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: any component of two or more is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                cycles.append(sorted([v, *component]))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_graph_sees_imports_inside_functions() -> None:
    """The check is real: a lazy import is an edge (cli imports the eval commands lazily or
    not), and a TYPE_CHECKING import is not."""
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from ponder.eval import runner\n"
                     "def f():\n    from ponder.schemes import base\n")
    assert set(imported(tree)) == {"ponder.schemes", "ponder.schemes.base"}

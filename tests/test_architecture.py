"""The layers of the package: an import graph without cycles, and ``_lib`` below the public modules."""

from __future__ import annotations

import ast
import pathlib

import knotsafe


def _import_graph() -> dict[str, set[str]]:
    """Module -> the knotsafe modules it imports anywhere (in functions and TYPE_CHECKING blocks too)."""
    root = pathlib.Path(knotsafe.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps |= {m for m in mods if m.startswith("knotsafe")}
        graph[name] = deps
    modules = set(graph)
    return {m: {d for d in ds if d in modules and d != m} for m, ds in graph.items()}


def test_no_import_cycle_in_the_package() -> None:
    """Package ``__init__`` modules aside (importing a submodule runs its package first), no module reaches itself."""
    edges = {m: {d for d in ds if not _is_package(d)} for m, ds in _import_graph().items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in edges.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    cycles = sorted(m for m in edges if m in reach(m))
    assert not cycles, f"import cycle through {cycles}"


def test_lib_never_imports_a_public_module() -> None:
    """Public modules validate and hand off to ``knotsafe._lib``, which never climbs back up."""
    graph = _import_graph()
    up = {
        m: sorted(d for d in ds if not d.startswith("knotsafe._lib"))
        for m, ds in graph.items()
        if m.startswith("knotsafe._lib")
    }
    assert not {m: ds for m, ds in up.items() if ds}, up


def _is_package(name: str) -> bool:
    root = pathlib.Path(knotsafe.__file__).parent.parent
    return (root / pathlib.Path(*name.split(".")) / "__init__.py").exists()

"""The architecture is a checked contract: the pipeline's layers and the decoding engine kept behind the hf
backend (pyproject's import-linter contracts), and no import circles between raftlab's modules
(docs/ARCHITECTURE.md)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pipeline_layers_contract_holds():
    from importlinter import api  # noqa: F401  (import-linter is a test dependency)
    from importlinter.application.use_cases import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) is True


def test_only_the_hf_backend_imports_the_engine():
    """Every module, including ones added after the forbidden contract's list was written: raftlab.engine is
    imported directly only by raftlab.backends.hf (and by its own modules)."""
    import grimp

    graph = grimp.build_graph("raftlab")
    engine = {"raftlab.engine", *graph.find_descendants("raftlab.engine")}
    importers = graph.find_modules_that_directly_import("raftlab.engine", as_package=True) - engine
    assert importers == {"raftlab.backends.hf"}
    assert not any(m.startswith("raftlab.backends") for e in engine for m in graph.find_modules_directly_imported_by(e))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_between_modules():
    """Counting every import (lazy ones inside functions too), except a package's ``__init__`` re-exporting its
    own modules."""
    import grimp

    graph = grimp.build_graph("raftlab")
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith(module + "."):  # a package's __init__ importing its own modules
                continue
            edges.setdefault(module, set()).add(imported)
    assert _cycles(edges) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""The architecture is a checked contract: the pipeline's layers, the decoding engine kept behind the hf backend,
and no import circles (pyproject's import-linter contracts; docs/ARCHITECTURE.md)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
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


def test_the_contracts_include_no_import_circles():
    """The no-circle check is import-linter's ``acyclic_siblings`` over the whole package (pyproject.toml), run by
    test_import_contracts_hold: within every package, its modules and subpackages import each other without a
    cycle."""
    text = (ROOT / "pyproject.toml").read_text()
    contract = text[text.index('name = "no import circles"'):].split("[[", 1)[0]
    assert 'type = "acyclic_siblings"' in contract and 'ancestors = ["raftlab"]' in contract
    assert "depth" not in contract and "ignore_imports" not in contract

"""The core's modules form layers: no import circle among them, lazy imports included (the
one closed by `verify`'s lazy import from `warehouse` is what dataset.py removed)."""

from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"


def _imports(path: Path) -> set[str]:
    """The modules of `pipeline/` that a top-level module imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is not None:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline."):
            found.add((node.module or "").split(".")[1])
    return found - {path.stem}


def test_the_core_has_no_import_circle() -> None:
    graph = {path.stem: _imports(path) for path in PIPELINE.glob("*.py")}
    assert {"dataset", "warehouse", "verify", "quality"} <= graph.keys()
    graphlib.TopologicalSorter(graph).prepare()  # CycleError names the circle


def test_the_sync_reads_its_rows_below_the_warehouse() -> None:
    graph = {path.stem: _imports(path) for path in PIPELINE.glob("*.py")}
    assert "warehouse" not in graph["dataset"] | graph["target_run"] | graph["decisions"]
    assert "dataset" in graph["warehouse"]


def _reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module of `pipeline/` that `start` imports, directly or through another."""
    seen, todo = set(), [start]
    while todo:
        for module in graph.get(todo.pop(), set()) - seen:
            seen.add(module)
            todo.append(module)
    return seen


def _third_party(path: Path) -> set[str]:
    """The top-level packages outside the standard library that a module imports, anywhere."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "pipeline"}


def test_the_model_and_the_incremental_engine_need_only_the_standard_library() -> None:
    """model.py and decisions.py reach no Arrow, storage or AWS code, lazily or not: the
    engine that plans and absorbs is tested with plain rows. run.py (the options and the
    report) imports nothing else either; the AWS client it can describe is built lazily."""
    graph = {path.stem: _imports(path) for path in PIPELINE.glob("*.py")}
    for engine in ("model", "decisions"):
        modules = {engine} | _reached(graph, engine)
        assert modules <= {"model", "decisions"}, (engine, modules)
        used = {module: _third_party(PIPELINE / f"{module}.py") for module in modules}
        assert not any(used.values()), (engine, used)
    assert "model" in graph["run"] and not {"schema", "storage", "state"} & _reached(graph, "run")

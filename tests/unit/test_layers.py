"""The core's modules form layers: no import circle among them, lazy imports included (the
one closed by `verify`'s lazy import from `warehouse` is what dataset.py removed)."""

from __future__ import annotations

import ast
import graphlib
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

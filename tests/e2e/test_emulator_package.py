"""The emulator package stands alone: standard library only, small modules, a stable API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.emulator

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline" / "emulator"
MODULES = sorted(PACKAGE.glob("*.py"))
MAX_LINES = 700


def test_the_package_has_its_modules() -> None:
    assert (PACKAGE / "__init__.py") in MODULES
    assert len(MODULES) > 5


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(relative level, absolute or package-relative module name) of every import in a file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_modules_import_only_the_standard_library_and_the_package(path: Path) -> None:
    siblings = {module.stem for module in MODULES} - {"__init__"}
    for level, name in imported_modules(path):
        if level == 0:
            top = name.split(".")[0]
            assert top == "__future__" or top in sys.stdlib_module_names, (path.name, name)
        else:
            assert level == 1, (path.name, level, name)  # never above the package
            assert name.split(".")[0] in siblings, (path.name, name)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_modules_are_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_all_names_exist() -> None:
    names = pipeline.emulator.__all__
    assert len(names) == len(set(names))
    missing = [name for name in names if not hasattr(pipeline.emulator, name)]
    assert missing == []
    for name in ("Clock", "Emulator", "EmulatorServer", "Faults", "CallerAccounts", "serve"):
        assert name in names


def test_package_loads_with_the_standard_library_alone() -> None:
    """Loaded from its directory under ``python -S``, without ``pipeline`` or site-packages."""
    script = (
        "import importlib.util, sys, time\n"
        "started = time.perf_counter()\n"
        f"path = {str(PACKAGE / '__init__.py')!r}\n"
        "spec = importlib.util.spec_from_file_location(\n"
        f"    'emulator', path, submodule_search_locations=[{str(PACKAGE)!r}]\n"
        ")\n"
        "module = sys.modules['emulator'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "elapsed = time.perf_counter() - started\n"
        "assert hasattr(module, 'EmulatorServer')\n"
        "foreign = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
        "print(sorted(foreign - {'emulator', '__main__'}), elapsed)\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, check=True
    )
    foreign, elapsed = result.stdout.rsplit(" ", 1)
    assert foreign == "[]"
    assert float(elapsed) < 1.0

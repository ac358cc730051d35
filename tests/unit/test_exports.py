"""Every module of `pipeline/` and `assets/` whose names other modules use declares them in
`__all__`: each name in `__all__` exists, and each public name another module of the
repository imports from it (`from pipeline.x import a`, or `from pipeline import x` then
`x.a`) is in its `__all__`. Tests may reach private names (`_x`); those are not checked."""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "assets")
SCANNED = [
    *(
        path
        for folder in (*PACKAGES, "benchmarks", "tests")
        for path in (ROOT / folder).rglob("*.py")
    ),
    ROOT / "dev.py",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether `name` is a module of this repository (a .py file or a package)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module an `ImportFrom` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = path.relative_to(ROOT).parts[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def imported_names() -> dict[str, dict[str, set[str]]]:
    """module -> public name -> the files (relative paths) that import it from that module."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in SCANNED:
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(ROOT).as_posix()
        aliases: dict[str, str] = {}  # local name -> a module of ours bound to it
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = absolute(path, node)
                for alias in node.names:
                    local = alias.asname or alias.name
                    if ours(source) and is_module(f"{source}.{alias.name}"):
                        aliases[local] = f"{source}.{alias.name}"  # a submodule, not a name
                    elif ours(source) and not alias.name.startswith("_"):
                        found[source][alias.name].add(where)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and ours(alias.name):
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and not node.attr.startswith("_")
            ):
                found[aliases[node.value.id]][node.attr].add(where)
    return found


IMPORTED = imported_names()
MODULES = sorted(IMPORTED)


def test_the_scan_finds_the_public_modules() -> None:
    assert {"pipeline.schema", "pipeline.storage", "assets.definitions"} <= set(MODULES)
    assert "DataDir" in IMPORTED["pipeline.storage"]


@pytest.mark.parametrize("name", MODULES)
def test_imported_names_are_in_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__; it needs {sorted(IMPORTED[name])}"
    missing = {
        imported: sorted(files)
        for imported, files in IMPORTED[name].items()
        if imported not in exported
    }
    assert missing == {}, f"imported from {name} but not in its __all__"


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", [])
    assert len(exported) == len(set(exported))
    assert [item for item in exported if not hasattr(module, item)] == []

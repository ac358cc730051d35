"""How this package starts a child Python process that runs one of its own modules."""

from __future__ import annotations

import sys

__all__ = ["python_module"]


def python_module(module: str, *args: str) -> list[str]:
    """The command of `python -m MODULE ARGS`, run by this interpreter. With -P: the working
    directory stays off the child's import path, so that a directory the user runs from with
    its own `assets/` or `pipeline/` package (a Dagster repository has the first) does not
    shadow this one's."""
    return [sys.executable, "-P", "-m", module, *args]

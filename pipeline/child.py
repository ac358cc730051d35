"""How this package starts a child Python process that runs its own code."""

from __future__ import annotations

import sys

__all__ = ["python_child"]


def python_child(*args: str) -> list[str]:
    """The command of a child of this interpreter: `python -P ARGS`, where ARGS is `-m MODULE
    ...` or `-c CODE ...`. -P keeps the working directory off the child's import path, so that
    a directory the user runs from with its own `assets/` or `pipeline/` package (a Dagster
    repository has the first) does not shadow this one's."""
    return [sys.executable, "-P", *args]

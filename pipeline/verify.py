"""`image-versions verify`: find damage in a data dir, and quarantine it on request.

The repair path never deletes: unreadable files move to `DATA/_quarantine/`, outside the
dataset, and the state is dropped when it is corrupt or when data files went missing, so that
the next `sync --full-refresh` lists everything again and compares it with what is stored.
Current states come back from the source; history rows that lived only in a quarantined file
do not, and the report says which files those were.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import PurePath

from . import quality
from .dataset import data_files, unreadable
from .schema import (
    STATE_SCHEMA,
)
from .state import readable_state_files, state_paths
from .storage import DataDir

__all__ = ["find_problems", "repair"]

QUARANTINE = "_quarantine"
_MOVABLE = frozenset(
    {"misplaced file", "misplaced directory", "unreadable file", "stray file", "corrupt state"}
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the data dir."""

    kind: str
    detail: str
    path: PurePath | None = None

    def __str__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return f"{self.kind}:{where} {self.detail}"


def _misplaced(data_dir: DataDir) -> list[Problem]:
    """A file where the layout has a directory, or a directory where it has a file: every
    later write there fails, so sync and compact refuse to start until it is moved aside."""
    store = data_dir.store
    problems = [
        Problem("misplaced file", "a file where a directory belongs", directory)
        for directory in data_dir.files_in_layout()
    ]
    files = [*state_paths(data_dir), *data_dir.journal_paths(), *data_dir.commit_journal_paths()]
    problems += [
        Problem("misplaced directory", "a directory where a file belongs", path)
        for path in files
        if store.is_dir(path)
    ]
    return problems


def find_problems(data_dir: DataDir) -> list[Problem]:
    """Every problem found: misplaced entries, unreadable files, a corrupt state, leftovers,
    bad values."""
    store = data_dir.store
    problems = _misplaced(data_dir)
    for path, schema in data_files(data_dir):
        reason = unreadable(data_dir, path, schema)
        if reason is not None:
            problems.append(Problem("unreadable file", str(reason), path))
    strays = [
        path
        for directory in (data_dir.versions_dir, data_dir.details_dir)
        for path in store.files(directory)
        if path.suffix != ".parquet"
    ]
    problems += [Problem("stray file", "not a Parquet file", p) for p in strays]
    for state in readable_state_files(data_dir):
        reason = unreadable(data_dir, state, STATE_SCHEMA)
        if reason is not None:
            problems.append(Problem("corrupt state", str(reason), state))
    problems += [
        Problem("unfinished compaction", "the next sync finishes it", journal)
        for journal in data_dir.journal_paths()
        if store.is_file(journal)
    ]
    problems += [
        Problem(
            "unfinished commit",
            "the next sync of the account deletes the files its state does not cover",
            journal,
        )
        for journal in data_dir.commit_journal_paths()
        if store.is_file(journal)
    ]
    if not problems and data_dir.warehouse_path.exists():
        for check in quality.DAMAGE_CHECKS:
            outcome = check(data_dir)
            if not outcome.passed:
                examples = "; ".join(outcome.details.get("examples", []))
                described = (
                    f"{outcome.description}: {examples}" if examples else outcome.description
                )
                problems.append(Problem(check.__name__, described))
    return problems


def repair(data_dir: DataDir, problems: list[Problem]) -> list[str]:
    """Quarantine unreadable files and stray files; drop a state that no longer holds."""
    store = data_dir.store
    quarantine = data_dir.root / QUARANTINE / time.strftime("%Y%m%dT%H%M%S")
    actions = []
    moved_data = False

    def move_aside(path: PurePath) -> PurePath:
        target = quarantine / path.relative_to(data_dir.root)
        store.move(path, target)
        return target

    data_dirs = (data_dir.versions_dir, data_dir.images_dir, data_dir.details_dir)
    for problem in problems:
        if problem.path is None or problem.kind not in _MOVABLE:
            continue
        target = move_aside(problem.path)
        moved_data |= any(problem.path.is_relative_to(d) for d in data_dirs)
        actions.append(f"moved {problem.path.relative_to(data_dir.root)} to {store.uri(target)}")
    for state in readable_state_files(data_dir) if moved_data else []:
        target = move_aside(state)
        actions.append(
            f"moved the state to {store.uri(target)}: the watermarks covered the moved data"
        )
    if actions:
        actions.append(
            "now run `image-versions sync --full-refresh` to list every image again; current "
            "states come back from the source, history only in the moved files does not"
        )
    return actions

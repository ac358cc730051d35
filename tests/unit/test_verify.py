"""`verify` (`pipeline.verify`) on small real data dirs: what it finds, and that `--repair`
moves damage aside, never deletes, and drops the state that covered moved data."""

from __future__ import annotations

from pathlib import Path

from pipeline.state import state_paths
from pipeline.storage import DataDir
from pipeline.verify import find_problems, repair
from pipeline.warehouse import refresh_views
from tests.datasets import synced, version_rows
from tests.support import stored_states

QUARANTINE = "_quarantine"
"""Where `--repair` moves what it takes out of the dataset (docs/operations.md)."""


def kinds(data_dir: DataDir) -> list[str]:
    return [problem.kind for problem in find_problems(data_dir)]


def quarantined(data_dir: DataDir) -> dict[str, bytes]:
    """Every file under the quarantine, by its path inside the data dir, with its bytes."""
    (moment,) = Path(data_dir.root, QUARANTINE).iterdir()
    return {
        str(path.relative_to(moment)): path.read_bytes()
        for path in moment.rglob("*")
        if path.is_file()
    }


def test_a_healthy_data_dir_has_no_problem_and_nothing_to_repair(data_dir: DataDir) -> None:
    synced(data_dir, version_rows([1, 2, 3]))
    assert find_problems(data_dir) == []
    assert repair(data_dir, []) == []
    assert not Path(data_dir.root, QUARANTINE).exists()


def test_an_unreadable_data_file_is_moved_aside_with_the_state_that_covered_it(
    data_dir: DataDir,
) -> None:
    synced(data_dir, version_rows([1, 2]))
    (damaged,) = (Path(path) for path in data_dir.version_files())
    damaged.write_bytes(b"PAR1 not really")
    problems = find_problems(data_dir)
    assert [(p.kind, p.path) for p in problems] == [("unreadable file", damaged)]

    actions = repair(data_dir, problems)
    assert not damaged.exists() and data_dir.version_files() == []
    moved = quarantined(data_dir)
    assert moved[str(damaged.relative_to(data_dir.root))] == b"PAR1 not really"
    assert any(name.startswith("_state/") for name in moved)  # the state went too
    assert stored_states(data_dir) == {}  # so the next sync lists everything again
    assert "sync --full-refresh" in actions[-1]
    refresh_views(data_dir)  # as `verify --repair` does: the views no longer name the file
    assert find_problems(data_dir) == []


def test_a_stray_file_and_a_corrupt_state_are_found_and_moved_aside(data_dir: DataDir) -> None:
    synced(data_dir, version_rows([1]))
    stray = Path(data_dir.versions_dir) / "notes.txt"
    stray.write_text("mine")
    (state,) = (Path(path) for path in state_paths(data_dir) if Path(path).is_file())
    state.write_bytes(b"garbage")
    assert sorted(kinds(data_dir)) == ["corrupt state", "stray file"]

    repair(data_dir, find_problems(data_dir))
    assert not stray.exists() and not state.exists()
    assert sorted(quarantined(data_dir).values()) == [b"garbage", b"mine"]
    assert find_problems(data_dir) == []


def test_a_copied_state_is_reported_by_the_quality_checks_and_left_in_place(
    data_dir: DataDir,
) -> None:
    rows = version_rows([1, 2])
    synced(data_dir, rows)
    synced(data_dir, rows)
    problems = find_problems(data_dir)
    assert [p.kind for p in problems] == ["states_stored_once"]
    assert "`image-versions compact` removes them" in str(problems[0])
    files = data_dir.version_files()
    assert repair(data_dir, problems) == []  # nothing unreadable: compaction's job, not repair's
    assert data_dir.version_files() == files

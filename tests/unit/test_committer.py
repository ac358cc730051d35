"""The committer (`pipeline.committer`): rows durable before the state that covers them
(invariant 2), at bounded intervals, the sync history row last, and the files of a commit
whose state was never saved deleted before they are stored again (invariant 14)."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import committer as committer_module
from pipeline.committer import Committer, roll_back_unfinished_commit
from pipeline.errors import DataError
from pipeline.model import account_key
from pipeline.schema import to_ms
from pipeline.storage import DataDir
from tests.datasets import ACCOUNT, IMAGE, TARGET, image_state, version_rows
from tests.support import REGION, START, stored_states


def stored_versions(data_dir: DataDir) -> list[int]:
    return sorted(
        version
        for path in data_dir.version_files()
        for version in pq.read_table(path).column("version").to_pylist()
    )


def test_nothing_is_written_until_the_buffer_is_full_then_rows_before_their_state(
    data_dir: DataDir,
) -> None:
    data_dir.prepare()
    committer = Committer(data_dir, TARGET, {}, flush_rows=3, interval_s=3600)
    committer.add(version_rows([1, 2]), image_state("a", watermark_ms=1))
    assert stored_versions(data_dir) == [] and stored_states(data_dir) == {}

    committer.add(version_rows([3, 4]), image_state("b", watermark_ms=2))
    assert stored_versions(data_dir) == [1, 2, 3, 4]
    assert {key[2]: s.watermark_ms for key, s in stored_states(data_dir).items()} == {
        "a": 1,
        "b": 2,
    }
    assert committer.rows_written == 4 and committer.rows == [] and committer.pending == []


def test_an_overdue_buffer_is_committed_by_the_next_image(data_dir: DataDir) -> None:
    data_dir.prepare()
    committer = Committer(data_dir, TARGET, {}, flush_rows=10_000, interval_s=0)
    committer.add(version_rows([1]), image_state(watermark_ms=7))
    assert stored_versions(data_dir) == [1]
    assert stored_states(data_dir)[(ACCOUNT, REGION, IMAGE)].watermark_ms == 7


def test_the_state_is_not_saved_when_its_rows_could_not_be_made_durable(
    data_dir: DataDir,
) -> None:
    data_dir.prepare()
    committer = Committer(data_dir, TARGET, {}, flush_rows=10_000, interval_s=3600)
    committer.add(version_rows([1]), image_state(watermark_ms=1))
    committer.commit()
    before = stored_states(data_dir)
    versions = Path(data_dir.versions_dir)
    shutil.rmtree(versions)
    versions.write_text("a file where the versions' directory belongs")

    committer.add(version_rows([2]), image_state(watermark_ms=99))
    with pytest.raises(OSError):
        committer.commit()
    assert stored_states(data_dir) == before  # the watermark did not move past the lost rows
    assert committer.states == before


def test_the_sync_history_row_is_written_by_the_last_commit(data_dir: DataDir) -> None:
    data_dir.prepare()
    committer = Committer(data_dir, TARGET, {}, flush_rows=10_000, interval_s=3600)
    committer.add(version_rows([1]), image_state(watermark_ms=1))
    committer.commit()
    assert data_dir.sync_run_files() == []

    started = to_ms(START)
    finished = to_ms(START + timedelta(seconds=3))
    committer.commit(sync_run=sync_run_row(started, finished))
    (history,) = data_dir.sync_run_files()
    assert pq.read_table(history).column("versions_new").to_pylist() == [1]
    assert history.parent.parent in committer.partitions_written
    assert {path.parent.parent for path in data_dir.version_files()} <= (
        committer.partitions_written
    )


def sync_run_row(started_ms: int, finished_ms: int) -> dict[str, object]:
    return {
        "started_at": started_ms,
        "finished_at": finished_ms,
        "source": "lab",
        "account_id": ACCOUNT,
        "region": REGION,
        "images": 1,
        "versions_new": 1,
        "versions_changed": 0,
        "versions_deleted": 0,
        "api_calls": 2,
        "throttled_retries": 0,
        "seconds": 3.0,
        "ok": True,
        "error": None,
    }


ACCOUNT_KEY = account_key(ACCOUNT, REGION)


class Killed(Exception):
    """Where a SIGKILL would have stopped the process (tests/e2e/test_sync.py kills for real)."""


def _interrupted_commit(data_dir: DataDir, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """A first commit, then a second one interrupted at `step`: before its state is saved,
    or after, before its journal is dropped."""
    data_dir.prepare()
    owned = data_dir.for_account(ACCOUNT_KEY)
    data_dir.store.make_dirs([owned.tmp_dir])
    committer = Committer(owned, TARGET, {}, flush_rows=10_000, interval_s=3600)
    committer.add(version_rows([1]), image_state(watermark_ms=1))
    committer.commit()

    def killed(*args: object, **kwargs: object) -> None:
        raise Killed(step)

    if step == "state":
        monkeypatch.setattr(committer_module, "save_state", killed)
    else:
        monkeypatch.setattr(DataDir, "end_commit", killed)
    committer.add(version_rows([2, 3]), image_state(watermark_ms=3))
    with pytest.raises(Killed):
        committer.commit()
    monkeypatch.undo()
    assert Path(owned.commit_journal_path).is_file()
    assert stored_versions(data_dir) == [1, 2, 3]


def test_the_files_of_a_commit_whose_state_was_never_saved_are_deleted_before_a_re_run(
    data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupted_commit(data_dir, monkeypatch, "state")
    assert stored_states(data_dir)[(ACCOUNT, REGION, IMAGE)].watermark_ms == 1

    roll_back_unfinished_commit(data_dir, ACCOUNT_KEY)
    assert stored_versions(data_dir) == [1]  # the re-run lists 2 and 3 again, from watermark 1
    assert not Path(data_dir.for_account(ACCOUNT_KEY).commit_journal_path).exists()


def test_the_files_of_a_commit_whose_state_was_saved_are_kept(
    data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupted_commit(data_dir, monkeypatch, "journal")
    assert stored_states(data_dir)[(ACCOUNT, REGION, IMAGE)].watermark_ms == 3

    roll_back_unfinished_commit(data_dir, ACCOUNT_KEY)
    assert stored_versions(data_dir) == [1, 2, 3]  # the state covers them: nothing lists them
    assert not Path(data_dir.for_account(ACCOUNT_KEY).commit_journal_path).exists()


@pytest.mark.parametrize(
    "journal",
    [
        {"commit": "x", "files": ["../../outside.parquet"]},
        {"commit": "x", "files": ["image_versions/../../../outside.parquet"]},
        {"commit": "x", "files": ["_state/accounts/other/images.parquet"]},
        {"commit": 1, "files": []},
        "not json",
    ],
)
def test_a_planted_commit_journal_deletes_nothing(data_dir: DataDir, journal: object) -> None:
    data_dir.prepare()
    owned = data_dir.for_account(ACCOUNT_KEY)
    outside = Path(data_dir.root).parent / "outside.parquet"
    outside.write_bytes(b"not ours")
    path = Path(owned.commit_journal_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(journal if isinstance(journal, str) else json.dumps(journal))
    with pytest.raises(DataError, match="commit journal"):
        roll_back_unfinished_commit(data_dir, ACCOUNT_KEY)
    assert outside.read_bytes() == b"not ours" and path.is_file()

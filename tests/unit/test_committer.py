"""The committer (`pipeline.committer`): rows durable before the state that covers them
(invariant 2), at bounded intervals, and the sync history row last."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.committer import Committer
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

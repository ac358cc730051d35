"""The committer of one target: rows made durable before the state that covers them, at
bounded intervals, and the target's sync history row with its last commit.

Invariant 2 lives here: a watermark never moves past data that is not durable, so a sync
killed at any instant re-reads from the old watermark. The history row is written last, so a
killed sync leaves no row that claims it succeeded.

Invariant 14 too: a commit's files are named in a journal before they appear, and the state
records the commit it covers, so a sync killed between the two has its files deleted before
the re-run lists their rows again (`roll_back_unfinished_commit`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from pathlib import PurePath

from .defaults import COMMIT_INTERVAL_S
from .model import ImageState, Row, StateKey
from .schema import IMAGE_VERSION_DETAILS_SCHEMA, SYNC_RUNS_SCHEMA, rows_to_table
from .state import save_state, saved_commit
from .storage import DataDir

__all__ = ["Committer", "roll_back_unfinished_commit"]

log = logging.getLogger(__name__)


class Committer:
    """Buffers one target's rows and state updates; makes rows durable before the state that
    covers them."""

    def __init__(
        self,
        data_dir: DataDir,
        key: str,
        states: dict[StateKey, ImageState],
        flush_rows: int,
        interval_s: float = COMMIT_INTERVAL_S,
    ):
        self.data_dir = data_dir
        self.key = key
        self.states = states
        self.flush_rows = flush_rows
        self.interval_s = interval_s
        self.rows: list[Row] = []
        self.details: list[Row] = []
        self.pending: list[ImageState] = []
        self.rows_written = 0
        self.partitions_written: set[PurePath] = set()
        """The account_region= (or target=) partitions it added files to: what may need
        compacting."""
        self._last_commit = time.monotonic()

    def add(self, rows: list[Row], state: ImageState, details: Iterable[Row] = ()) -> None:
        """Buffer one image's rows and new state; commit when the buffer is big or old."""
        self.rows.extend(rows)
        self.details.extend(details)
        self.pending.append(state)
        overdue = time.monotonic() - self._last_commit >= self.interval_s
        if overdue or len(self.rows) + len(self.details) >= self.flush_rows:
            self.commit()

    def commit(self, sync_run: Row | None = None) -> None:
        """Make what is buffered durable, then the state; then `sync_run`, the target's row of
        sync history, when this is its last commit."""
        commit = self._publish_data()
        if self.pending:
            for state in self.pending:
                self.states[state.key] = state
            self.pending = []
            save_state(self.data_dir, self.states, commit)
            log.info("state committed")
        if commit is not None:
            self.data_dir.end_commit()
        if sync_run is not None:
            table = rows_to_table([sync_run], SYNC_RUNS_SCHEMA)
            self.partitions_written.add(self.data_dir.write_sync_run(self.key, table).parent.parent)
        self._last_commit = time.monotonic()

    def _publish_data(self) -> str | None:
        """Make the buffered rows and details durable (details are data too: durable before
        the state that stops them being re-fetched); the commit's id, None when none was
        buffered."""
        if not (self.rows or self.details):
            return None
        commit = uuid.uuid4().hex
        log.info("writing %d rows and %d details rows", len(self.rows), len(self.details))
        files = self.data_dir.publish_commit(
            commit,
            rows_to_table(self.rows),
            rows_to_table(self.details, IMAGE_VERSION_DETAILS_SCHEMA),
        )
        self.partitions_written.update(path.parent.parent for path in files)
        log.info("data durable in %d file(s); committing state", len(files))
        self.rows_written += len(self.rows)
        self.rows, self.details = [], []
        return commit


def roll_back_unfinished_commit(data_dir: DataDir, account: str) -> None:
    """Delete the files of an account's commit that a killed sync published but never
    covered with its state: the re-run lists those rows again from the old watermark, and
    would otherwise store each of them twice (invariant 14). Holding the account's lock.
    DataError when the state or the journal is unreadable."""
    owned = data_dir.for_account(account)
    removed = owned.roll_back_commit(saved_commit(owned, account))
    if removed:
        log.warning(
            "%s: removed %d data file(s) of a commit that an interrupted sync never finished; "
            "their rows are listed again",
            *(account, removed),
        )

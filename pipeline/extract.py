"""One sync: every target (source x region, or member account x region) side by side, each
connected when its turn comes, holding its own writer lock, committing its own state and its
row of sync history; the data dir made once some target is reachable, and migrated from the
single state file of older releases. Inside one target: target_run.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from .committer import Committer
from .errors import ConfigError, DataError, WriterBusy
from .fanout import in_shard
from .guard import CallGuard, Cancelled, close_client
from .ratelimit import AdaptiveRateLimiter
from .redact import redact
from .run import Failure, SourceTarget, SyncOptions, SyncReport
from .schema import (
    Row,
    from_ms,
)
from .source import (
    ApiStats,
    check_reachable,
    list_organization_accounts,
    make_client,
    organization_members,
)
from .state import (
    ImageState,
    StateKey,
    keep_previous_state,
    legacy_state_file,
    load_rate_hint,
    load_target_state,
    migrate_legacy_state,
    save_rate_hint,
)
from .storage import AUTO_COMPACT_FILES, DataDir
from .target_run import (
    POLL_S,
    Progress,
    ProgressCallback,
    ProgressTracker,
    TargetRun,
    check_cancel,
    failure_reason,
    now_ms,
)
from .warehouse import ensure_views

__all__ = ["Progress", "ProgressCallback", "sync"]

log = logging.getLogger(__name__)
MIGRATION_WAIT_S = 60.0
"""How long the first sync after an upgrade waits for another process's move of the state."""

# ---------------------------------------------------------------- the sync


@dataclass(frozen=True)
class _Connected:
    """A target that has a client: its API calls count into `stats`, its own figures."""

    target: SourceTarget
    client: Any
    stats: ApiStats
    limiter: AdaptiveRateLimiter


def sync(
    data_dir: DataDir,
    targets: list[SourceTarget],
    options: SyncOptions,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> SyncReport:
    """One incremental sync of every target into `data_dir`, targets side by side, each
    connected when its turn comes and holding its own writer lock.

    Failures of one image or one target are reported in the result, never raised: everything
    else is committed. ConfigError is raised, before anything is written, when the data dir is
    not ours or no target can be reached at all, and after, when every target is held by
    another writer. Once `cancel` is set (or the main thread is interrupted), calls in flight
    are abandoned, what was finished is committed, and Cancelled (or the interrupt) is raised.
    """
    started = time.monotonic()
    cancel = cancel or threading.Event()
    report = SyncReport()
    data_dir.check_ours()
    members, errors = _expand(targets, options, report, cancel)
    report.enriched = options.enrich or any(member.enrich for member in members)
    slots = max(1, min(options.target_concurrency, len(members)))
    share = replace(
        options,
        concurrency=max(1, min(options.concurrency, options.max_in_flight // slots)),
        flush_rows=max(1, options.flush_rows // slots),
    )
    progress = ProgressTracker(on_progress, len(members))
    ready = _Once(lambda: _prepare(data_dir, options))
    unreachable: list[ConfigError] = []
    busy: list[WriterBusy] = []
    damaged: list[DataError | OSError] = []

    def run(member: SourceTarget) -> SyncReport:
        failed = SyncReport(target=member)
        try:
            connected = _connect(data_dir, member, cancel)
        except _Unreachable as exc:
            unreachable.append(exc)
            failed.failures.append(Failure(member.source, member.region, None, str(exc)))
            failed.stats.add(exc.stats)
            progress.add(targets_done=1)
            return failed
        try:
            ready()  # the data dir is made only once a target could be reached
            return _sync_target(data_dir, connected, share, cancel, progress)
        except WriterBusy as exc:  # another writer holds this target
            busy.append(exc)
            failed.failures.append(Failure(member.source, member.region, None, str(exc)))
            return failed
        except (DataError, OSError) as exc:  # this target's files or writes: the others go on
            if not ready.done:
                raise  # the data dir itself could not be made
            damaged.append(exc)
            reason = str(exc) if isinstance(exc, DataError) else failure_reason(exc)
            failed.failures.append(Failure(member.source, member.region, None, reason))
            return failed
        finally:
            close_client(connected.client)
            progress.add(targets_done=1)

    pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="target")
    try:
        for done in _each_done(pool, run, members, cancel):
            report.merge(done)
    except BaseException:
        cancel.set()  # every target commits what it finished, then stops
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    errors += unreachable
    if errors and len(unreachable) == len(members):
        raise errors[0]
    if busy and len(busy) + len(unreachable) == len(members):
        raise busy[0]
    if damaged and len(damaged) + len(busy) + len(unreachable) == len(members):
        raise damaged[0]  # nothing was synced: exit 2 (a damaged file) or 1 (an I/O error)
    check_cancel(cancel)  # committed; the views can wait for the next run
    if ready.done:  # else nothing was written, and the data dir may not even exist
        log.info("every target done; checking the views")
        ensure_views(data_dir)
    log.info("sync done")
    report.seconds = time.monotonic() - started
    return report


class _Once:
    """Calls `fn` once, the first time it is called from any thread; later calls wait for it
    and raise what it raised."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self.done = False
        self._error: BaseException | None = None

    def __call__(self) -> None:
        with self._lock:
            if self._error is not None:
                raise self._error
            if not self.done:
                try:
                    self._fn()
                except BaseException as exc:
                    self._error = exc
                    raise
                self.done = True


def _prepare(data_dir: DataDir, options: SyncOptions) -> None:
    data_dir.prepare()
    _migrate(data_dir, options)


def _each_done(
    pool: ThreadPoolExecutor,
    fn: Callable[[SourceTarget], SyncReport],
    members: list[SourceTarget],
    cancel: threading.Event,
) -> Iterator[SyncReport]:
    """`fn` of every member on `pool`, as each finishes; the first exception is raised once
    every member has stopped (they commit what they finished when `cancel` is set)."""
    pending = {pool.submit(fn, member) for member in members}
    error: BaseException | None = None
    while pending:
        finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
        for future in finished:
            try:
                yield future.result()
            except BaseException as exc:
                cancel.set()
                error = error or exc
    if error is not None:
        raise error


def _migrate(data_dir: DataDir, options: SyncOptions) -> None:
    """Split an older data dir's single state file into per-target ones, once, holding the
    dataset lock (older versions of this tool hold it for the whole of their syncs)."""
    if not data_dir.store.is_file(legacy_state_file(data_dir)):
        return
    # Every process of the first sync after an upgrade gets here at once: they take turns.
    with data_dir.writer_lock(max(options.lock_timeout_s, MIGRATION_WAIT_S)):
        data_dir.recover_compaction()  # an older version's journal: the dataset's own
        try:
            moved = migrate_legacy_state(data_dir)
        except DataError:
            if not options.full_refresh:
                raise
            # The repair path, as for a corrupt per-target file: the source rebuilds it.
            legacy = [legacy_state_file(data_dir, previous=p) for p in (False, True)]
            data_dir.store.delete(legacy)
            moved = 0
    if moved:
        log.info("moved the state of %d targets into per-target files", moved)


def _sync_target(
    data_dir: DataDir,
    member: _Connected,
    options: SyncOptions,
    cancel: threading.Event,
    progress: ProgressTracker,
) -> SyncReport:
    """One target, holding its writer lock: its state, its images, its commits, its row of
    sync history and its compaction. ConfigError when another writer holds the target."""
    check_cancel(cancel)  # a target still queued when the run was stopped never starts
    started_ms = now_ms()
    target, key = member.target, member.target.key
    enriched = options.enrich or target.enrich
    report = SyncReport(targets=1, stats=member.stats, target=target, enriched=enriched)
    mine = data_dir.for_target(key)
    with data_dir.target_lock(key, options.lock_timeout_s, cancel):
        data_dir.store.make_dirs([mine.tmp_dir])
        mine.clean_tmp()
        mine.recover_compaction()
        states = (
            _load_state_or_empty(data_dir, key)
            if options.full_refresh
            else load_target_state(data_dir, key)
        )
        keep_previous_state(mine, key)
        observed_at_ms = max([started_ms, *((s.last_synced_ms or 0) + 1 for s in states.values())])
        committer = Committer(mine, key, states, options.flush_rows, options.commit_interval_s)
        run = TargetRun(mine, target, member.client, options, committer, report, cancel, progress)
        try:
            run.sync(observed_at_ms)
            save_rate_hint(mine, key, member.limiter.learned_rps)
        except BaseException as exc:
            committer.commit(_sync_run_row(target, states, report, started_ms, error=exc))
            raise
        finally:
            report.rows_written = committer.rows_written
        committer.commit(_sync_run_row(target, states, report, started_ms))
        report.rows_written = committer.rows_written
        check_cancel(cancel)
        if options.compact:  # only where this sync added files: a partition grows no other way
            mine.compact(min_files=AUTO_COMPACT_FILES + 1, owners=committer.partitions_written)
    log.info(
        "%s done: %d images, %d API calls", target.label, report.images, report.stats.total_calls
    )
    return report


def _sync_run_row(
    target: SourceTarget,
    states: Mapping[StateKey, ImageState],
    report: SyncReport,
    started_ms: int,
    error: BaseException | None = None,
) -> Row:
    """The target's row of `sync_runs`: what it did, and whether it succeeded; its time is
    the report's `seconds` too, so that the report's figures are the row's."""
    finished_ms = now_ms()
    report.seconds = (finished_ms - started_ms) / 1000
    accounts = sorted({state.account_id for state in states.values()})
    reasons = [str(failure) for failure in report.failures]
    if error is not None:
        reasons.insert(0, "interrupted" if isinstance(error, Cancelled) else failure_reason(error))
    return {
        "started_at": from_ms(started_ms),
        "finished_at": from_ms(finished_ms),
        "source": target.source,
        "account_id": accounts[0] if len(accounts) == 1 else None,
        "region": target.region,
        "images": report.images,
        "versions_new": report.new,
        "versions_changed": report.changed,
        "versions_deleted": report.deleted,
        "api_calls": report.stats.total_calls,
        "throttled_retries": report.stats.throttled,
        "seconds": report.seconds,
        "ok": not reasons,
        "error": redact("; ".join(reasons))[:2000] if reasons else None,
    }


class _Unreachable(ConfigError):
    """A target that cannot be connected to, with the calls that found it out."""

    def __init__(self, message: str, stats: ApiStats) -> None:
        super().__init__(message)
        self.stats = stats


def _expand(
    targets: list[SourceTarget],
    options: SyncOptions,
    report: SyncReport,
    cancel: threading.Event,
) -> tuple[list[SourceTarget], list[ConfigError]]:
    """Every target to sync: each plain one, and one per member account of an organization
    source (its accounts listed once and reused for each of its regions), in this process's
    shard. A source whose accounts cannot be listed is reported (and returned as an error)."""
    members: list[SourceTarget] = []
    errors: list[ConfigError] = []
    listings: dict[str, list[dict[str, Any]] | ConfigError] = {}
    for target in targets:
        check_cancel(cancel)
        try:
            members.extend(
                member
                for member in _members(target, listings, report.stats, cancel)
                if in_shard(member.key, options.shard)
            )
        except ConfigError as exc:
            errors.append(exc)
            report.failures.append(Failure(target.source, target.region, None, str(exc)))
    return members, errors


def _connect(data_dir: DataDir, member: SourceTarget, cancel: threading.Event) -> _Connected:
    """A client for one target that has credentials and a reachable endpoint, its request
    rate starting from what its last sync learned; _Unreachable when it has not."""
    stats = ApiStats()
    hint = load_rate_hint(data_dir, member.key)
    limiter = AdaptiveRateLimiter(member.client.max_rps, ssthresh=hint)
    try:
        guard = CallGuard(member.client.call_deadline_s, cancel)
        client = make_client(member.client, stats, guard, limiter)
        check_reachable(client)
    except ConfigError as exc:
        raise _Unreachable(str(exc), stats) from exc
    return _Connected(member, client, stats, limiter)


def _members(
    target: SourceTarget,
    listings: dict[str, list[dict[str, Any]] | ConfigError],
    stats: ApiStats,
    cancel: threading.Event,
) -> Iterator[SourceTarget]:
    """The target itself, or for an organization source one target per member account, named
    `SOURCE/ACCOUNT` so that each account keeps its own per-image state.

    `listings` holds each organization source's accounts (or why they could not be listed),
    filled by the source's first region. An allow-listed account that cannot be synced raises
    ConfigError after the others."""
    if target.client.organization is None:
        yield target
        return
    if target.source not in listings:
        guard = CallGuard(target.client.call_deadline_s, cancel)
        try:
            listings[target.source] = list_organization_accounts(target.client, stats, guard)
        except ConfigError as exc:
            listings[target.source] = exc
        finally:
            guard.close()
    listed = listings[target.source]
    if isinstance(listed, ConfigError):
        raise ConfigError(str(listed))
    problems = []
    for member in organization_members(target.client, listed):
        if member.settings is None:
            problems.append(f"account {member.account_id}: {member.problem}")
        else:
            yield SourceTarget(f"{target.source}/{member.account_id}", member.settings)
    if problems:
        raise ConfigError("; ".join(problems))


def _load_state_or_empty(data_dir: DataDir, key: str) -> dict[StateKey, ImageState]:
    """For --full-refresh, the repair path: a corrupt state file is rebuilt from the source."""
    try:
        return load_target_state(data_dir, key)
    except DataError:
        return {}

"""One sync: every target (source x region, or member account x region) side by side, each
connected when its turn comes and holding its own writer lock; once its catalogue names its
account, holding that account and region's lock too, so that one owner at a time writes an
account's partitions and state whichever sources reach it. Each target commits its row of
sync history; the data dir is made once some target is reachable, and migrated from the state
files of older releases. Inside one target: target_run.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from .allocator import prefer_system_allocator
from .clients import Clients, make_client
from .committer import Committer, roll_back_unfinished_commit
from .errors import ConfigError, DataError, WriterBusy, one_line
from .fanout import in_shard
from .guard import CallGuard, Cancelled, close_client
from .model import ImageState, Row, StateKey, split_account_key
from .ratelimit import AdaptiveRateLimiter, SharedStart
from .run import Failure, SourceTarget, SyncOptions, SyncReport
from .schema import from_ms
from .source import (
    AccountListings,
    ApiStats,
    check_reachable,
    list_organization_accounts,
    organization_members,
)
from .state import (
    drop_older_state,
    keep_previous_state,
    load_account_state,
    load_learned_rate,
    load_target_account,
    migrate_state,
    needs_migration,
    save_learned_rate,
    save_target_account,
)
from .storage import AUTO_COMPACT_FILES, DataDir
from .target_run import (
    POLL_S,
    Catalogue,
    Progress,
    ProgressCallback,
    ProgressTracker,
    TargetRun,
    check_cancel,
    failure_reason,
    now_ms,
)
from .warehouse import refresh_views

__all__ = ["Progress", "ProgressCallback", "list_organizations", "member_targets", "sync"]

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
    accounts: AccountListings | None = None,
) -> SyncReport:
    """One incremental sync of every target into `data_dir`, targets side by side, each
    connected when its turn comes and holding its own writer lock.

    Failures of one image or one target are reported in the result, never raised: everything
    else is committed. ConfigError is raised, before anything is written, when the data dir is
    not ours or no target can be reached at all, and after, when every target is held by
    another writer. Once `cancel` is set (or the main thread is interrupted), calls in flight
    are abandoned, what was finished is committed, and Cancelled (or the interrupt) is raised.
    An organization source's accounts are listed here unless `accounts` has them (or why
    they could not be: `list_organizations`, by whatever started the sync). From here on
    pyarrow allocates from the system allocator, unless the user chose one (allocator.py).
    """
    started = time.monotonic()
    cancel = cancel or threading.Event()
    prefer_system_allocator()
    data_dir.check_ours()
    members, errors, report = _expand(targets, options, cancel, dict(accounts or {}))
    report.enriched = any(options.enriching(member) for member in members)
    targets_run = _TargetsRun(data_dir, options, members, cancel, on_progress)
    for done in targets_run.each_done():
        report.merge(done)
    targets_run.check_any_synced(errors)
    check_cancel(cancel)  # committed; the views can wait for the next run
    if targets_run.ready.done:  # else nothing was written, and the data dir may not even exist
        log.info("every target done; checking the views")
        refresh_views(data_dir)
    log.info("sync done")
    report.seconds = time.monotonic() - started
    return report


class _TargetsRun:
    """The targets of one sync side by side, on a pool of `target_concurrency` threads, each
    with its share of the request and row budgets; and how each one that did not sync ended
    (unreachable, held by another writer, damaged)."""

    def __init__(
        self,
        data_dir: DataDir,
        options: SyncOptions,
        members: list[SourceTarget],
        cancel: threading.Event,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.data_dir = data_dir
        self.members = members
        self.cancel = cancel
        self.slots = max(1, min(options.target_concurrency, len(members)))
        self.share = replace(
            options,
            concurrency=max(1, min(options.concurrency, options.max_in_flight // self.slots)),
            flush_rows=max(1, options.flush_rows // self.slots),
        )
        # Every call in flight at once: the targets' catalogue listings and their workers.
        self.clients = Clients(pool_size=self.slots + options.max_in_flight)
        self.progress = ProgressTracker(on_progress, len(members))
        self.ready = _Once(lambda: _prepare(data_dir, options))
        self.owners = _Owners()
        # One probe of an unknown limit at a time, the others start from it.
        self.start = SharedStart()
        self.unreachable: list[ConfigError] = []
        self.busy: list[WriterBusy] = []
        self.damaged: list[DataError | OSError] = []

    def each_done(self) -> Iterator[SyncReport]:
        """Every target's report, as each finishes."""
        pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="target")
        try:
            yield from _each_done(pool, self._one, self.members, self.cancel)
        except BaseException:
            self.cancel.set()  # every target commits what it finished, then stops
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.clients.close()

    def _one(self, member: SourceTarget) -> SyncReport:
        """One target's report: what it synced, or why it could not."""
        try:
            connected = _connect(self.data_dir, member, self.cancel, self.start, self.clients)
        except _Unreachable as exc:
            self.unreachable.append(exc)
            self.progress.add(targets_done=1)
            return _failed(member, str(exc), exc.stats)
        try:
            self.ready()  # the data dir is made only once a target could be reached
            return _TargetSync(
                self.data_dir, connected, self.share, self.cancel, self.progress, self.owners
            ).run()
        except WriterBusy as exc:  # another writer holds this target
            self.busy.append(exc)
            return _failed(member, str(exc))
        except (DataError, OSError) as exc:  # this target's files or writes: the others go on
            if not self.ready.done:
                raise  # the data dir itself could not be made
            self.damaged.append(exc)
            return _failed(member, str(exc) if isinstance(exc, DataError) else failure_reason(exc))
        finally:
            connected.limiter.finish()
            close_client(connected.client)
            self.progress.add(targets_done=1)

    def check_any_synced(self, errors: list[ConfigError]) -> None:
        """Raise why when no target synced: all unreachable (the first error, the sources'
        own included), else all busy or unreachable, else all damaged, busy or unreachable
        (exit 2 for a damaged file, 1 for an I/O error)."""
        members, unreachable, busy = len(self.members), self.unreachable, self.busy
        errors = errors + unreachable
        if errors and len(unreachable) == members:
            raise errors[0]
        if busy and len(busy) + len(unreachable) == members:
            raise busy[0]
        if self.damaged and len(self.damaged) + len(busy) + len(unreachable) == members:
            raise self.damaged[0]


def _failed(member: SourceTarget, reason: str, stats: ApiStats | None = None) -> SyncReport:
    """The report of a target that did not sync."""
    failure = Failure(member.source, member.region, None, reason)
    return SyncReport(target=member, failures=[failure], stats=stats or ApiStats())


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
    """Merge an older data dir's state files (per target, or its single one) into per-account
    files, once, holding the whole dataset (older releases hold the dataset lock for the whole
    of their syncs, or their target's lock)."""
    if not needs_migration(data_dir):
        return
    # Every process of the first sync after an upgrade gets here at once: they take turns.
    with data_dir.exclusive(max(options.lock_timeout_s, MIGRATION_WAIT_S)):
        data_dir.recover_compaction(every=True)  # an older release's journals
        try:
            moved = migrate_state(data_dir)
        except DataError:
            if not options.full_refresh:
                raise
            drop_older_state(data_dir)  # the repair path: the source rebuilds it
            moved = 0
    if moved:
        log.info("moved the state of %d accounts and regions into per-account files", moved)


class _Owners:
    """The accounts and regions this run has synced (or is syncing), and through which
    target: a second source that reaches one of them has nothing left to do."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by: dict[str, str] = {}

    def claim(self, account: str, label: str) -> str | None:
        """None when `label` is the first to claim `account`; else the first's label."""
        with self._lock:
            first = self._by.setdefault(account, label)
        return None if first == label else first


class _TargetSync:
    """One target's sync, adding up its report as its steps finish: holding its writer lock,
    its catalogue; then, holding its account's lock, that account's state, images, commits
    and compaction; and its row of sync history. WriterBusy when another writer holds the
    target or its account too long."""

    def __init__(
        self,
        data_dir: DataDir,
        member: _Connected,
        options: SyncOptions,
        cancel: threading.Event,
        progress: ProgressTracker,
        owners: _Owners,
    ) -> None:
        self.data_dir, self.member, self.options = data_dir, member, options
        self.cancel, self.progress, self.owners = cancel, progress, owners
        self.started_ms = now_ms()
        self.target, self.key = member.target, member.target.key
        enriched = options.enriching(self.target)
        self.report = SyncReport(
            targets=1, stats=member.stats, target=self.target, enriched=enriched
        )
        self.mine = data_dir.for_target(self.key)
        # The target's history alone, until it owns an account (`_sync_owned`).
        self.committer = Committer(self.mine, self.key, {}, options.flush_rows)
        self.account: str | None = None

    def run(self) -> SyncReport:
        check_cancel(self.cancel)  # a target still queued when the run was stopped never starts
        options = self.options
        with self.data_dir.target_lock(self.key, options.lock_timeout_s, self.cancel):
            self.data_dir.store.make_dirs([self.mine.tmp_dir])
            self.mine.clean_tmp()
            self.mine.recover_compaction()  # an older release's journal of this target
            with contextlib.ExitStack() as owning:
                try:
                    self._sync(owning)
                except BaseException as exc:
                    self._commit_history(exc)
                    raise
                self._commit_history()
                check_cancel(self.cancel)
                if options.compact:  # only where this sync added files: a partition grows no
                    self.committer.data_dir.compact(  # other way
                        min_files=AUTO_COMPACT_FILES + 1, owners=self.committer.partitions_written
                    )
        report = self.report
        log.info(
            "%s done: %d images, %d API calls",
            *(self.target.label, report.images, report.stats.total_calls),
        )
        return report

    def _sync(self, owning: contextlib.ExitStack) -> None:
        """The catalogue; then its images, synced by the first target of this run to reach
        their account (holding that account's lock in `owning`)."""
        run = TargetRun(
            self.data_dir, self.target, self.member.client, self.options, self.cancel, self.progress
        )
        catalogue, failures = run.list_catalogue()
        self.report.failures += failures
        if catalogue is None:
            return
        self.account = catalogue.account(load_target_account(self.mine, self.key))
        if self.account is None:  # no image, ever: no owner
            self._add_up(run.sync(catalogue, self.committer, self.started_ms))
        elif (first := self.owners.claim(self.account, self.target.label)) is not None:
            log.warning(
                "%s and %s both reach account and region %s: synced once, as %s",
                *(first, self.target.label, self.account, first),
            )
        else:
            self._sync_owned(run, catalogue, self.account, owning)
        if self.account is not None:
            save_target_account(self.mine, self.key, self.account)

    def _sync_owned(
        self, run: TargetRun, catalogue: Catalogue, account: str, owning: contextlib.ExitStack
    ) -> None:
        """The account's images, holding its lock, from its state, at its learned rate."""
        options, limiter = self.options, self.member.limiter
        lock = self.data_dir.account_lock(account, options.lock_timeout_s, self.cancel)
        owning.enter_context(lock)
        limiter.adopt(load_learned_rate(self.data_dir, account))
        self.committer = _owner_committer(self.data_dir, account, self.key, options)
        observed_at_ms = _observed_at(self.started_ms, self.committer.states)
        self._add_up(run.sync(catalogue, self.committer, observed_at_ms))
        save_learned_rate(self.data_dir.for_account(account), account, limiter.learned)

    def _add_up(self, done: Iterable[SyncReport]) -> None:
        """Add each step's report to the target's as the step is committed: an interrupted
        sync's history row counts what it finished."""
        for step in done:
            self.report.merge(step)

    def _commit_history(self, error: BaseException | None = None) -> None:
        """Commit what is buffered and the target's row of sync history last; the report's
        time and rows written are the row's."""
        finished_ms = now_ms()
        self.report.seconds = (finished_ms - self.started_ms) / 1000
        row = _sync_run_row(
            self.target, self.account, self.report, (self.started_ms, finished_ms), error
        )
        try:
            self.committer.commit(row)
        finally:
            self.report.rows_written = self.committer.rows_written


def _owner_committer(data_dir: DataDir, account: str, key: str, options: SyncOptions) -> Committer:
    """The committer of an account and region whose lock is held: its state loaded (empty for
    --full-refresh over a corrupt one, the repair path), the state kept aside first."""
    owned = data_dir.for_account(account)
    data_dir.store.make_dirs([owned.tmp_dir])
    owned.clean_tmp()
    owned.recover_compaction()
    try:
        roll_back_unfinished_commit(data_dir, account)
        states = load_account_state(data_dir, account)
    except DataError:
        if not options.full_refresh:
            raise
        states = {}
    keep_previous_state(owned, account)
    return Committer(owned, key, states, options.flush_rows, options.commit_interval_s)


def _observed_at(started_ms: int, states: Mapping[StateKey, ImageState]) -> int:
    """When this sync saw what it lists: never before an earlier sync of the account did."""
    return max([started_ms, *((s.last_synced_ms or 0) + 1 for s in states.values())])


def _sync_run_row(
    target: SourceTarget,
    account: str | None,
    report: SyncReport,
    span_ms: tuple[int, int],
    error: BaseException | None = None,
) -> Row:
    """The target's row of `sync_runs`: what it did from the start to the end of `span_ms`,
    and whether it succeeded; the account (`account_key`) its listing reached, when it did."""
    started_ms, finished_ms = span_ms
    reasons = [str(failure) for failure in report.failures]
    if error is not None:
        reasons.insert(0, "interrupted" if isinstance(error, Cancelled) else failure_reason(error))
    return {
        "started_at": from_ms(started_ms),
        "finished_at": from_ms(finished_ms),
        "source": target.source,
        "account_id": None if account is None else split_account_key(account)[0],
        "region": target.region,
        "images": report.images,
        "versions_new": report.new,
        "versions_changed": report.changed,
        "versions_deleted": report.deleted,
        "api_calls": report.stats.total_calls,
        "throttled_retries": report.stats.throttled,
        "seconds": (finished_ms - started_ms) / 1000,
        "ok": not reasons,
        "error": one_line("; ".join(reasons), max_chars=2000) if reasons else None,
    }


class _Unreachable(ConfigError):
    """A target that cannot be connected to, with the calls that found it out."""

    def __init__(self, message: str, stats: ApiStats) -> None:
        super().__init__(message)
        self.stats = stats


def _expand(
    targets: list[SourceTarget],
    options: SyncOptions,
    cancel: threading.Event,
    listings: AccountListings,
) -> tuple[list[SourceTarget], list[ConfigError], SyncReport]:
    """Every target to sync: each plain one, and one per member account of an organization
    source (its accounts listed once unless `listings` has them, and reused for each of its
    regions), in this process's shard; the sources whose accounts cannot be listed (as
    errors); and the report of the listing (its calls, and those sources' failures)."""
    members: list[SourceTarget] = []
    errors: list[ConfigError] = []
    listed = SyncReport()
    for target in targets:
        check_cancel(cancel)
        try:
            members.extend(
                member
                for member in member_targets(target, listings, listed.stats, cancel)
                if in_shard(member.key, options.shard)
            )
        except ConfigError as exc:
            errors.append(exc)
            listed.failures.append(Failure(target.source, target.region, None, str(exc)))
    return members, errors, listed


def _connect(
    data_dir: DataDir,
    member: SourceTarget,
    cancel: threading.Event,
    start: SharedStart,
    clients: Clients,
) -> _Connected:
    """A client for one target (of `clients`) that has credentials and a reachable endpoint,
    its request rate starting from the limit found of the account it reached last (or, new,
    from what `start` finds); _Unreachable when it has not."""
    stats = ApiStats()
    account = load_target_account(data_dir, member.key)
    learned = load_learned_rate(data_dir, account) if account else None
    limiter = AdaptiveRateLimiter(member.client.max_rps, learned=learned, shared=start)
    try:
        guard = CallGuard(member.client.call_deadline_s, cancel)
        client = make_client(member.client, stats, guard, limiter, clients=clients)
        check_reachable(client)
    except ConfigError as exc:
        raise _Unreachable(str(exc), stats) from exc
    return _Connected(member, client, stats, limiter)


def list_organizations(
    targets: Iterable[SourceTarget], stats: ApiStats, cancel: threading.Event
) -> AccountListings:
    """The accounts of each organization source of `targets` (or why they could not be
    listed), listed once a source, the calls counted in `stats`: what starts a sync lists
    them, for its count of the targets and for the sync (`sync`'s `accounts`)."""
    listings: AccountListings = {}
    for target in targets:
        if target.client.organization is not None:
            check_cancel(cancel)
            _list_once(target, listings, stats, cancel)
    return listings


def _list_once(
    target: SourceTarget, listings: AccountListings, stats: ApiStats, cancel: threading.Event
) -> list[dict[str, Any]] | ConfigError:
    """The accounts of `target`'s organization source, from `listings` or listed into it."""
    if target.source not in listings:
        log.info("listing the accounts of organization source %s", target.source)
        guard = CallGuard(target.client.call_deadline_s, cancel)
        try:
            listings[target.source] = list_organization_accounts(target.client, stats, guard)
        except ConfigError as exc:
            listings[target.source] = exc
    return listings[target.source]


def member_targets(
    target: SourceTarget,
    listings: AccountListings,
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
    listed = _list_once(target, listings, stats, cancel)
    if isinstance(listed, ConfigError):
        raise ConfigError(str(listed))
    problems = []
    for member in organization_members(target.client, listed):
        if member.settings is None:
            problems.append(f"account {member.account_id}: {member.problem}")
        else:
            # The source's opt-ins (enrich, tags) hold for each of its member accounts.
            yield replace(
                target, source=f"{target.source}/{member.account_id}", client=member.settings
            )
    if problems:
        raise ConfigError("; ".join(problems))

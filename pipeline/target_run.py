"""One target's run: its catalogue, then every image's versions (classified, described when
enriching), then the tombstones of deleted images, committed through the target's committer.

`extract.sync` runs the targets side by side; what happens inside one is here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

from .aws_errors import AwsErrorKind, aws_failure, describe, kind_of
from .committer import Committer
from .dataset import Described, described_states, latest_live_rows, stored_images
from .decisions import (
    Classified,
    advance_state,
    classify,
    deleted_image_state,
    latest_per_image,
    listing_filter_ms,
    listing_start_ms,
    on_or_after,
    plan_images,
    versions_to_describe,
    versions_with_moved_aliases,
)
from .enrichment import alias_holders, deepen_images, describe_versions, retagged_versions
from .errors import DataError, one_line
from .guard import Cancelled, close_client
from .model import ImageState, Row, account_key
from .redact import redact
from .run import Failure, SourceTarget, SyncOptions, SyncReport
from .schema import (
    IMAGE_SCHEMA,
    MalformedRecord,
    Tags,
    from_ms,
    image_name_of,
    image_row,
    rows_to_table,
    version_row,
)
from .source import list_image_versions, patiently
from .source import list_images as list_source_images
from .storage import DataDir

__all__ = [
    "POLL_S",
    "Catalogue",
    "Progress",
    "ProgressCallback",
    "ProgressTracker",
    "TargetRun",
    "check_cancel",
    "failure_reason",
    "now_ms",
]

log = logging.getLogger(__name__)


POLL_S = 0.1
"""How often a thread waiting on others looks up to see whether the sync was cancelled."""


@dataclass(frozen=True)
class _ImageJob:
    target: SourceTarget
    name: str
    state: ImageState
    stored: Mapping[int, Row] | None
    enrich: bool = False
    described: Described | None = None
    """For a full listing: what enrichment stored of the image (its described states, and
    each version's aliases and tags), to backfill and to compare the aliases and tags with."""
    tags: bool = False
    """Record the tags of the versions it describes, and on a full listing read every live
    version's (`retagged_versions`)."""


@dataclass
class _ImageResult:
    job: _ImageJob
    listed: list[Row]
    error: str | None = None
    gone: bool = False
    classified: Classified = field(default_factory=Classified)
    details: list[Row] = field(default_factory=list)
    vanished: int = 0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _fetch_image(
    client: Any, job: _ImageJob, options: SyncOptions, observed_at_ms: int
) -> _ImageResult:
    """List one image's versions, classify them and, when enriching, describe the new and
    changed ones (the only part that runs on worker threads)."""
    log.debug("listing versions of %s/%s", job.target.label, job.name)
    start = listing_start_ms(
        job.state, int(options.lookback.total_seconds() * 1000), options.full_listing
    )
    account_region = (job.state.account_id, job.target.region)
    listed: list[Row] = []
    try:
        since = None if start is None else from_ms(listing_filter_ms(start))
        for page in list_image_versions(client, job.name, since):
            listed.extend(
                version_row(
                    job.name,
                    item,
                    observed_at_ms=observed_at_ms,
                    image_account_region=account_region,
                )
                for item in page
            )
        listed = on_or_after(listed, start)
        if job.stored is not None:
            listed += _unlisted_but_live(client, job, job.stored, listed, observed_at_ms)
        classified = classify(listed, job.state, job.stored, observed_at_ms=observed_at_ms)
        details: list[Row] = []
        vanished = 0
        if job.enrich:
            described, moved = None, set()
            read_tags: dict[int, Tags] = {}
            if job.described is not None:
                described = job.described.states
                moved = versions_with_moved_aliases(
                    alias_holders(client, job.name), job.described.aliases
                )
            wanted = versions_to_describe(classified, listed, described, moved)
            if job.tags and job.described is not None:
                read_tags, retagged = retagged_versions(
                    client, listed, job.described.tags, skip=[row["version"] for row in wanted]
                )
                wanted = versions_to_describe(classified, listed, described, moved | retagged)
            details, vanished = describe_versions(
                client, wanted, observed_at_ms, tags=job.tags, read_tags=read_tags
            )
    except Cancelled:
        raise
    except Exception as exc:  # bad data or a broken answer fails this image, never the run
        failure = aws_failure(exc)
        if failure is not None and failure.kind is AwsErrorKind.NOT_FOUND:
            return _ImageResult(job, [], "deleted while the sync ran (tombstoned)", gone=True)
        if failure is None and not isinstance(exc, MalformedRecord):
            log.debug("%s/%s failed", job.target.label, job.name, exc_info=True)
        return _ImageResult(job, [], failure_reason(exc))
    return _ImageResult(job, listed, classified=classified, details=details, vanished=vanished)


def _unlisted_but_live(
    client: Any, job: _ImageJob, stored: Mapping[int, Row], listed: list[Row], observed_at_ms: int
) -> list[Row]:
    """The versions stored live that a full listing left out but that still exist, as
    DescribeImageVersion gives them: absence alone never tombstones a version.

    The model says archived versions "are not searchable"; if ListImageVersions leaves them
    out, a reconcile would take them for deleted. Only ResourceNotFound proves a deletion.
    Costs one call per such version and reconcile: once for a deleted one (tombstoned
    then), every reconcile for an archived one (docs/aws-behaviour.md).
    """
    from botocore.exceptions import ClientError

    seen = {row["version"] for row in listed}
    found = []
    for version in sorted(stored.keys() - seen):
        try:
            item = patiently(client.describe_image_version, ImageName=job.name, Version=version)
        except ClientError as exc:
            if kind_of(exc) is AwsErrorKind.NOT_FOUND:
                continue
            raise
        row = version_row(
            job.name,
            item,
            observed_at_ms=observed_at_ms,
            image_account_region=(job.state.account_id, job.target.region),
        )
        if row["version"] != version:
            raise MalformedRecord(f"DescribeImageVersion of version {version} named another")
        log.info("%s version %d is not listed but exists (archived?): kept", job.name, version)
        found.append(row)
    return found


@dataclass
class Progress:
    """How far a sync is: targets finished of those to sync, images listed of those planned
    (the plan grows as targets list their catalogues)."""

    targets_done: int = 0
    targets: int = 0
    images_done: int = 0
    images: int = 0


ProgressCallback = Callable[[Progress], None]
"""Called with a snapshot after each image and each target (from any worker thread, one call
at a time)."""


class ProgressTracker:
    def __init__(self, callback: ProgressCallback | None, targets: int) -> None:
        self._callback = callback
        self._progress = Progress(targets=targets)
        self._lock = threading.Lock()

    def add(self, *, targets_done: int = 0, images_done: int = 0, images: int = 0) -> None:
        with self._lock:
            self._progress.targets_done += targets_done
            self._progress.images_done += images_done
            self._progress.images += images
            if self._callback is not None:
                self._callback(replace(self._progress))


def check_cancel(cancel: threading.Event) -> None:
    """Cancelled once the run was asked to stop: checked between the phases of a sync."""
    if cancel.is_set():
        raise Cancelled()


@dataclass
class Catalogue:
    """A region's ListImages as rows, and what could not be read of it."""

    rows: list[Row]
    failed: dict[str, str]
    """Images whose record is malformed -> why: failed this run, never taken as deleted."""
    complete: bool
    """Every record named a valid image: only then can an absent image be taken as deleted."""
    unnamed: list[str] = field(default_factory=list)
    """Why each record that names no valid image could not be read: failures of the target."""

    def account(self, last_known: str | None) -> str | None:
        """The account and region (`account_key`) this listing is of: the one its images
        name, else (no image listed) the one the target reached last time, whose images may
        all have been deleted; None when neither is known."""
        named = Counter(account_key(row["account_id"], row["region"]) for row in self.rows)
        if not named:
            return last_known
        return max(sorted(named), key=lambda key: named[key])

    def keep_account(self) -> None:
        """Fail the images whose ARN names another account than the listing's (`account`):
        one target's state and partitions are one account's."""
        owner = self.account(None)
        for row in [
            row for row in self.rows if account_key(row["account_id"], row["region"]) != owner
        ]:
            self.rows.remove(row)
            self.failed[row["image_name"]] = (
                f"MalformedRecord: ImageArn names account {row['account_id']}, but this "
                f"listing is of {owner}"
            )


@dataclass
class TargetRun:
    """One (source, region): the catalogue, then every image's versions, then tombstones.

    Whatever goes wrong with the target's answers fails the target (or one image of it), never
    the run: only cancellation and a damaged data dir (DataError) get past it. What it did
    comes back as SyncReports, for the caller to add up.
    """

    data_dir: DataDir
    target: SourceTarget
    client: Any
    options: SyncOptions
    cancel: threading.Event
    progress: ProgressTracker

    def list_catalogue(self) -> tuple[Catalogue | None, list[Failure]]:
        """The region's images (None when they could not be listed: the target failed), and
        the target's failures."""
        try:
            catalogue = self._list_catalogue()
        except (Cancelled, DataError):
            raise
        except Exception as exc:
            log.debug("%s failed", self.target.label, exc_info=True)
            close_client(self.client)
            return None, [self._failure(None, failure_reason(exc))]
        return catalogue, [self._failure(None, reason) for reason in catalogue.unnamed]

    def sync(
        self, catalogue: Catalogue, committer: Committer, observed_at_ms: int
    ) -> Iterator[SyncReport]:
        """Every image of `catalogue` (all of one account), committed through `committer`,
        which holds that account's state; what each step did, as it is committed."""
        try:
            yield from self._sync(catalogue, committer, observed_at_ms)
        except (Cancelled, DataError):
            raise
        except Exception as exc:
            log.debug("%s failed", self.target.label, exc_info=True)
            yield SyncReport(failures=[self._failure(None, failure_reason(exc))])
        finally:
            close_client(self.client)  # its connections close here, not at the run's end

    def _failure(self, image_name: str | None, reason: str) -> Failure:
        return Failure(self.target.source, self.target.region, image_name, reason)

    def _sync(
        self, catalogue: Catalogue, committer: Committer, observed_at_ms: int
    ) -> Iterator[SyncReport]:
        catalogue.keep_account()
        for row in catalogue.rows:
            row["observed_at"] = observed_at_ms
        known = {
            name: replace(state, source=self.target.source)
            for (_, _, name), state in committer.states.items()
        }
        yield SyncReport(failures=self._fail_malformed(catalogue, known, committer))
        if self.options.tagging(self.target):
            yield SyncReport(failures=self._deepen(catalogue))
        self._write_images(catalogue, known)
        plan = _plan(self.data_dir, self.target, catalogue, known, self.options)
        yield SyncReport(images=len(plan.jobs), failures=plan.failures)
        self.progress.add(images=len(plan.jobs))
        gone = list(plan.gone)
        for result in self._fetch(plan.jobs, observed_at_ms):
            yield _absorb(result, self.options, committer, observed_at_ms)
            if result.gone:
                gone.append(result.job.state)
            self.progress.add(images_done=1)
        yield _tombstone_images(self.data_dir, self.target, gone, committer, observed_at_ms)

    def _fail_malformed(
        self, catalogue: Catalogue, known: Mapping[str, ImageState], committer: Committer
    ) -> list[Failure]:
        """The failures of the wanted images whose record is malformed; a known one's state
        keeps the error."""
        wanted = self.options.image_names
        failures = []
        for name, reason in sorted(catalogue.failed.items()):
            if wanted is None or name in wanted:
                failures.append(self._failure(name, reason))
                if name in known:
                    committer.add([], replace(known[name], last_error=redact(reason)))
        return failures

    def _deepen(self, catalogue: Catalogue) -> list[Failure]:
        """The roles and tags of the catalogue's images (`deepen_images`); the failures of
        those that could not be read."""
        rows = catalogue.rows  # of one account (`Catalogue.keep_account`)
        stored = (
            stored_images(self.data_dir, rows[0]["account_id"], self.target.region) if rows else {}
        )
        failed = deepen_images(
            self.client,
            catalogue.rows,
            stored,
            describe_all=self.options.full_listing,
            wanted=self.options.image_names,
            workers=self.options.concurrency,
        )
        check_cancel(self.cancel)
        return [self._failure(name, failure_reason(exc)) for name, exc in sorted(failed.items())]

    def _write_images(self, catalogue: Catalogue, known: Mapping[str, ImageState]) -> None:
        """The catalogue snapshot of every account it or the state names (an account whose
        images are all gone gets an empty one)."""
        rows = catalogue.rows
        accounts = {row["account_id"] for row in rows} | {s.account_id for s in known.values()}
        for account in sorted(accounts):
            mine = [row for row in rows if row["account_id"] == account]
            self.data_dir.write_images(
                account, self.target.region, rows_to_table(mine, IMAGE_SCHEMA)
            )

    def _fetch(self, jobs: list[_ImageJob], observed_at_ms: int) -> Iterator[_ImageResult]:
        """Every job's result, fetched on worker threads, as each finishes."""

        def fetch(job: _ImageJob) -> _ImageResult:
            return _fetch_image(self.client, job, self.options, observed_at_ms)

        workers = max(1, self.options.concurrency)
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            yield from _bounded_map(pool, fetch, jobs, 2 * workers, self.cancel)
        finally:
            # Not waiting: after a cancellation a worker may still sit in a back-off sleep.
            pool.shutdown(wait=not self.cancel.is_set(), cancel_futures=True)

    def _list_catalogue(self) -> Catalogue:
        """The region's images, as far as their records can be read (stamped when the
        sync's observation time is known, `_sync`).

        A malformed record fails its image alone; one that names no valid image makes the
        listing incomplete, so that no image of the region is taken as deleted this run.
        """
        log.info("listing images of %s", self.target.label)
        catalogue = Catalogue([], {}, complete=True)
        for item in list_source_images(self.client):
            name = image_name_of(item) if isinstance(item, Mapping) else None
            try:
                if not isinstance(item, Mapping):
                    raise MalformedRecord(f"not an Image record: {type(item).__name__}")
                catalogue.rows.append(image_row(item, observed_at_ms=0, region=self.target.region))
            except MalformedRecord as exc:
                if name is None:
                    catalogue.complete = False
                    catalogue.unnamed.append(
                        f"a ListImages record that names no valid image: {exc}"
                    )
                else:
                    catalogue.failed[name] = f"{type(exc).__name__}: {exc}"
        catalogue.rows, repeated = latest_per_image(catalogue.rows)
        for name in repeated:
            log.warning(
                "%s: ListImages listed %s more than once; kept its latest record",
                self.target.label,
                name,
            )
        if not catalogue.complete:
            log.warning(
                "%s: the image listing is incomplete; no image is taken as deleted",
                self.target.label,
            )
        return catalogue


def _bounded_map(
    pool: ThreadPoolExecutor,
    fn: Callable[[_ImageJob], _ImageResult],
    jobs: list[_ImageJob],
    ahead: int,
    cancel: threading.Event,
) -> Iterator[_ImageResult]:
    """`fn` over `jobs` on `pool`, in completion order, with at most `ahead` in flight.

    Unlike submitting everything at once, a finished image's rows are released as soon as
    they are absorbed, so memory holds a few images, not the whole region. Cancelled once
    `cancel` is set: the jobs not started never start.
    """
    queue = iter(jobs)
    pending: set[Future[_ImageResult]] = {pool.submit(fn, job) for job in islice(queue, ahead)}
    while pending:
        if cancel.is_set():
            raise Cancelled()
        finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
        for future in finished:
            pending.update(pool.submit(fn, job) for job in islice(queue, 1))
            yield future.result()


@dataclass(frozen=True)
class _Plan:
    """What a target's sync does with its catalogue."""

    jobs: list[_ImageJob]
    """The images to list, with their state, and stored rows for a full listing."""
    gone: list[ImageState]
    """The known images that are gone from the catalogue, to tombstone."""
    failures: list[Failure]
    """The wanted images that are in neither the catalogue nor the state."""


def _plan(
    data_dir: DataDir,
    target: SourceTarget,
    catalogue: Catalogue,
    known: dict[str, ImageState],
    options: SyncOptions,
) -> _Plan:
    """The images to list (with their state, and stored rows for a full listing), the images
    gone, and the failures of the wanted images that do not exist (`plan_images`)."""
    stored = _Stored.read(data_dir, target, catalogue, known, options)
    images = plan_images(
        catalogue.rows,
        catalogue.failed.keys(),
        source=target.source,
        complete=catalogue.complete,
        known=known,
        wanted=options.image_names,
        stored=None if stored is None else stored.rows,
    )
    return _Plan(
        jobs=[_job(target, state, stored, options) for state in images.to_list],
        gone=images.gone,
        failures=[
            Failure(target.source, target.region, name, "no such image in this region")
            for name in images.unknown
        ],
    )


@dataclass(frozen=True)
class _Stored:
    """What a full listing compares with: the live rows stored of every image of the
    catalogue's accounts, and (when enriching) which of the wanted images' states have
    details."""

    rows: dict[str, dict[int, Row]]
    described: dict[str, Described]

    @classmethod
    def read(
        cls,
        data_dir: DataDir,
        target: SourceTarget,
        catalogue: Catalogue,
        known: Mapping[str, ImageState],
        options: SyncOptions,
    ) -> _Stored | None:
        """None for an incremental listing, which compares with the state alone. Every live
        image stored, listed or not: `plan_images` tombstones those nothing accounts for."""
        if not options.full_listing:
            return None
        wanted = options.image_names
        stored = cls({}, {})
        accounts = {row["account_id"] for row in catalogue.rows}
        accounts |= {state.account_id for state in known.values()}
        for account in sorted(accounts):
            stored.rows.update(latest_live_rows(data_dir, account, target.region))
            if options.enriching(target):
                names = [
                    row["image_name"]
                    for row in catalogue.rows
                    if row["account_id"] == account
                    and (wanted is None or row["image_name"] in wanted)
                ]
                stored.described.update(described_states(data_dir, account, target.region, names))
        return stored


def _job(
    target: SourceTarget, state: ImageState, stored: _Stored | None, options: SyncOptions
) -> _ImageJob:
    """The listing of one image from `state` (`plan_images`)."""
    name = state.image_name
    enrich, tags = options.enriching(target), options.tagging(target)
    if stored is None:
        return _ImageJob(target, name, state, None, enrich, None, tags)
    rows, described = stored.rows.get(name, {}), stored.described.get(name, Described())
    return _ImageJob(target, name, state, rows, enrich, described, tags)


def failure_reason(exc: BaseException) -> str:
    """Why a call or a record failed, in one line, without credentials."""
    return one_line(describe(exc))


def _absorb(
    result: _ImageResult,
    options: SyncOptions,
    committer: Committer,
    observed_at_ms: int,
) -> SyncReport:
    """Hand one image's rows and new state to `committer`; what that did."""
    job = result.job
    if result.error is not None:
        if not result.gone:
            committer.add([], replace(job.state, last_error=result.error))
        return SyncReport(
            failures=[Failure(job.target.source, job.target.region, job.name, result.error)]
        )
    classified = result.classified
    done = SyncReport(described=len(result.details), details_vanished=result.vanished)
    done.record(job.target, job.name, classified)
    lookback_ms = int(options.lookback.total_seconds() * 1000)
    new_state = advance_state(
        job.state,
        result.listed,
        lookback_ms=lookback_ms,
        full_listing=options.full_listing,
        synced_at_ms=observed_at_ms,
    )
    if new_state.watermark_ms is not None:
        done.watermarks.append(new_state.watermark_ms)
    committer.add(classified.to_write, new_state, result.details)
    return done


def _tombstone_images(
    data_dir: DataDir,
    target: SourceTarget,
    gone: list[ImageState],
    committer: Committer,
    observed_at_ms: int,
) -> SyncReport:
    """Turn every stored live version of deleted images into tombstones; what that did."""
    done = SyncReport()
    by_account: dict[str, list[ImageState]] = {}
    for state in gone:
        by_account.setdefault(state.account_id, []).append(state)
    for account, states in sorted(by_account.items()):
        stored = latest_live_rows(data_dir, account, target.region, [s.image_name for s in states])
        for state in states:
            result = classify(
                [], state, stored.get(state.image_name, {}), observed_at_ms=observed_at_ms
            )
            done.record(target, state.image_name, result)
            committer.add(result.to_write, deleted_image_state(state, synced_at_ms=observed_at_ms))
    return done

"""What one sync is asked to do (options, targets) and what it did (the report, failures).

The types that the command line, Dagster and the sources file build or read; importing them
does not import the sync engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from .defaults import (
    COMMIT_INTERVAL_S,
    CONCURRENCY,
    LOOKBACK_MINUTES,
    MAX_IN_FLIGHT,
    TARGET_CONCURRENCY,
)
from .fanout import Shard
from .model import target_key
from .redact import redact
from .settings import check_group, option_named
from .source import ApiStats, ClientSettings

if TYPE_CHECKING:
    from .decisions import Classified

__all__ = ["Failure", "SourceTarget", "SyncOptions", "SyncReport"]


@dataclass(frozen=True)
class SyncOptions:
    """What one sync does, from CLI flags, Dagster config or code.

    Its options are declared in settings.OPTIONS (group `sync`, and `concurrency`), and checked
    against them however it is built: an invalid one raises ConfigError.
    """

    image_names: frozenset[str] | None = None
    """None: every image. Any iterable of names is taken (as a frozenset; empty: None)."""
    full_refresh: bool = False
    reconcile: bool = False
    lookback_minutes: float = LOOKBACK_MINUTES
    concurrency: int = CONCURRENCY
    target_concurrency: int = TARGET_CONCURRENCY
    max_in_flight: int = MAX_IN_FLIGHT
    flush_rows: int = 50_000
    """Rows buffered before a commit, across all targets running (each gets its share)."""
    commit_interval_s: float = COMMIT_INTERVAL_S
    """Commit what is done at least this often, so an interrupted sync keeps its progress."""
    lock_timeout_s: float = 0.0
    """How long a target waits for another writer of it to finish."""
    enrich: bool = False
    """Describe new and changed versions (DescribeImageVersion + ListAliases) for every target."""
    tags: bool = False
    """Record image roles and the tags of images and versions for every target (and enrich)."""
    compact: bool = True
    """Compact each target's crowded partitions once its data is committed."""
    shard: Shard | None = None
    """Sync only this shard of the targets (fanout.py: `sync --processes`)."""

    def __post_init__(self) -> None:
        check_group(self, "sync")
        option_named("concurrency").check(self.concurrency)
        names = frozenset(self.image_names or ()) or None
        object.__setattr__(self, "image_names", names)

    @property
    def lookback(self) -> timedelta:
        """How far before each watermark a listing starts again."""
        return timedelta(minutes=self.lookback_minutes)

    @property
    def full_listing(self) -> bool:
        return self.full_refresh or self.reconcile

    def tagging(self, target: SourceTarget) -> bool:
        """Whether `target`'s images get their roles and tags, and its versions their tags."""
        return self.tags or target.tags

    def enriching(self, target: SourceTarget) -> bool:
        """Whether `target`'s versions get their details (tags imply them: version tags are
        recorded with the details)."""
        return self.enrich or target.enrich or self.tagging(target)


@dataclass(frozen=True)
class SourceTarget:
    """One (named source, region) to sync, with how to reach it."""

    source: str
    client: ClientSettings
    enrich: bool = False
    """The source asks for enrichment (`enrich = true` in the sources file)."""
    tags: bool = False
    """The source asks for image roles and tags (`tags = true`), which implies enrichment."""

    @property
    def region(self) -> str:
        return self.client.region

    @property
    def label(self) -> str:
        return f"{self.source}/{self.region}"

    @property
    def key(self) -> str:
        """The name of its state directory (`model.target_key`)."""
        return target_key(self.source, self.region)

    @property
    def configured(self) -> tuple[str, str]:
        """(source as the sources file names it, region): what a Dagster partition names."""
        return (_configured_source(self.source), self.region)


def _configured_source(source: str) -> str:
    """The sources file's name of a target's source: a member account's target is named
    `SOURCE/ACCOUNT` (source names hold no slash)."""
    return source.partition("/")[0]


@dataclass(frozen=True)
class ImageChange:
    source: str
    region: str
    image_name: str
    new: int
    changed: int
    deleted: int


@dataclass(frozen=True)
class Failure:
    source: str
    region: str
    image_name: str | None
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", redact(self.reason))

    @property
    def configured(self) -> tuple[str, str]:
        """The (source, region) of the sources file it is filed under (SourceTarget.configured)."""
        return (_configured_source(self.source), self.region)

    def __str__(self) -> str:
        where = f"{self.source}/{self.region}"
        return (
            f"{where} image {self.image_name}: {self.reason}"
            if self.image_name
            else (f"{where}: {self.reason}")
        )


@dataclass
class SyncReport:
    """What a sync did: counts, per-image changes, failures and API usage."""

    targets: int = 0
    """Targets synced, side by side (each source x region, or member account x region)."""
    images: int = 0
    new: int = 0
    changed: int = 0
    deleted: int = 0
    rows_written: int = 0
    enriched: bool = False
    described: int = 0
    details_vanished: int = 0
    changes: list[ImageChange] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    stats: ApiStats = field(default_factory=ApiStats)
    seconds: float = 0.0
    """A whole sync's wall time; a target's time from its start to its row of `sync_runs`."""
    watermarks: list[int] = field(default_factory=list)
    target: SourceTarget | None = None
    """The target these figures are of; None for a whole sync's."""
    per_target: list[SyncReport] = field(default_factory=list)
    """A whole sync's targets' own reports, as merged into it."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def merge(self, other: SyncReport) -> None:
        """Add one target's report to this one (the run's)."""
        for name in ("targets", "images", "new", "changed", "deleted", "rows_written", "described"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.details_vanished += other.details_vanished
        self.enriched |= other.enriched
        self.changes += other.changes
        self.failures += other.failures
        self.watermarks += other.watermarks
        self.stats.add(other.stats)
        self.per_target += other.per_target if other.target is None else [other]

    def of_source(self, source: str, region: str) -> SyncReport:
        """One (source, region) of the sources file's share of a whole sync: its target's
        figures, or the sum of its member accounts' targets for an organization source (their
        `seconds` added up), and every failure filed under it, the source's own included (its
        accounts could not be listed). Its figures are those of its rows of `sync_runs`."""
        share = SyncReport()
        for one in self.per_target:
            if one.target is not None and one.target.configured == (source, region):
                share.merge(one)
                share.seconds += one.seconds
        share.failures = [f for f in self.failures if f.configured == (source, region)]
        return share

    def record(self, target: SourceTarget, image_name: str, result: Classified) -> None:
        self.new += result.new
        self.changed += result.changed
        self.deleted += result.deleted
        if result.new or result.changed or result.deleted:
            self.changes.append(
                ImageChange(
                    target.source,
                    target.region,
                    image_name,
                    result.new,
                    result.changed,
                    result.deleted,
                )
            )

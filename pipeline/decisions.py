"""The pure decisions of a per-image incremental sync: which images a target lists and which
are gone, where a listing starts, which listed rows are new or changed states, which stored
versions vanished, what enrichment describes, and the image's state once its rows are
durable. No I/O: `target_run` wires these to the source, the Parquet writer and the state
store.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from .model import ImageState, Row, fingerprint, tombstone

__all__ = [
    "Classified",
    "ImagesPlan",
    "advance_state",
    "classify",
    "deleted_image_state",
    "latest_per_image",
    "latest_per_version",
    "listing_filter_ms",
    "listing_start_ms",
    "on_or_after",
    "plan_images",
    "versions_to_describe",
    "versions_with_moved_aliases",
]


@dataclass(frozen=True)
class ImagesPlan:
    """Which images a target's sync lists, and which it takes as deleted."""

    to_list: list[ImageState]
    """The state each listed image starts from, in name order: a new image's (or one back
    after its deletion) starts from nothing."""
    gone: list[ImageState]
    """The images to tombstone: known ones absent from a complete catalogue, and for a full
    listing, stored live ones that nothing else accounts for."""
    unknown: list[str]
    """The wanted images in neither the catalogue nor the state."""


def plan_images(
    catalogue: Iterable[Row],
    failed: Collection[str],
    *,
    source: str,
    complete: bool,
    known: Mapping[str, ImageState],
    wanted: Collection[str] | None,
    stored: Mapping[str, Mapping[int, Row]] | None,
) -> ImagesPlan:
    """Plan the sync of one target of `source` from its catalogue (ListImages, one row per
    image); `failed`: the images whose record is malformed (neither listed nor taken as
    deleted); `complete`: whether every record named an image (only then is an absent image
    deleted); `known`: the states, by image name; `wanted`: the names to sync (all when None);
    `stored`: for a full listing, the stored live rows by image name.

    A stored image that is neither listed nor known was deleted while its state was lost (a
    repair drops it): it is tombstoned like any deleted image.
    """
    listed = {
        row["image_name"]: row
        for row in catalogue
        if (wanted is None or row["image_name"] in wanted) and row["image_name"] not in failed
    }
    gone = [
        state
        for name, state in known.items()
        if complete
        and not state.is_deleted
        and name not in listed
        and name not in failed
        and (wanted is None or name in wanted)
    ]
    if complete and stored is not None:
        accounted = listed.keys() | set(failed) | {state.image_name for state in gone}
        gone += [
            _orphan(source, name, versions)
            for name, versions in sorted(stored.items())
            if name not in accounted and versions and (wanted is None or name in wanted)
        ]
    unknown = sorted(set(wanted or ()) - listed.keys() - known.keys() - set(failed))
    to_list = [
        _starting_state(source, row, known.get(name)) for name, row in sorted(listed.items())
    ]
    return ImagesPlan(to_list, gone, unknown)


def _starting_state(source: str, row: Row, state: ImageState | None) -> ImageState:
    """Where a catalogued image's sync starts: its state, or nothing when it is new or back
    after a deletion."""
    if state is not None and not state.is_deleted:
        return state
    return ImageState(source, row["account_id"], row["region"], row["image_name"], row["image_arn"])


def _orphan(source: str, name: str, versions: Mapping[int, Row]) -> ImageState:
    """A new state for a stored image that nothing accounts for, to tombstone it."""
    some = next(iter(versions.values()))
    return ImageState(source, some["account_id"], some["region"], name, some["image_arn"])


def listing_start_ms(state: ImageState | None, lookback_ms: int, full_listing: bool) -> int | None:
    """Where an image's listing starts (inclusive), or None to list everything."""
    if full_listing or state is None or state.is_deleted or state.watermark_ms is None:
        return None
    return state.watermark_ms - lookback_ms


def listing_filter_ms(start_ms: int) -> int:
    """The LastModifiedTimeAfter a listing sends for a start (epoch ms): floored to the whole
    second.

    botocore before its mid-2026 serializer change sends whole seconds whatever it is given,
    and whether the service truncates is not documented: sending the floor ourselves makes
    every client and service answer alike, a superset of the rows from `start_ms` on, which
    `on_or_after` cuts back (docs/aws-behaviour.md).
    """
    return start_ms - start_ms % 1000


def on_or_after(listed: Iterable[Row], start_ms: int | None) -> list[Row]:
    """The listed rows that an exact, inclusive filter at `start_ms` returns.

    A coarser filter re-reads rows stamped before the listing's start: the state's window
    does not cover them (it starts there too), so kept they would be stored again as
    changed. An update stamped there is the late update the lookback bounds: the next
    reconciliation catches it, as it would with an exact filter.
    """
    if start_ms is None:
        return list(listed)
    return [row for row in listed if row["last_modified_time"] >= start_ms]


@dataclass
class Classified:
    """Listed rows split into what must be written, and the counts behind the summary."""

    to_write: list[Row] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    deleted: int = 0


def latest_per_version(listed: Iterable[Row]) -> dict[int, Row]:
    """Each listed version's latest state. A version updated while its image was being paged
    through is listed twice: the later state supersedes the earlier one within the same
    observation."""
    latest: dict[int, Row] = {}
    for row in listed:
        kept = latest.get(row["version"])
        if kept is None or row["last_modified_time"] >= kept["last_modified_time"]:
            latest[row["version"]] = row
    return latest


def latest_per_image(rows: Iterable[Row]) -> tuple[list[Row], list[str]]:
    """One catalogue row per image name, in the order first listed, and the names that were
    listed more than once.

    ListImages pages are not a snapshot: an image modified (or a listing restarted) while its
    pages are fetched can be listed twice. The row with the latest last_modified_time is
    kept, the later listed of equal ones, as `latest_per_version` does for versions.
    """
    latest: dict[str, Row] = {}
    repeated: dict[str, None] = {}
    for row in rows:
        name = row["image_name"]
        kept = latest.get(name)
        if kept is not None:
            repeated[name] = None
            if row["last_modified_time"] < kept["last_modified_time"]:
                continue
        latest[name] = row
    return list(latest.values()), list(repeated)


def classify(
    listed: Iterable[Row],
    state: ImageState | None,
    stored: Mapping[int, Row] | None,
    *,
    observed_at_ms: int,
) -> Classified:
    """Decide which listed rows are new or changed states, and which stored versions vanished.

    `stored` is the image's full stored live state, given for a full listing (reconcile or
    full refresh): versions stored but not listed then become tombstones. For an incremental
    listing `stored` is None and the state's window tells a re-read row from a changed one.
    """
    result = Classified()
    window = state.window if state is not None and not state.is_deleted else {}
    max_version = state.max_version if state is not None and not state.is_deleted else 0
    known: dict[int, str] = (
        {version: fingerprint(row) for version, row in stored.items()}
        if stored is not None
        else {version: digest for version, (_, digest) in window.items()}
    )
    latest = latest_per_version(listed)
    for version, row in latest.items():
        digest = known.get(version)
        if digest is not None and digest == fingerprint(row):
            continue
        if version in known or (stored is None and version <= max_version):
            result.changed += 1
        else:
            result.new += 1
        result.to_write.append(row)
    if stored is not None:
        for version, row in sorted(stored.items()):
            if version not in latest:
                result.to_write.append(tombstone(row, observed_at_ms=observed_at_ms))
                result.deleted += 1
    return result


def versions_to_describe(
    classified: Classified,
    listed: Iterable[Row],
    described: set[tuple[int, int]] | None,
    moved: Collection[int] = (),
) -> list[Row]:
    """The listed states whose details enrichment fetches, in version order.

    Every new or changed state that is written (tombstones aside); when `described` is given
    (a full listing that backfills), every listed state whose (version, last_modified_time)
    has no details stored yet; and the listed versions in `moved`, whose aliases changed
    without a change of state (`versions_with_moved_aliases`).
    """
    chosen = {row["version"]: row for row in classified.to_write if not row["is_deleted"]}
    latest = latest_per_version(listed)
    if described is not None:
        for version, row in latest.items():
            if (version, row["last_modified_time"]) not in described:
                chosen.setdefault(version, row)
    for version in moved:
        if version in latest and not latest[version]["is_deleted"]:
            chosen.setdefault(version, latest[version])
    return [chosen[version] for version in sorted(chosen)]


def versions_with_moved_aliases(
    current: Mapping[str, int], stored: Mapping[int, frozenset[str]]
) -> set[int]:
    """The versions whose aliases now (`current`: alias -> the version it names) differ from
    those their latest stored details record (`stored`: version -> aliases).

    Whether an alias change moves a version's LastModifiedTime is not documented, so a full
    listing compares the aliases themselves (docs/aws-behaviour.md); a version that gained or
    lost one is described again, the alias's old and new holders alike."""
    now: dict[int, set[str]] = {}
    for alias, version in current.items():
        now.setdefault(version, set()).add(alias)
    return {
        version
        for version in now.keys() | stored.keys()
        if frozenset(now.get(version, ())) != stored.get(version, frozenset())
    }


def advance_state(
    state: ImageState,
    listed: Iterable[Row],
    *,
    lookback_ms: int,
    full_listing: bool,
    synced_at_ms: int,
) -> ImageState:
    """The image's state once the listed rows are durable.

    The watermark never decreases. The window keeps every version that the next incremental
    listing (from watermark - lookback) will re-read, with the digest of its stored state.
    After a full listing only listed versions can be live, so the old window is dropped.
    """
    rows = list(listed)
    # A LastModifiedTime further ahead of our clock than the lookback is a bogus stamp: it
    # must not drag the watermark past changes still to come. Such rows stay in the window,
    # so re-reading them is still recognised; they just do not move the watermark.
    newest = [
        row["last_modified_time"]
        for row in rows
        if row["last_modified_time"] <= synced_at_ms + lookback_ms
    ]
    watermark = max(
        [m for m in (state.watermark_ms, *newest) if m is not None],
        default=None,
    )
    floor = None if watermark is None else watermark - lookback_ms
    entries: dict[int, tuple[int, str]] = {} if full_listing else dict(state.window)
    for row in rows:
        # Only rows that the next listing re-reads need a digest (one per row is costly).
        if floor is None or row["last_modified_time"] >= floor:
            entries[row["version"]] = (row["last_modified_time"], fingerprint(row))
        else:
            entries.pop(row["version"], None)
    window = {
        version: entry
        for version, entry in entries.items()
        # Without a watermark (every stamp bogus) the next listing re-reads them all.
        if floor is None or entry[0] >= floor
    }
    return replace(
        state,
        watermark_ms=watermark,
        max_version=max([state.max_version, *(row["version"] for row in rows)]),
        last_synced_ms=synced_at_ms,
        last_error=None,
        window=window,
    )


def deleted_image_state(state: ImageState, *, synced_at_ms: int) -> ImageState:
    """The state of an image found deleted: tombstoned, and reset should it come back."""
    return replace(state, is_deleted=True, window={}, last_synced_ms=synced_at_ms, last_error=None)

"""Behaviours the AWS documentation leaves open, each an emulator mode that is off by default.

The record (botocore's service model and its history, SDK issues) does not settle them, so the
extractor must be correct under either answer; these modes give the emulator the other answer:

- ``whole_second_filters``: time filters floored to the whole second, as botocore releases
  before its mid-2026 serializer change send them (and as a service that truncates would).
- ``filtered_scan_pages``: when a filter applies, each page scans ``MaxResults`` items of the
  unfiltered order and returns those that match, so pages come short or empty, still carrying
  a NextToken (what other SageMaker List APIs are documented to do).
- ``creating_s`` / ``deleting_s``: CreateImageVersion leaves the version CREATING, and
  DeleteImageVersion leaves it listed as DELETING, for that many seconds of the emulator's
  clock; a delete then fails (DELETE_FAILED) with probability ``delete_failure_rate``.
  ``transitions_stamp`` says whether those status changes move LastModifiedTime.
- ``case_insensitive_names``: an image is found by its name in any case (ImageVersionArn
  lower-cases the name; whether lookups do too is not documented).
- ``archived_unlisted``: versions whose VendorGuidance is ARCHIVED ("not searchable", says the
  model) drop out of ListImageVersions; DescribeImageVersion still answers for them.
- ``updates_stamp``: whether UpdateImageVersion (its details, or an alias added or deleted)
  moves the version's LastModifiedTime; when not, only a comparison of the aliases (an
  enriched reconcile) sees an alias move. UpdateImage likewise for the image's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import TypeVar

from .shapes import _Image, _Version

__all__ = ["Lifecycle", "Modes"]

_T = TypeVar("_T")

_DELETE_FAILURE = "Deleting the image version failed: its container image is in use."


@dataclass
class Modes:
    """The emulator's answers to the open questions; every field's default is today's AWS
    reading (exact filters, full pages, synchronous changes, case-sensitive names, archived
    versions listed, updates that move LastModifiedTime). Mutable at runtime, like
    :class:`Faults`."""

    whole_second_filters: bool = False
    filtered_scan_pages: bool = False
    creating_s: float = 0.0
    deleting_s: float = 0.0
    delete_failure_rate: float = 0.0
    transitions_stamp: bool = True
    """Whether the end of CREATING or DELETING (and the start of DELETING) moves
    LastModifiedTime; when not, only a full comparison (a reconcile) sees the new status."""
    case_insensitive_names: bool = False
    archived_unlisted: bool = False
    updates_stamp: bool = True
    seed: int = 0

    @classmethod
    def all_on(cls, *, creating_s: float = 30.0, deleting_s: float = 30.0) -> Modes:
        """Every open question answered the other way at once."""
        return cls(
            whole_second_filters=True,
            filtered_scan_pages=True,
            creating_s=creating_s,
            deleting_s=deleting_s,
            delete_failure_rate=0.3,
            case_insensitive_names=True,
            archived_unlisted=True,
            updates_stamp=False,
        )

    def describe(self) -> str:
        """The modes that differ from the defaults, as ``name=value`` pairs."""
        default = Modes()
        changed = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return ", ".join(changed) or "defaults"

    def floor_bounds(self, bounds: dict[str, int]) -> dict[str, int]:
        """Time-filter bounds (epoch ms) as the service applies them: floored to the whole
        second under ``whole_second_filters`` (botocore before its change sends
        ``int(timestamp)``, whatever the bound)."""
        if not self.whole_second_filters:
            return bounds
        return {name: ms - ms % 1000 for name, ms in bounds.items()}

    def listed(self, version: _Version) -> bool:
        """Whether ListImageVersions shows ``version`` at all."""
        return not (self.archived_unlisted and version.details.get("VendorGuidance") == "ARCHIVED")

    def cut_page(
        self,
        ordered: Callable[[], list[_T]],
        matching: Sequence[_T],
        max_results: int,
        filtered: bool,
    ) -> tuple[list[_T], _T | None]:
        """One page of ``matching`` (already in the listing's order) and the row the next
        page resumes after (None: this is the last page).

        Under ``filtered_scan_pages`` and when a filter applies, the page is the matching rows
        among the next ``max_results`` rows of ``ordered()`` (every row after the cursor,
        filtered or not): short or empty, with a NextToken while unscanned rows remain.
        """
        if not (self.filtered_scan_pages and filtered):
            page = list(matching[:max_results])
            return page, page[-1] if len(matching) > len(page) else None
        everything = ordered()
        scanned = everything[:max_results]
        wanted = {id(row) for row in matching}
        page = [row for row in scanned if id(row) in wanted]
        return page, scanned[-1] if len(everything) > len(scanned) else None


@dataclass
class _Transition:
    due_ms: int
    image: _Image
    version: _Version
    outcome: str
    """CREATED, DELETE_FAILED, or "" for a version that is gone."""


@dataclass
class Lifecycle:
    """Asynchronous creates and deletes (``creating_s``, ``deleting_s``): the versions in
    CREATING or DELETING, and when each settles. Settled lazily, on the emulator's clock,
    before every read of the catalogue (the caller holds the emulator's lock)."""

    _pending: list[_Transition] = field(default_factory=list, init=False)
    _rng: random.Random = field(default_factory=random.Random, init=False, repr=False)
    _rng_seed: int | None = field(default=None, init=False, repr=False)

    @property
    def pending(self) -> bool:
        """Whether some version is CREATING or DELETING."""
        return bool(self._pending)

    def create(self, modes: Modes, image: _Image, version: _Version, now_ms: int) -> None:
        """A version just created: CREATING for ``creating_s`` when that mode is on."""
        if modes.creating_s > 0:
            version.status, version.failure_reason = "CREATING", None
            self._schedule(image, version, now_ms + round(modes.creating_s * 1000), "CREATED")

    def delete(self, modes: Modes, image: _Image, version: _Version, now_ms: int) -> bool:
        """Start deleting a version; False when it is to go at once (``deleting_s`` off).

        A version already DELETING stays as it is; one still CREATING stops creating."""
        if modes.deleting_s <= 0:
            self.cancel(version)
            return False
        if any(t.version is version and t.outcome != "CREATED" for t in self._pending):
            return True
        self.cancel(version)
        fails = modes.delete_failure_rate > 0 and self._draw(modes) < modes.delete_failure_rate
        version.status, version.failure_reason = "DELETING", None
        if modes.transitions_stamp:
            version.modified_ms = now_ms
        due = now_ms + round(modes.deleting_s * 1000)
        self._schedule(image, version, due, "DELETE_FAILED" if fails else "")
        return True

    def cancel(self, version: _Version) -> None:
        """Forget what was pending for a version (an explicit status change overrides it)."""
        self._pending = [t for t in self._pending if t.version is not version]

    def settle(self, modes: Modes, now_ms: int) -> None:
        """Apply every transition due by ``now_ms``, each stamped with its due time."""
        due = [t for t in self._pending if t.due_ms <= now_ms]
        if not due:
            return
        self._pending = [t for t in self._pending if t.due_ms > now_ms]
        for transition in sorted(due, key=lambda t: t.due_ms):
            image, version = transition.image, transition.version
            if image.versions.get(version.number) is not version:
                continue  # deleted meanwhile, image and all
            if not transition.outcome:
                del image.versions[version.number]
                continue
            version.status = transition.outcome
            version.failure_reason = (
                _DELETE_FAILURE if transition.outcome == "DELETE_FAILED" else None
            )
            if modes.transitions_stamp:
                version.modified_ms = max(version.modified_ms, transition.due_ms)

    def _schedule(self, image: _Image, version: _Version, due_ms: int, outcome: str) -> None:
        self._pending.append(_Transition(due_ms, image, version, outcome))

    def _draw(self, modes: Modes) -> float:
        if self._rng_seed != modes.seed:
            self._rng, self._rng_seed = random.Random(modes.seed), modes.seed
        return self._rng.random()

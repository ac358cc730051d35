"""Every option of a sync, declared once: its name, type, default, bounds, help and flag.

The command line's flags, Dagster's run config and resource, and the checks of `SyncOptions`
and `AccessSettings` (whatever builds them: flags, Dagster, the demo, code) all derive from
`OPTIONS`. Standard library only: the command line builds `--help` from it without importing
pydantic or anything heavy.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .defaults import (
    CALL_DEADLINE_S,
    COMMIT_INTERVAL_S,
    CONCURRENCY,
    LOOKBACK_MINUTES,
    MAX_ATTEMPTS,
    MAX_CONCURRENCY,
    MAX_IN_FLIGHT,
    ORCHESTRATED_WAIT_S,
    RETRY_MODE,
    RETRY_MODES,
    TARGET_CONCURRENCY,
)
from .errors import ConfigError
from .model import IMAGE_NAME

__all__ = [
    "OPTIONS",
    "DagsterField",
    "Group",
    "Option",
    "check_group",
    "check_image_name",
    "option_named",
    "options_of",
]

Group = Literal["sync", "access"]
"""`sync`: a field of SyncOptions, set per run (Dagster's run config); `access`: a field of
AccessSettings, how hard to call the API (Dagster's `sagemaker` resource)."""


@dataclass(frozen=True)
class DagsterField:
    """Where Dagster's config departs from the option: an orchestrated run waits by default."""

    name: str
    default: Any
    description: str


@dataclass(frozen=True)
class Option:
    """One option: a field of SyncOptions or AccessSettings, a flag of `sync`, a Dagster field."""

    name: str
    group: Group
    kind: type[bool] | type[int] | type[float] | type[str]
    default: Any
    help: str
    flag: str
    metavar: str | None = None
    minimum: float | None = None
    above_minimum: bool = False
    """The minimum itself is refused (a number above zero)."""
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    """None is a value too: no limit."""
    item_check: Callable[[str], None] | None = None
    """Set for a repeated option (a flag given once per item): raises ConfigError for a bad item."""
    in_sources_file: bool = False
    """Also a key of each `[sources.NAME]` table."""
    dagster: DagsterField | None = None

    @property
    def repeated(self) -> bool:
        return self.item_check is not None

    @property
    def dagster_name(self) -> str:
        return self.dagster.name if self.dagster else self.name

    @property
    def dagster_default(self) -> Any:
        return self.dagster.default if self.dagster else self.default

    @property
    def description(self) -> str:
        return self.dagster.description if self.dagster else self.help

    @property
    def requirement(self) -> str:
        """What a value must be, as in `concurrency must be {requirement}`."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "a string"
        what = "a whole number" if self.kind is int else "a number"
        if self.maximum is not None:
            return f"{what} from {self.minimum:g} to {self.maximum:g}"
        if self.minimum == 0:
            return f"{what} above zero" if self.above_minimum else f"{what} of zero or more"
        if self.minimum is not None:
            return f"{what} of at least {self.minimum:g}"
        return what

    def refuses(self, value: Any) -> bool:
        """Whether a single (not repeated) value breaks the declaration."""
        if value is None:
            return not self.optional
        if self.kind is bool or self.choices:
            return type(value) is not self.kind or value not in (self.choices or (True, False))
        if self.kind is str:
            return not isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return True
        if self.kind is int and not isinstance(value, int):
            return True
        if not math.isfinite(value):
            return True
        low, high = self.minimum, self.maximum
        too_low = low is not None and (value <= low if self.above_minimum else value < low)
        return too_low or (high is not None and value > high)

    def check(self, value: Any) -> None:
        """The one validation of this option, whatever gave the value; ConfigError if bad."""
        if self.item_check is not None:
            for item in _items(value, self.name):
                self.item_check(item)
        elif self.refuses(value):
            raise ConfigError(f"{self.name} must be {self.requirement}, not {value!r}")

    def parse(self, text: str) -> Any:
        """An argparse type: the flag's text as a value, checked as `check` does."""
        try:
            value = self.kind(text)
        except ValueError:
            value = text
        if (isinstance(value, str) and self.kind is not str) or self.refuses(value):
            raise argparse.ArgumentTypeError(f"expected {self.requirement}, got {text!r}")
        return value


def _items(value: Any, name: str) -> Iterable[str]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be a list of names, not {value!r}")
    return value


def check_image_name(name: str) -> None:
    """The API's ImageName pattern: 1-63 letters, digits, and single '-' or '.' between them."""
    if not isinstance(name, str) or not IMAGE_NAME.match(name):
        raise ConfigError(
            f"invalid image name {name!r}: SageMaker image names are 1-63 letters, digits, "
            "and single '-' or '.' between them"
        )


OPTIONS: tuple[Option, ...] = (
    Option(
        "image_names",
        "sync",
        str,
        None,
        "sync only this image; repeat for several (default: all)",
        "--image",
        metavar="NAME",
        item_check=check_image_name,
        dagster=DagsterField("image_names", [], "Sync only these images (default: all)."),
    ),
    Option(
        "full_refresh",
        "sync",
        bool,
        False,
        "ignore watermarks and list everything (also rebuilds corrupt state)",
        "--full-refresh",
    ),
    Option(
        "reconcile",
        "sync",
        bool,
        False,
        "list every image in full: catches deleted versions and late updates",
        "--reconcile",
    ),
    Option(
        "enrich",
        "sync",
        bool,
        False,
        "also record DescribeImageVersion details and aliases of new and changed "
        "versions (one call each, plus ListAliases); with --reconcile or --full-refresh, "
        "of every version that lacks them",
        "--enrich",
        in_sources_file=True,
    ),
    Option(
        "tags",
        "sync",
        bool,
        False,
        "also record each image's RoleArn (DescribeImage, when the image is new or changed) "
        "and the tags of images (ListTags, every sync) and of versions (ListTags, with the "
        "details; every live version's on --reconcile); implies --enrich",
        "--tags",
        in_sources_file=True,
    ),
    Option(
        "target_concurrency",
        "sync",
        int,
        TARGET_CONCURRENCY,
        "targets (source or member account, x region) synced side by side "
        f"(default: {TARGET_CONCURRENCY}; at most {MAX_IN_FLIGHT} listings in flight in all)",
        "--target-concurrency",
        metavar="N",
        minimum=1,
    ),
    Option(
        "lookback_minutes",
        "sync",
        float,
        LOOKBACK_MINUTES,
        f"re-read this much before each watermark, for late writes (default: {LOOKBACK_MINUTES:g})",
        "--lookback-minutes",
        metavar="M",
        minimum=0,
    ),
    Option(
        "commit_interval_s",
        "sync",
        float,
        COMMIT_INTERVAL_S,
        "commit finished images at least this often, so an interrupted sync keeps them "
        f"(default: {COMMIT_INTERVAL_S:g})",
        "--commit-every",
        metavar="SECONDS",
        minimum=0,
        above_minimum=True,
    ),
    Option(
        "lock_timeout_s",
        "sync",
        float,
        0.0,
        "wait this long for another writer of the same target (for compact and "
        "verify: of any target) to finish (default: fail at once)",
        "--wait",
        metavar="SECONDS",
        minimum=0,
        dagster=DagsterField(
            "wait_seconds",
            ORCHESTRATED_WAIT_S,
            "How long each target waits for another run that is syncing it "
            f"(default: {ORCHESTRATED_WAIT_S:g}).",
        ),
    ),
    Option(
        "concurrency",
        "access",
        int,
        CONCURRENCY,
        f"images of one target listed in parallel (default: {CONCURRENCY})",
        "--concurrency",
        metavar="N",
        minimum=1,
        maximum=MAX_CONCURRENCY,
    ),
    Option(
        "max_rps",
        "access",
        float,
        None,
        "cap on each target's API requests per second, retries included (default: "
        "none; the rate adapts to throttling by itself)",
        "--max-rps",
        metavar="X",
        minimum=0,
        above_minimum=True,
        optional=True,
    ),
    Option(
        "retry_mode",
        "access",
        str,
        RETRY_MODE,
        f"botocore retry mode (default: {RETRY_MODE})",
        "--retry-mode",
        choices=RETRY_MODES,
    ),
    Option(
        "max_attempts",
        "access",
        int,
        MAX_ATTEMPTS,
        f"attempts per API call, first one included (default: {MAX_ATTEMPTS})",
        "--max-attempts",
        metavar="N",
        minimum=1,
    ),
    Option(
        "call_deadline_s",
        "access",
        float,
        CALL_DEADLINE_S,
        f"the longest one API call may take, retries included (default: {CALL_DEADLINE_S:g})",
        "--call-timeout",
        metavar="SECONDS",
        minimum=0,
        above_minimum=True,
    ),
)


def options_of(group: Group) -> tuple[Option, ...]:
    return tuple(option for option in OPTIONS if option.group == group)


def option_named(name: str) -> Option:
    """The option named `name` (a field of SyncOptions or AccessSettings)."""
    (found,) = (option for option in OPTIONS if option.name == name)
    return found


def check_group(settings: object, group: Group) -> None:
    """Check each option of `group` that `settings` (SyncOptions, AccessSettings) holds."""
    for each in options_of(group):
        each.check(getattr(settings, each.name))

"""The SageMaker side: a boto3 client with retries, a shared rate limit and call accounting.

Retries are botocore's own (standard or adaptive mode), except after a throttle: that attempt
goes again at once, and the client's rate limiter paces it. Every HTTP attempt of every
worker passes through the limiter (botocore's `before-send` event), which finds the account's
limit from the throttling answers and holds `max_rps` across threads (ratelimit.py).
Counters come from botocore events too, so they count what really went over the wire.

Credentials are a profile (or boto3's chain), optionally followed by IAM roles assumed in turn
through STS, reached by standard endpoint resolution (so `AWS_ENDPOINT_URL_STS` applies); the
assumed-role credentials refresh themselves before they expire.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .apivalues import Unparsed
from .aws_errors import AwsErrorKind, aws_errors_as, kind_of
from .defaults import (
    CALL_DEADLINE_S,
    CONCURRENCY,
    CONNECT_TIMEOUT_S,
    MAX_ATTEMPTS,
    READ_TIMEOUT_S,
    RETRY_MODE,
)
from .errors import ConfigError, ImageVersionsError
from .guard import CallGuard, guard_client, pause

__all__ = [
    "AccountListings",
    "ApiStats",
    "AssumeRole",
    "ClientSettings",
    "Organization",
    "RoleSource",
    "StsClients",
    "assumed_role_credentials",
    "aws_credentials",
    "aws_session",
    "check_profile",
    "check_reachable",
    "client_config",
    "known_regions",
    "list_aliases",
    "list_image_versions",
    "list_images",
    "list_organization_accounts",
    "list_tags",
    "organization_members",
    "patiently",
    "role_source",
    "session_for",
]

_T = TypeVar("_T")
PAGE_SIZE = 100  # the API's maximum; fewer calls per image
MAX_LISTING_RESTARTS = 3
MAX_PAGES = 10_000
"""Pages of one listing (a million versions of one image): a server that never stops paging
fails its image instead of holding the run."""
THROTTLE_PATIENCE_S = 300.0
log = logging.getLogger(__name__)


PROFILE_VARS = ("AWS_DEFAULT_PROFILE", "AWS_PROFILE")
"""Where botocore finds the profile when none is named, in its order."""
DEFAULT_SESSION_NAME = "image-versions"
DEFAULT_ROLE_SECONDS = 3600  # STS's own default for AssumeRole


@dataclass(frozen=True)
class AssumeRole:
    """An IAM role assumed with the credentials that come before it."""

    role_arn: str
    session_name: str = DEFAULT_SESSION_NAME
    external_id: str | None = None
    duration_seconds: int | None = None


@dataclass(frozen=True)
class Organization:
    """Every ACTIVE member account of an AWS organization, each reached through one role."""

    member_role: str
    """A role name, optionally with its path (`path/Name`), present in every member account."""
    accounts: tuple[str, ...] = ()
    """Only these accounts (all when empty)."""
    exclude: tuple[str, ...] = ()
    external_id: str | None = None
    session_name: str = DEFAULT_SESSION_NAME
    duration_seconds: int | None = None

    def member(self, account_id: str, partition: str) -> AssumeRole:
        return AssumeRole(
            role_arn=f"arn:{partition}:iam::{account_id}:role/{self.member_role}",
            session_name=self.session_name,
            external_id=self.external_id,
            duration_seconds=self.duration_seconds,
        )


@dataclass(frozen=True)
class ClientSettings:
    """How to reach SageMaker in one region."""

    region: str
    endpoint_url: str | None = None
    profile: str | None = None
    """None: boto3's chain (AWS_DEFAULT_PROFILE, AWS_PROFILE, else no profile)."""
    source: str = "default"
    """The source these settings reach, named in messages about its credentials."""
    roles: tuple[AssumeRole, ...] = ()
    """Assumed in order after the profile's credentials (a role chain)."""
    organization: Organization | None = None
    """Set: these settings stand for every member account, see `organization_members`."""
    retry_mode: str = RETRY_MODE
    max_attempts: int = MAX_ATTEMPTS
    max_rps: float | None = None
    pool_size: int = CONCURRENCY
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S
    call_deadline_s: float = CALL_DEADLINE_S


class ApiStats:
    """Thread-safe counts of API calls (per operation), HTTP attempts and throttled attempts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.attempts = 0
        self.throttled = 0

    def count_call(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    def count_calls_of(self, client: Any, service: str) -> None:
        """Count every API call `client` (of `service`, e.g. "sagemaker") makes from now on."""

        def before_call(model: Any, **_: Any) -> None:
            self.count_call(model.name)

        client.meta.events.register(f"before-call.{service}", before_call)

    def count_attempt(self, throttled: bool) -> None:
        with self._lock:
            self.attempts += 1
            self.throttled += throttled

    def add(self, other: ApiStats) -> None:
        with self._lock:
            self.calls.update(other.calls)
            self.attempts += other.attempts
            self.throttled += other.throttled

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def _once(compute: Callable[[], _T]) -> Callable[[], _T]:
    """`compute`, called by the first caller while any others wait for its value: a sync's
    targets start side by side, and functools.cache alone lets each one that misses compute
    it (32 targets at once each parsed botocore's SageMaker model, 2 s of CPU for one answer)."""
    lock = threading.Lock()
    cached = functools.cache(compute)

    @functools.wraps(compute)
    def value() -> _T:
        with lock:
            return cached()

    return value


@_once
def known_regions() -> frozenset[str]:
    """Every region in which botocore knows a SageMaker endpoint, across partitions.

    Read once: it parses botocore's endpoint data and SageMaker's model (65 ms), and every
    target asks; through the shared loader, which every session then reuses.
    """
    import boto3

    session = boto3.session.Session(botocore_session=_core_session())
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("sagemaker", partition_name=partition)
    )


def _utc_timestamp(value: Any) -> datetime | Unparsed:
    """A response timestamp as an aware UTC datetime, or `Unparsed` when it is not one.

    botocore's default parser converts every timestamp to the local zone through dateutil,
    which costs more than the rest of parsing an ImageVersion; the epoch seconds that JSON
    services send take a fast path here, strings botocore's own parser. Anything else (a
    boolean, an object, NaN, a year beyond 9999) is left for the record's validation to reject
    (as is a time that rounds to a millisecond beyond 9999, schema.MAX_MS),
    so that it fails that record's image and not the page.
    """
    import botocore.utils

    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str) and value:
            parsed: datetime = botocore.utils.parse_timestamp(value)
            return parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError, TypeError):
        pass
    return Unparsed(value)


class MalformedResponse(ImageVersionsError):
    """A 200 answer that is not the API's: no JSON, no result key, a NextToken seen before."""


def client_config(settings: ClientSettings) -> Any:
    """The botocore config of a client that `settings` make: retries, timeouts, its pool."""
    import botocore.config

    return botocore.config.Config(
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        max_pool_connections=max(10, settings.pool_size),
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        user_agent_extra="image-versions",
    )


def aws_session(settings: ClientSettings, guard: CallGuard) -> Any:
    """A boto3 session in the settings' region with the profile's (or boto3's chain's)
    credentials, or, with `roles`, those of the last role assumed (`aws_credentials`).

    ConfigError when the profile is missing, there are no credentials or a role is refused.
    """
    return session_for(settings, aws_credentials(settings, guard))


def aws_credentials(settings: ClientSettings, guard: CallGuard) -> Any:
    """The profile's (or boto3's chain's) credentials, or, with `roles`, those of the last
    role assumed (refreshable, every STS call bounded by `guard`).

    ConfigError when the profile is missing, there are no credentials or a role is refused.
    """
    return role_source(settings, guard).credentials


@dataclass(frozen=True)
class RoleSource:
    """Credentials, and the STS clients that assume a role with them."""

    credentials: Any
    sts: StsClients


def role_source(settings: ClientSettings, guard: CallGuard, pool_size: int = 10) -> RoleSource:
    """The credentials of `settings` (`aws_credentials`), with the STS clients (of up to
    `pool_size` connections) that assume one more role with them.

    ConfigError when the profile is missing, there are no credentials or a role is refused.
    """
    # A profile's source_profile missing, an unreadable config file, an expired SSO session,
    # a failing credential_process: botocore raises them from deep inside.
    with aws_errors_as(
        ConfigError, f"cannot load the AWS credentials of source {settings.source!r}"
    ):
        core = _core_session()
        if settings.profile is not None:
            core.set_config_variable("profile", settings.profile)
        core.set_config_variable("region", settings.region)  # a profile's own role's STS
        check_profile(core, settings.profile, settings.source)
        credentials = core.get_credentials()
    if credentials is None:
        raise ConfigError(
            "no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or configure ~/.aws/credentials"
        )
    sts = StsClients(core, settings.region, guard, pool_size)
    for role in settings.roles:
        credentials = assumed_role_credentials(credentials, role, sts)
    return RoleSource(credentials, sts)


def session_for(settings: ClientSettings, credentials: Any) -> Any:
    """A boto3 session in the settings' region and profile whose clients sign with
    `credentials` (None: with none of their own, each request brings its own)."""
    import boto3

    core = _core_session()
    parsers = core.get_component("response_parser_factory")
    parsers.set_parser_defaults(timestamp_parser=_utc_timestamp)
    core.register_component("credential_provider", _GivenCredentials(credentials))
    return boto3.session.Session(
        botocore_session=core, profile_name=settings.profile, region_name=settings.region
    )


def check_profile(core: Any, profile: str | None, source: str) -> None:
    """ConfigError naming the profile, where it came from, the source and the files looked
    in, when botocore session `core`'s profile is in neither its config nor its credentials
    file; or naming the file that botocore cannot parse.

    `profile` is the one the settings name (the sources file's, or --profile); None leaves it
    to AWS_DEFAULT_PROFILE or AWS_PROFILE, as botocore does. botocore itself would raise
    ProfileNotFound late, from inside credential or region resolution, naming neither.
    """
    with aws_errors_as(ConfigError, f"cannot read the AWS profiles of source {source!r}"):
        profiles = core.available_profiles  # botocore reads them for any profile, `default` too
    name = core.get_config_variable("profile")
    if name is None or name in profiles:
        return
    origin = ""
    if profile is None:
        origin = next((f" ({var})" for var in PROFILE_VARS if os.environ.get(var) == name), "")
    config, credentials = (
        os.path.expanduser(core.get_config_variable(file))
        for file in ("config_file", "credentials_file")
    )
    raise ConfigError(
        f"AWS profile {name!r}{origin} of source {source!r} is not configured: it is in neither "
        f"{config} nor {credentials}; correct the name or add the profile"
    )


def _core_session() -> Any:
    """A new botocore session sharing what every session may: the loader, and a copy of the
    built-in event handlers, registered once (registering them is most of a session's cost,
    and an organization makes two sessions a member account)."""
    import botocore.session

    core = botocore.session.Session(
        event_hooks=copy.copy(_builtin_handlers()), include_builtin_handlers=False
    )
    core.register_component("data_loader", _shared_loader())
    return core


@_once
def _builtin_handlers() -> Any:
    """botocore's built-in event handlers, registered the way a session registers them."""
    import botocore.hooks
    import botocore.session

    handlers = botocore.hooks.HierarchicalEmitter()
    botocore.session.Session(event_hooks=handlers)
    return handlers


@_once
def _shared_loader() -> Any:
    """One botocore loader for every session: it caches the service models it parsed, which
    a session of its own per account (an organization's) would otherwise parse again each."""
    import botocore.loaders

    return botocore.loaders.create_loader()


class _GivenCredentials:
    """A botocore `credential_provider` component that hands out one credentials object."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    def load_credentials(self) -> Any:
        return self._credentials


def refresh_windows(duration_s: int) -> tuple[int, int]:
    """(advisory, mandatory) seconds before expiry at which assumed-role credentials refresh.

    botocore's 15 and 10 minutes, scaled down for shorter sessions: with its defaults a
    900-second session would be renewed before every request.
    """
    return min(15 * 60, max(1, duration_s // 3)), min(10 * 60, max(1, duration_s // 6))


class StsClients:
    """The STS clients of one botocore session and region, every call bounded by `guard`: one
    per set of source credentials, shared by every role assumed with them and every refresh
    (a client costs as much CPU as a dozen calls), each with up to `pool_size` connections."""

    def __init__(self, core: Any, region: str, guard: CallGuard, pool_size: int) -> None:
        import botocore.config

        self._core, self._region, self._guard = core, region, guard
        # STS itself checks DurationSeconds (900 up to the role's maximum session), and says
        # so; botocore's copy of the lower bound would only stop STS emulators' short sessions.
        self._config = botocore.config.Config(
            retries={"mode": "standard"},
            parameter_validation=False,
            max_pool_connections=max(10, pool_size),
        )
        self._lock = threading.Lock()
        self._clients: dict[tuple[tuple[str, Any], ...], Any] = {}

    def __call__(self, service: str, **credentials: Any) -> Any:
        """botocore's `client_creator`: an STS client signing with `credentials`."""
        key = (("service", service), *sorted(credentials.items()))
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._core.create_client(
                    service, region_name=self._region, config=self._config, **credentials
                )
                client = self._clients[key] = guard_client(client, self._guard)
        return client


def assumed_role_credentials(source_credentials: Any, role: AssumeRole, sts: StsClients) -> Any:
    """`role`'s credentials, obtained with `source_credentials` through `sts`, refreshed by
    botocore's AssumeRole fetcher before they expire. The first AssumeRole happens here, so a
    refused role is a ConfigError of this source, not a failure of its first request."""
    import botocore.credentials

    extra: dict[str, Any] = {"RoleSessionName": role.session_name}
    if role.external_id is not None:
        extra["ExternalId"] = role.external_id
    if role.duration_seconds is not None:
        extra["DurationSeconds"] = role.duration_seconds
    advisory, mandatory = refresh_windows(role.duration_seconds or DEFAULT_ROLE_SECONDS)
    fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
        client_creator=sts,
        source_credentials=source_credentials,
        role_arn=role.role_arn,
        extra_args=extra,
        expiry_window_seconds=advisory,
    )
    with aws_errors_as(ConfigError, f"cannot assume role {role.role_arn}"):
        metadata = fetcher.fetch_credentials()
    return botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata,
        refresh_using=fetcher.fetch_credentials,
        method="assume-role",
        advisory_timeout=advisory,
        mandatory_timeout=mandatory,
    )


@dataclass(frozen=True)
class Member:
    """One account of an organization source: its settings, or why it cannot be synced."""

    account_id: str
    settings: ClientSettings | None
    problem: str | None = None


AccountListings = dict[str, list[dict[str, Any]] | ConfigError]
"""Each organization source's accounts (`list_organization_accounts`), or why they could not
be listed, by source name."""


def list_organization_accounts(
    settings: ClientSettings, stats: ApiStats, guard: CallGuard
) -> list[dict[str, Any]]:
    """Every account of an organization source's organization (its `_MEMBER_FIELDS`): all
    pages of Organizations ListAccounts with the source's own credentials, each call counted
    in `stats` and bounded by `guard`.

    ConfigError when the accounts cannot be listed.
    """
    with aws_errors_as(ConfigError, "cannot list the organization's accounts"):
        client = guard_client(aws_session(settings, guard).client("organizations"), guard)
        stats.count_calls_of(client, "organizations")
        return [
            {name: account[name] for name in _MEMBER_FIELDS if name in account}
            for page in client.get_paginator("list_accounts").paginate()
            for account in page.get("Accounts", [])
        ]


_MEMBER_FIELDS = ("Id", "State", "Status", "Arn")
"""What `organization_members` reads of an account: all that is kept of it (no names or
e-mail addresses), and handed to the processes of a sync as it is (fanout.py)."""


def organization_members(settings: ClientSettings, listed: list[dict[str, Any]]) -> list[Member]:
    """The accounts an organization source covers, from its organization's `listed` accounts
    (see `list_organization_accounts`).

    ACTIVE accounts become settings that assume the member role in them; an allow-listed
    account that is not ACTIVE (or not in the organization) is a Member with a problem.
    """
    organization = settings.organization
    if organization is None:
        raise ValueError("not an organization source")
    by_id = {account["Id"]: account for account in listed}
    wanted = organization.accounts or tuple(sorted(by_id))
    members = []
    for account_id in wanted:
        if account_id in organization.exclude:
            continue
        account = by_id.get(account_id)
        state = None if account is None else account.get("State") or account.get("Status")
        if state != "ACTIVE":
            if organization.accounts:
                problem = "not in the organization" if account is None else f"account is {state}"
                members.append(Member(account_id, None, problem))
            else:
                log.info("skipping account %s of the organization: %s", account_id, state)
            continue
        assert account is not None
        partition = str(account.get("Arn", "arn:aws:")).split(":")[1]
        role = organization.member(account_id, partition)
        member_settings = replace(settings, organization=None, roles=(*settings.roles, role))
        members.append(Member(account_id, member_settings))
    return members


def check_reachable(
    client: Any,
    timeout_s: float = 5.0,
    service: str = "SageMaker",
    hint: str = "check --region and --endpoint-url",
) -> None:
    """Fail fast (ConfigError, naming `service` and ending in `hint`) when the client's
    endpoint cannot be resolved or connected to.

    botocore would retry a dead endpoint with back-off for minutes; a bad --endpoint-url or
    region deserves a one-line answer at once. This opens a TCP connection, makes no API call.
    """
    url = urlsplit(client.meta.endpoint_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach {service} endpoint {client.meta.endpoint_url} ({exc}); {hint}"
        ) from exc


def patiently(call: Callable[..., dict[str, Any]], **params: Any) -> dict[str, Any]:
    """`call(**params)`, retried after a pause when throttling outlasts botocore's retries.

    Throttling says "slower", not "stop": a batch extractor keeps trying for up to
    THROTTLE_PATIENCE_S seconds before it reports the image (or region) as failed. The pause
    ends early when the run is cancelled (`call` is a bound method of a guarded client).
    """
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + THROTTLE_PATIENCE_S
    wait_s = 1.0
    while True:
        try:
            return call(**params)
        except ClientError as error:
            throttled = kind_of(error) is AwsErrorKind.THROTTLED
            if not throttled or time.monotonic() + wait_s > deadline:
                raise
            log.warning("still throttled after retries; pausing %.0f s", wait_s)
            pause(call, wait_s * (0.5 + random.random() / 2))
            wait_s = min(wait_s * 2, 30.0)


def _page_items(page: dict[str, Any], operation: str, result_key: str) -> list[Any]:
    """The result list of one page; MalformedResponse when the answer is not the API's.

    botocore turns a body that is not JSON (a proxy's HTML page) into a dict without the
    result key; reading that as "no items" would tombstone everything, so it is an error.
    """
    items = page.get(result_key)
    if not isinstance(items, list):
        raise MalformedResponse(f"{operation} answered without its {result_key} list")
    return items


class _Pages:
    """Checks a listing's NextTokens: never one seen before, never more than MAX_PAGES."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.seen: set[str] = set()

    def next_token(self, page: dict[str, Any]) -> str | None:
        token = page.get("NextToken")
        if not token:
            return None
        if not isinstance(token, str) or token in self.seen:
            raise MalformedResponse(f"{self.operation} repeated a NextToken: the listing loops")
        if len(self.seen) + 1 >= MAX_PAGES:
            raise MalformedResponse(f"{self.operation} went on past {MAX_PAGES} pages")
        self.seen.add(token)
        return token


def _every_page(
    call: Callable[..., dict[str, Any]], operation: str, result_key: str, **params: Any
) -> list[Any]:
    """`result_key` of every page of a List call at MaxResults=100, each page `patiently`."""
    items: list[Any] = []
    params["MaxResults"] = PAGE_SIZE
    pages = _Pages(operation)
    while True:
        page = patiently(call, **params)
        items.extend(_page_items(page, operation, result_key))
        token = pages.next_token(page)
        if token is None:
            return items
        params["NextToken"] = token


def list_images(client: Any) -> list[dict[str, Any]]:
    """Every image of the region, all pages of ListImages at MaxResults=100."""
    return _every_page(client.list_images, "ListImages", "Images")


def list_aliases(client: Any, image_name: str, version: int | None = None) -> list[str]:
    """Every alias of one image version (of every version when None), all pages of
    ListAliases."""
    which = {} if version is None else {"Version": version}
    return _every_page(
        client.list_aliases,
        "ListAliases",
        "SageMakerImageVersionAliases",
        ImageName=image_name,
        **which,
    )


def list_tags(client: Any, arn: str) -> list[Any]:
    """Every tag (`{Key, Value}`) of the image or image version `arn`, all pages of ListTags."""
    return _every_page(client.list_tags, "ListTags", "Tags", ResourceArn=arn)


def version_listing_params(image_name: str, modified_after: datetime | None) -> dict[str, Any]:
    """ListImageVersions parameters: oldest change first, so a listing resumes cleanly."""
    params: dict[str, Any] = {
        "ImageName": image_name,
        "MaxResults": PAGE_SIZE,
        "SortBy": "LAST_MODIFIED_TIME",
        "SortOrder": "ASCENDING",
    }
    if modified_after is not None:
        params["LastModifiedTimeAfter"] = modified_after
    return params


def list_image_versions(
    client: Any, image_name: str, modified_after: datetime | None
) -> Iterator[list[dict[str, Any]]]:
    """Pages of one image's versions modified on or after `modified_after` (all when None).

    A NextToken refused as expired or invalid restarts the listing from its first page (up to
    MAX_LISTING_RESTARTS times): pages already yielded come again, never a skipped one; the
    caller keeps one state per version. MalformedResponse for an answer that is not the API's.
    """
    from botocore.exceptions import ClientError

    params = version_listing_params(image_name, modified_after)
    restarts = 0
    pages = _Pages("ListImageVersions")
    while True:
        try:
            page = patiently(client.list_image_versions, **params)
        except ClientError as error:
            if "NextToken" not in params or kind_of(error) is not AwsErrorKind.BAD_PAGE_TOKEN:
                raise
            restarts += 1
            if restarts > MAX_LISTING_RESTARTS:
                raise
            log.warning("%s: NextToken refused, restarting the listing (%d)", image_name, restarts)
            del params["NextToken"]
            pages = _Pages("ListImageVersions")
            continue
        yield _page_items(page, "ListImageVersions", "ImageVersions")
        token = pages.next_token(page)
        if token is None:
            return
        params["NextToken"] = token

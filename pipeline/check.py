"""`image-versions check`: whether a sync could run here and now, without syncing.

For every target: who its credentials say it is (STS GetCallerIdentity) and whether they may
make the calls its sync makes: ListImages (MaxResults=1), then, on the first image listed,
ListImageVersions, and where the source opts in, enrichment's ListAliases and
DescribeImageVersion and tags' DescribeImage and ListTags (an account without images leaves
those untried, and says so). For the data dir: whether it is ours and
writable and its locks are free; a data dir that does not exist is not created (the first
sync does that), and nothing is written but what a sync writes too (a probe file in its
temporary directory, lock files). For the Dagster code location: whether `assets.definitions`
loads (its definitions built, as at `dagster dev`), in a child process, since `pipeline/`
never imports Dagster.

Everything is bounded as a sync is: each call by the access settings' call deadline, retries
and timeouts; the targets are checked side by side, all within `targets_deadline_s`; the
Dagster load, which runs meanwhile, within `DAGSTER_LOAD_TIMEOUT_S`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .aws_errors import AwsErrorKind, aws_failure, describe
from .child import python_child
from .clients import make_client
from .defaults import TARGET_CONCURRENCY
from .errors import ConfigError, ImageVersionsError, UserError, WriterBusy, one_line
from .extract import member_targets
from .guard import CallGuard, Cancelled, guard_client
from .run import SourceTarget
from .source import AccountListings, ApiStats, aws_session, check_reachable, client_config
from .storage import DataDir

__all__ = [
    "DAGSTER_LOAD_TIMEOUT_S",
    "Check",
    "CheckReport",
    "DagsterLoad",
    "check_data_dir",
    "check_target",
    "dagster_environment",
    "run_checks",
    "targets_deadline_s",
]

DAGSTER_LOAD_TIMEOUT_S = 120.0
"""How long the Dagster code location may take to import (it takes seconds)."""
CALLS_PER_TARGET = 9
"""Calls one target's check makes one after another at most: two roles to assume (a member
account's: the source's role, then the member role), GetCallerIdentity, ListImages, and the
five calls on an image (`_image_calls`)."""
DAGSTER_LOAD = (
    "from assets.definitions import defs\ndefs().get_repository_def().load_all_definitions()"
)
"""What Dagster does at the code location's load: build the lazy `defs`, then every asset,
job and schedule in it."""
STS_HINT = "check the network, or AWS_ENDPOINT_URL_STS"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it passed, and why not."""

    subject: str
    ok: bool
    detail: str
    facts: Mapping[str, Any] = field(default_factory=dict)
    """What --json adds: the account, the caller's ARN, the busy locks..."""

    @property
    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.subject}: {self.detail}"

    @property
    def record(self) -> dict[str, Any]:
        return {"subject": self.subject, "ok": self.ok, "detail": self.detail, **self.facts}


@dataclass(frozen=True)
class CheckReport:
    targets: list[Check]
    data_dir: Check
    dagster: Check

    @property
    def checks(self) -> list[Check]:
        return [*self.targets, self.data_dir, self.dagster]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def record(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "targets": [check.record for check in self.targets],
            "data_dir": self.data_dir.record,
            "dagster": self.dagster.record,
        }


# ------------------------------------------------------------------ targets


@contextlib.contextmanager
def _noting(problems: list[str], what: str) -> Iterator[None]:
    """Inside, the product's errors and AWS's become one line in `problems` (the block
    stops there); a cancellation or a bug passes through."""
    try:
        yield
    except Cancelled:
        raise
    except ImageVersionsError as exc:
        problems.append(f"{what}: {one_line(str(exc))}")
    except Exception as exc:
        if aws_failure(exc) is None:
            raise
        problems.append(f"{what}: {one_line(describe(exc))}")


def check_target(target: SourceTarget, cancel: threading.Event) -> Check:
    """The identity of one target's credentials, and whether they may make its sync's calls."""
    settings = target.client
    facts: dict[str, Any] = {"source": target.source, "region": target.region}
    facts.update(account_id=None, arn=None, list_images=False)
    problems: list[str] = []
    images: list[dict[str, Any]] = []
    guard = CallGuard(settings.call_deadline_s, cancel)
    with _noting(problems, "credentials"):
        session = aws_session(settings, guard)
        with _noting(problems, "identity"):
            sts = guard_client(session.client("sts", config=client_config(settings)), guard)
            check_reachable(sts, settings.connect_timeout_s, "STS", STS_HINT)
            identity = sts.get_caller_identity()
            facts.update(account_id=identity.get("Account"), arn=identity.get("Arn"))
        with _noting(problems, "ListImages"):
            credentials = session.get_credentials()
            client = make_client(settings, ApiStats(), guard, credentials=credentials)
            check_reachable(client, timeout_s=settings.connect_timeout_s)
            images = client.list_images(MaxResults=1).get("Images") or []
            facts["list_images"] = True
    allowed = ["ListImages"] if facts["list_images"] else []
    notes = ["no image to try the calls on an image with"] if allowed and not images else []
    for operation, method, params in _image_calls(images[0], target) if images else ():
        with _noting(problems, operation):
            _allowed(getattr(client, method), params)
            allowed.append(operation)
    facts["allowed"] = allowed
    said = [f"account {facts['account_id']} as {facts['arn']}"] if facts["arn"] else []
    said += [f"{', '.join(allowed)} allowed"] if allowed else []
    return Check(target.label, not problems, "; ".join(said + notes + problems), facts)


def _image_calls(
    image: Mapping[str, Any], target: SourceTarget
) -> list[tuple[str, str, dict[str, Any]]]:
    """(operation, client method, parameters) of the calls a sync of `target` makes on an
    image, each to be made once on `image`."""
    name = {"ImageName": image.get("ImageName")}
    calls = [("ListImageVersions", "list_image_versions", {**name, "MaxResults": 1})]
    if target.enrich or target.tags:
        calls.append(("ListAliases", "list_aliases", name))
        # Without a version: the image's latest, as DescribeImageVersion allows.
        calls.append(("DescribeImageVersion", "describe_image_version", name))
    if target.tags:
        calls.append(("DescribeImage", "describe_image", name))
        calls.append(("ListTags", "list_tags", {"ResourceArn": image.get("ImageArn")}))
    return calls


def _allowed(call: Callable[..., Any], params: dict[str, Any]) -> None:
    """Make `call`; an image or version gone meanwhile (or an image without versions) still
    says the call is allowed: AWS checks permissions first."""
    try:
        call(**params)
    except Exception as exc:
        failure = aws_failure(exc)
        if failure is None or failure.kind is not AwsErrorKind.NOT_FOUND:
            raise


def targets_deadline_s(call_deadline_s: float) -> float:
    """The longest the targets' checks may take together: they run side by side, each at most
    `CALLS_PER_TARGET` calls of at most `call_deadline_s` each."""
    return CALLS_PER_TARGET * call_deadline_s


def _expanded(
    targets: list[SourceTarget], cancel: threading.Event
) -> tuple[list[SourceTarget], list[Check]]:
    """Each plain target, and each member account's of an organization source; a failed
    Check for an organization whose accounts cannot be listed or reached."""
    members: list[SourceTarget] = []
    failed: list[Check] = []
    listings: AccountListings = {}
    for target in targets:
        try:
            members.extend(member_targets(target, listings, ApiStats(), cancel))
        except ConfigError as exc:
            facts = {"source": target.source, "region": target.region}
            failed.append(Check(target.label, False, f"organization: {exc}", facts))
    return members, failed


def _check_targets(targets: list[SourceTarget], deadline_s: float) -> list[Check]:
    """Every target's check, side by side; those unfinished after `deadline_s` fail."""
    cancel = threading.Event()
    members, checks = _expanded(targets, cancel)
    if not members:
        return checks
    pool = ThreadPoolExecutor(min(len(members), TARGET_CONCURRENCY), "image-versions-check")
    futures: dict[Future[Check], SourceTarget] = {
        pool.submit(check_target, member, cancel): member for member in members
    }
    wait(futures, timeout=deadline_s)
    cancel.set()  # what is still running stops at its next step
    pool.shutdown(wait=False, cancel_futures=True)
    for future, member in futures.items():
        try:
            checks.append(future.result(timeout=0))
        except (TimeoutError, CancelledError, Cancelled):
            facts = {"source": member.source, "region": member.region}
            late = f"no answer within {deadline_s:g} s"
            checks.append(Check(member.label, False, late, facts))
    return checks


# ------------------------------------------------------------------ the data dir


def _busy_locks(data_dir: DataDir) -> tuple[int, list[str]]:
    """How many locks the data dir has, and which of them another process holds now; each is
    taken and let go at once, one at a time."""
    locks = [("dataset", data_dir.writer_lock())]
    locks += [(f"target {key}", data_dir.target_lock(key)) for key in data_dir.target_keys()]
    locks += [(f"account {key}", data_dir.account_lock(key)) for key in data_dir.account_keys()]
    busy = []
    for name, lock in locks:
        try:
            with lock:
                pass
        except WriterBusy:
            busy.append(name)
    return len(locks), busy


def check_data_dir(data_dir: DataDir) -> Check:
    """Whether a sync can write into `data_dir` now: it is ours, writable, its locks free."""
    subject = f"data dir {data_dir.location}"
    facts: dict[str, Any] = {"location": data_dir.location, "exists": False, "busy_locks": []}
    try:
        store = data_dir.store
        store.check_reachable(data_dir.root)
        if not store.has_entries(data_dir.root) and not store.is_file(data_dir.root):
            return Check(subject, True, "empty or absent: the first sync creates it", facts)
        facts["exists"] = True
        data_dir.check_ours()
        data_dir.check_writable()
        count, busy = _busy_locks(data_dir)
    except UserError as exc:
        return Check(subject, False, one_line(str(exc)), facts)
    facts["busy_locks"] = busy
    if busy:
        held = ", ".join(busy)
        return Check(subject, False, f"writable; held by another process: {held}", facts)
    return Check(subject, True, f"writable, {count} lock{'s' if count != 1 else ''} free", facts)


# ------------------------------------------------------------------ Dagster


class DagsterLoad:
    """The Dagster code location imported in a child process, started at once and judged by
    `result`: meanwhile the targets are checked."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._started = time.monotonic()
        self._process = subprocess.Popen(
            python_child("-c", DAGSTER_LOAD),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(environ),
        )

    def result(self, timeout_s: float = DAGSTER_LOAD_TIMEOUT_S) -> Check:
        subject = "dagster assets.definitions"
        left = max(0.0, timeout_s - (time.monotonic() - self._started))
        try:
            _, errors = self._process.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return Check(subject, False, f"not loaded within {timeout_s:g} s", {"seconds": None})
        seconds = round(time.monotonic() - self._started, 3)
        if self._process.returncode == 0:
            return Check(subject, True, f"loads ({seconds:.1f} s)", {"seconds": seconds})
        lines = [line for line in errors.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {self._process.returncode}"
        return Check(subject, False, one_line(last), {"seconds": seconds})


def dagster_environment(config: str | None, data_dir: str | None) -> dict[str, str]:
    """The environment of the Dagster load: this one, with the sources file and data dir
    that the flags named, as the code location reads them."""
    from .config import CONFIG_ENV, DATA_DIR_ENV

    environ = dict(os.environ)
    environ.update({CONFIG_ENV: config} if config else {})
    environ.update({DATA_DIR_ENV: data_dir} if data_dir else {})
    return environ


def run_checks(
    targets: list[SourceTarget], data_dir: DataDir, dagster: DagsterLoad, deadline_s: float
) -> CheckReport:
    """Every check: the targets (within `deadline_s`), the data dir, and the Dagster load
    that `dagster` started."""
    checked = _check_targets(targets, deadline_s)
    return CheckReport(checked, check_data_dir(data_dir), dagster.result())

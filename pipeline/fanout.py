"""`sync --processes N`: the targets shared out over N child processes, for more than one core.

One process's interpreter lock caps it near one core: botocore's work per call, not the
network, is the floor of a large organisation's sync. Targets are independent (each has its own
state and writer lock), so N children of this same command each take a share of the targets
(`--shard I/N`) and write into the one data dir side by side. The parent adds up their JSON
summaries, and the progress lines the children write before them.

The shares are planned by cost: the parent weighs each target an earlier sync reached by the
images in its account's state (a no-change sync makes a call per image) and deals them out
largest first, each to the least loaded child, so one large target does not leave a process
idle. It hands the plan to every child on its standard input (nothing is written outside the
data dir): the children must agree, and each reads the state while the others change it. A
target the plan does not know (a new source or member account) goes by a stable hash of its key.
Beside the plan go the accounts of each organization source, which the parent listed to count
the targets: an organization is listed once a sync, not once more by every child.

shares.py plans the shares, and the processes, from what the data dir knows of the targets.

A process pool of the CLI's own, rather than Dagster's executors, because it serves the CLI
and Dagster alike (the sync op runs the same command's core) and needs no run launcher; in
Dagster, fanning partitions out over runs or pods does the same across machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from .child import python_child
from .errors import ConfigError

if TYPE_CHECKING:  # the command line imports this module before it parses `--help`
    from .source import AccountListings

__all__ = [
    "Handover",
    "Shard",
    "ShardOutcome",
    "in_shard",
    "merge_failures",
    "merge_figures",
    "plan_shards",
    "progress_lines",
    "run_shards",
]

_POLL_S = 0.1
PROGRESS_LINE = '{"progress"'
"""How a child's progress lines begin on its stdout, before its summary line."""
PROGRESS_EVERY_S = 0.2


@dataclass(frozen=True)
class Shard:
    """This process syncs the targets whose key hashes to `index` of `count`."""

    index: int
    count: int
    planned: Mapping[str, int] = field(default_factory=dict, compare=False)
    """The shard of each target the parent weighed (`plan_shards`); others go by hash."""

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, _, count = text.partition("/")
        shard = cls(int(index), int(count))
        if not 0 <= shard.index < shard.count:
            raise ValueError(f"shard {text!r}: want I/N with 0 <= I < N")
        return shard


def in_shard(key: str, shard: Shard | None) -> bool:
    """Whether the target `key` is this process's to sync."""
    if shard is None:
        return True
    index = shard.planned.get(key)
    if index is None:
        index = zlib.crc32(key.encode()) % shard.count
    return index == shard.index


def plan_shards(costs: Mapping[str, float], count: int) -> dict[str, int]:
    """Each target's shard: the costliest first, each to the least loaded shard (longest
    processing time first: within 4/3 of the best split)."""
    loads = [0.0] * count
    plan: dict[str, int] = {}
    for key in sorted(costs, key=lambda key: (-costs[key], key)):
        index = min(range(count), key=lambda i: (loads[i], i))
        plan[key] = index
        loads[index] += costs[key]
    return plan


@dataclass(frozen=True)
class Handover:
    """What the parent hands every child on its standard input (`run_shards`): the plan of
    the shares, and each organization source's accounts as the parent listed them (or why
    they could not be listed)."""

    plan: Mapping[str, int] = field(default_factory=dict)
    accounts: AccountListings = field(default_factory=dict)

    def to_json(self) -> str:
        accounts = {
            source: {"error": str(listed)} if isinstance(listed, ConfigError) else listed
            for source, listed in self.accounts.items()
        }
        return json.dumps({"plan": dict(self.plan), "accounts": accounts})

    @classmethod
    def from_json(cls, text: str) -> Handover:
        """The handover a child reads; ValueError when it is not one."""
        handover = json.loads(text)
        if not isinstance(handover, dict):
            raise ValueError("a handover is a JSON object of a plan and accounts")
        plan, accounts = handover.get("plan"), handover.get("accounts")
        if not isinstance(plan, dict) or not all(
            isinstance(key, str) and type(index) is int for key, index in plan.items()
        ):
            raise ValueError("a shard plan is a JSON object of target keys to shard indexes")
        if not isinstance(accounts, dict):
            raise ValueError("a handover's accounts are a JSON object of sources")
        return cls(plan, {source: _listing(listed) for source, listed in accounts.items()})


def _listing(listed: Any) -> list[dict[str, Any]] | ConfigError:
    if isinstance(listed, dict) and isinstance(listed.get("error"), str):
        return ConfigError(listed["error"])
    if isinstance(listed, list) and all(
        isinstance(account, dict) and isinstance(account.get("Id"), str) for account in listed
    ):
        return listed
    raise ValueError("an organization's accounts are a list of objects or an error")


@dataclass
class ShardOutcome:
    figures: dict[str, Any]
    failures: list[str]
    code: int
    """The worst exit status of the children (2 before 1 before 0)."""


def merge_figures(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One sync summary from the children's (without `ok` and `failures`): counts added up,
    the wall time the longest, the watermarks' range the widest; a failure that several
    children report (an organization whose accounts could not be listed) counted once in
    `failed`, as `merge_failures` lists it."""
    merged: dict[str, Any] = {}
    for summary in summaries:
        for name, value in summary.items():
            if name in ("ok", "failures"):
                continue
            before = merged.get(name)
            if before is None:
                merged[name] = value
            elif name == "seconds":
                merged[name] = max(before, value)
            elif name == "watermark_min":
                merged[name] = min(before, value) if value is not None else before
            elif name == "watermark_max":
                merged[name] = max(before, value) if value is not None else before
            elif isinstance(value, bool):
                merged[name] = before or value
            elif isinstance(value, int | float):
                merged[name] = before + value
    if "failed" in merged:
        merged["failed"] -= len(_reported(summaries)) - len(merge_failures(summaries))
    return merged


def merge_failures(summaries: Sequence[dict[str, Any]]) -> list[str]:
    """The children's failures, in order, each once."""
    return list(dict.fromkeys(_reported(summaries)))


def _reported(summaries: Sequence[dict[str, Any]]) -> list[str]:
    return [failure for summary in summaries for failure in summary.get("failures", [])]


def run_shards(
    argv: Sequence[str],
    processes: int,
    handover: Handover,
    cancel: threading.Event,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> ShardOutcome:
    """Run `image-versions sync ARGV` as `processes` children, one shard each of the
    handover's plan, and wait for them all, passing the sum of their progress to
    `on_progress`; once `cancel` is set they are sent SIGTERM (each commits what it
    finished). A failure that several children report (an organization whose accounts
    could not be listed) is reported once."""
    shard_options = ("--json", "--shard-plan", "--shard")
    children = [
        subprocess.Popen(
            python_child("-m", "pipeline", "sync", *argv, *shard_options, f"{i}/{processes}"),
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    talks = _Talks(children, handover.to_json(), on_progress)
    readers = [
        threading.Thread(target=talks.talk, args=(i,), daemon=True) for i in range(processes)
    ]
    for reader in readers:
        reader.start()
    signalled = False
    while any(reader.is_alive() for reader in readers):
        if cancel.is_set() and not signalled:
            for child in children:
                child.terminate()
            signalled = True
        for reader in readers:
            reader.join(timeout=_POLL_S / processes)
    summaries, stopped, codes = [], [], []
    for index, (child, line) in enumerate(zip(children, talks.last_lines, strict=True)):
        summary = json.loads(line) if line.startswith("{") else None
        if summary is not None:
            summaries.append(summary)
        code = child.wait()
        if code < 0 or (code != 2 and summary is None):
            # Killed (the OOM killer), or stopped before its summary: its targets are unknown.
            stopped.append(f"shard {index + 1} of {processes} stopped with status {code}")
            code = 1
        codes.append(code)
    failures = merge_failures(summaries) + stopped
    return ShardOutcome(merge_figures(summaries), failures, _combined(codes))


class _Talks:
    """The parent's side of each child's pipes: the handover written to its stdin; its progress
    lines read from its stdout as they come, and the last other line (its summary) kept."""

    def __init__(
        self,
        children: Sequence[subprocess.Popen[str]],
        handover: str,
        on_progress: Callable[[dict[str, int]], None] | None,
    ) -> None:
        self.children, self.handover, self.on_progress = children, handover, on_progress
        self.last_lines = [""] * len(children)
        self._progress: list[dict[str, int]] = [{} for _ in children]
        self._lock = threading.Lock()

    def talk(self, index: int) -> None:
        child = self.children[index]
        assert child.stdin is not None and child.stdout is not None
        with contextlib.suppress(BrokenPipeError):  # a child that died at once
            child.stdin.write(self.handover)
            child.stdin.close()
        with child.stdout:
            for line in child.stdout:
                if line.startswith(PROGRESS_LINE):
                    self._report(index, json.loads(line)["progress"])
                elif line.strip():
                    self.last_lines[index] = line.strip()

    def _report(self, index: int, progress: dict[str, int]) -> None:
        with self._lock:
            self._progress[index] = progress
            if self.on_progress is not None:
                summed: Counter[str] = Counter()
                for shard in self._progress:
                    summed.update(shard)
                self.on_progress(dict(summed))


def progress_lines(out: TextIO) -> Callable[[Any], None]:
    """A child's progress callback: its progress (a dataclass) as a JSON line on `out` for
    the parent (`run_shards`), at most every `PROGRESS_EVERY_S`, and the last one always."""
    written = [float("-inf")]

    def write(progress: Any) -> None:
        now = time.monotonic()
        if now - written[0] < PROGRESS_EVERY_S and progress.targets_done < progress.targets:
            return
        written[0] = now
        out.write(json.dumps({"progress": dataclasses.asdict(progress)}) + "\n")
        out.flush()

    return write


def _combined(codes: Sequence[int]) -> int:
    """The parent's status: 2 only when every shard was refused (as one process would be),
    128 + a signal when one was stopped by it, else 1 when any shard failed."""
    if all(code == 2 for code in codes):
        return 2
    stopped = [code for code in codes if code > 128]
    if stopped:
        return stopped[0]
    return 1 if any(codes) else 0

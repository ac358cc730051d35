"""The `image-versions` command.

Heavy libraries (boto3, pyarrow, duckdb) are imported inside the commands, so `--help` and
usage errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from .allocator import choose_system_allocator
from .arguments import PROG, QUERY_TABLE_ROWS, build_parser
from .errors import ConfigError, UserError, one_line
from .fanout import Handover, progress_lines
from .guard import Cancelled
from .logs import QUIET_LOG_FORMAT, TEXT_LOG_FORMAT, JsonLogFormatter
from .redact import RedactingFilter
from .render import print_json, print_records, report_metadata, summary_line, write_records
from .settings import Group, options_of
from .terminal import printable

if TYPE_CHECKING:
    from .config import AccessSettings
    from .failed_builds import FailedBuilds
    from .run import SourceTarget, SyncOptions
    from .source import ApiStats
    from .storage import DataDir
    from .warehouse import QueryResult

__all__ = ["main", "options_from", "run"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ commands


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[Any], None] | None]:
    """A progress callback drawing a bar on stderr while the block runs, when stderr is a
    terminal; else None."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=0, unit="image", leave=False) as bar:

        def update(progress: Any) -> None:
            bar.total = progress.images
            bar.set_description(f"targets {progress.targets_done}/{progress.targets}", False)
            bar.update(progress.images_done - bar.n)
            if progress.targets_done == progress.targets:
                bar.refresh()  # the end is shown, however soon after the last drawing it came

        yield update


def _targets_from(args: argparse.Namespace, access: AccessSettings) -> list[SourceTarget]:
    """The targets that the sources file and the target flags choose."""
    from .config import Overrides, build_targets, load_config

    overrides = Overrides(
        regions=tuple(args.region),
        endpoint_url=args.endpoint_url,
        profile=args.profile,
        sources=tuple(args.source),
    )
    return build_targets(load_config(args.config), access, overrides)


def cmd_sync(args: argparse.Namespace) -> int:
    from .config import resolve_data_dir
    from .extract import list_organizations, sync
    from .shares import default_processes
    from .source import ApiStats

    data_dir = resolve_data_dir(args.data_dir)
    options, access = options_from(args)
    targets = _targets_from(args, access)
    sources = {target.source for target in targets}
    if args.shard is not None and args.processes is not None:
        raise ConfigError("--processes and --shard do not go together")
    counting = ApiStats()  # the organizations' accounts, listed once for the whole sync
    if args.shard is None:
        data_dir.check_ours()  # before the listing, which may wait out a hung endpoint
        handover = Handover(accounts=list_organizations(targets, counting, args.cancel))
        processes = args.processes or default_processes(data_dir, targets, handover.accounts)
        if processes > 1:
            return _sync_in_processes(args, data_dir, sources, processes, counting, handover)
    else:
        try:
            handover = Handover.from_json(sys.stdin.read()) if args.shard_plan else Handover()
        except ValueError as exc:
            raise ConfigError(f"--shard-plan: standard input holds no handover: {exc}") from exc
        options = replace(options, shard=replace(args.shard, planned=handover.plan))
    # A child of `--processes` (given its plan) tells its parent, which shows the progress.
    progress: contextlib.AbstractContextManager[Callable[[Any], None] | None] = (
        contextlib.nullcontext(progress_lines(sys.stdout)) if args.shard_plan else _progress_bar()
    )
    with progress as on_progress:
        report = sync(
            data_dir,
            targets,
            options,
            on_progress=on_progress,
            cancel=args.cancel,
            accounts=handover.accounts,
        )
    report.stats.add(counting)
    failures = [str(failure) for failure in report.failures]
    return _print_summary(args, report_metadata(report), failures)


def options_from(args: argparse.Namespace) -> tuple[SyncOptions, AccessSettings]:
    """The options of `sync` as its flags (settings.OPTIONS) give them, checked."""
    from .run import SyncOptions

    return SyncOptions(**_given(args, "sync"), concurrency=args.concurrency), _access_from(args)


def _given(args: argparse.Namespace, group: Group) -> dict[str, Any]:
    return {option.name: getattr(args, option.name) for option in options_of(group)}


def _access_from(args: argparse.Namespace) -> AccessSettings:
    from .config import AccessSettings

    return AccessSettings(**_given(args, "access"))


def _print_summary(args: argparse.Namespace, figures: dict[str, Any], failures: list[str]) -> int:
    if args.json:
        print_json({**figures, "ok": not failures, "failures": failures}, sys.stdout)
    else:
        print(summary_line(figures))
        _print_failures(failures)
    return 0 if not failures else 1


def _print_failures(failures: list[str]) -> None:
    """One line each on stderr, beside the errors and logs; stdout keeps the summary."""
    for failure in failures:
        print(f"FAILED {printable(failure)}", file=sys.stderr)


def _sync_in_processes(
    args: argparse.Namespace,
    data_dir: DataDir,
    sources: set[str],
    processes: int,
    counting: ApiStats,
    handover: Handover,
) -> int:
    """The same sync as `processes` children, each a shard of the targets planned by what
    each cost last (fanout.py), and given the organizations' accounts of `handover`; their
    own errors reach stderr as they happen. The calls that listed those accounts
    (`counting`) are added to theirs."""
    from .fanout import run_shards
    from .shares import plan_by_cost
    from .target_run import Progress

    plan = plan_by_cost(data_dir, sources, processes)
    log.info("syncing in %d processes (%d targets shared by their cost)", processes, len(plan))
    argv = _without_option(args.argv[args.argv.index("sync") + 1 :], "--processes")
    with _progress_bar() as update:

        def on_progress(summed: dict[str, int]) -> None:
            if update is not None:
                update(Progress(**summed))

        shares = replace(handover, plan=plan)
        outcome = run_shards(argv, processes, shares, args.cancel, on_progress)
    if args.cancel.is_set():
        raise Cancelled()
    if outcome.figures:
        outcome.figures["api_calls"] += counting.total_calls
        _print_summary(args, outcome.figures, outcome.failures)
    else:
        _print_failures(outcome.failures)
    return outcome.code


def _without_option(argv: Sequence[str], option: str) -> list[str]:
    """`argv` less `option` and its value (`--option N` or `--option=N`)."""
    kept: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == option:
            skip = True
        elif not word.startswith(f"{option}="):
            kept.append(word)
    return kept


def _readable_data_dir(flag: str | None) -> Any:
    from .config import resolve_data_dir

    data_dir = resolve_data_dir(flag)
    data_dir.store.check_reachable(data_dir.root)
    if not data_dir.is_ours():
        raise ConfigError(
            f"{data_dir.location} is not an image-versions data dir; run `image-versions sync` "
            "first or pass --data-dir"
        )
    data_dir.refuse_symlinks()
    return data_dir


def cmd_status(args: argparse.Namespace) -> int:
    data_dir = _readable_data_dir(args.data_dir)
    result = _status_rows(args, data_dir)
    fmt = "json" if args.json else "table"
    with _reader_may_leave():
        print_records(result.columns, result.rows, fmt, sys.stdout, result.types)
    return 0


def _status_rows(args: argparse.Namespace, data_dir: Any) -> QueryResult | FailedBuilds:
    """The rows `status` shows, as its flags choose: with --failed-since, one row per version
    that entered a failed status."""
    from .failed_builds import failed_builds
    from .status import StatusFilter, image_rows, target_rows

    if args.failed_since is not None:
        return failed_builds(data_dir, args.failed_since)
    if args.image is not None and not args.images:
        raise ConfigError("--image narrows the per-image rows: add --images")
    chosen = StatusFilter(tuple(args.source), tuple(args.account), args.image)
    return image_rows(data_dir, chosen) if args.images else target_rows(data_dir, chosen)


def cmd_query(args: argparse.Namespace) -> int:
    from .warehouse import stream_query

    data_dir = _readable_data_dir(args.data_dir)
    with _reader_may_leave(), stream_query(data_dir, args.sql) as result:
        write_records(
            result.columns,
            result.types,
            result.batches,
            args.format,
            sys.stdout,
            table_rows=QUERY_TABLE_ROWS,
        )
    return 0


@contextlib.contextmanager
def _reader_may_leave() -> Iterator[None]:
    """Output whose reader may stop early (`query ... | head`): that is no failure, so the
    command ends quietly with status 0. stdout then points at /dev/null, where the flush at
    exit has nothing to fail on."""
    try:
        yield
        sys.stdout.flush()  # inside: a reader that left shows here, not at exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cmd_check(args: argparse.Namespace) -> int:
    from .check import DagsterLoad, dagster_environment, run_checks, targets_deadline_s
    from .config import resolve_data_dir

    data_dir = resolve_data_dir(args.data_dir)
    access = _access_from(args)
    targets = _targets_from(args, access)
    dagster = DagsterLoad(dagster_environment(args.config, args.data_dir))
    report = run_checks(targets, data_dir, dagster, targets_deadline_s(access.call_deadline_s))
    if args.json:
        print_json(report.record, sys.stdout)
    else:
        for check in report.checks:
            print(printable(check.line))
    return 0 if report.ok else 1


def cmd_compact(args: argparse.Namespace) -> int:
    from .committer import roll_back_unfinished_commit
    from .warehouse import refresh_views

    data_dir = _readable_data_dir(args.data_dir)
    data_dir.check_writable()  # before any lock file is made
    with data_dir.exclusive(args.lock_timeout_s):
        for account in data_dir.account_keys():  # not merged in: their rows come again
            roll_back_unfinished_commit(data_dir, account)
        before, after = data_dir.compact()
        refresh_views(data_dir)
    print(f"compacted {data_dir.location}: {before} files -> {after}")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    from .retire import retire
    from .warehouse import refresh_views

    data_dir = _readable_data_dir(args.data_dir)
    data_dir.check_writable()  # before any lock file is made
    with data_dir.exclusive(args.lock_timeout_s):
        retired = retire(data_dir, args.source, purge=args.purge)
        refresh_views(data_dir)
    print(f"retired {', '.join(retired.targets)} in {data_dir.location}")
    for account in retired.accounts:
        kept = "deleted" if args.purge else "kept (use --purge to delete it)"
        print(f"  {account}: state dropped, stored history {kept}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import find_problems, repair
    from .warehouse import refresh_views

    data_dir = _readable_data_dir(args.data_dir)
    with data_dir.exclusive(args.lock_timeout_s):
        problems = find_problems(data_dir)
        for problem in problems:
            print(f"PROBLEM {printable(str(problem))}")
        if args.repair and problems:
            for action in repair(data_dir, problems):
                print(f"REPAIR {printable(str(action))}")
            refresh_views(data_dir)
    print(f"{len(problems)} problem(s) in {data_dir.location}")
    return 1 if problems else 0


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo runs the Dagster job, so it lives in the Dagster layer; a child process keeps
    # Dagster out of this one.
    import subprocess

    from .child import python_child

    data_dir = ["--data-dir", args.data_dir] if args.data_dir else []
    return subprocess.call(python_child("-m", "assets.demo", *data_dir))


def cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import MIN_SEED_IMAGES, serve

    if args.images < MIN_SEED_IMAGES:
        raise ConfigError(f"--images must be at least {MIN_SEED_IMAGES}, not {args.images}")
    serve(args.host, args.port, images=args.images)
    return 0


COMMANDS = {
    "sync": cmd_sync,
    "check": cmd_check,
    "status": cmd_status,
    "query": cmd_query,
    "compact": cmd_compact,
    "retire": cmd_retire,
    "verify": cmd_verify,
    "demo": cmd_demo,
    "emulator": cmd_emulator,
}


def _stop_on_signals() -> tuple[threading.Event, list[int]]:
    """The first SIGINT or SIGTERM sets the returned event (and records which came) instead of
    killing the process: a sync then abandons its calls, commits what it finished and exits."""
    cancel = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _: Any) -> None:
        received.append(signum)
        cancel.set()
        # A second signal is not asked twice: it ends the process at once (a wait for the
        # writer lock, say, does not look at the event).
        signal.signal(signum, signal.SIG_DFL)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    return cancel, received


def _error(message: str) -> None:
    print(f"{PROG}: error: {printable(one_line(message))}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit status (0 ok, 1 the run failed, 2 bad usage/config,
    128 + the signal's number when SIGINT or SIGTERM stopped a sync)."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    log_format = getattr(args, "log_format", "text")
    verbosity = max(getattr(args, "verbose", 0), 1 if log_format == "json" else 0)
    # Without -v, warnings alone as bare messages, as Python's last-resort handler showed them;
    # but through our formatter and filter, which that handler lacks (no escapes, no redaction).
    handler = logging.StreamHandler()
    formatter: logging.Formatter = JsonLogFormatter()
    if log_format != "json":
        formatter = TEXT_LOG_FORMAT if verbosity else QUIET_LOG_FORMAT
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logging.basicConfig(handlers=[handler])
    if verbosity:
        # Only our own loggers speak up: botocore's debug log would print request headers,
        # session tokens included.
        logging.getLogger("pipeline").setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    args.cancel, received = _stop_on_signals() if args.command == "sync" else (None, [])
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        _error(str(exc))
        return exc.exit_code
    except OSError as exc:
        # Disk full, permissions changed mid-run...: what was committed stays committed.
        where = f" ({exc.filename})" if exc.filename else ""
        _error(
            f"{exc.strerror or exc}{where}; the run stopped, what it had committed stays committed"
        )
        return 1
    except (Cancelled, KeyboardInterrupt):
        signum = received[0] if received else signal.SIGINT
        name = signal.Signals(signum).name
        print(f"{PROG}: stopped by {name}; what was committed stays committed", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Everything is committed and the lock released; a worker thread may still sit in a
        # back-off sleep, which the interpreter's exit would wait for.
        os._exit(128 + signum)


def run() -> NoReturn:
    """The console script: `main`, then a prompt exit. Everything is committed, closed and
    unlocked by then; the interpreter's own shutdown (finalising pyarrow, DuckDB, botocore)
    would add a third of a second or more to every command."""
    choose_system_allocator()  # the process is ours: before anything imports pyarrow
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

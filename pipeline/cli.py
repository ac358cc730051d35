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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .defaults import PROCESS_PER_CORE_TARGETS
from .errors import ConfigError, UserError, one_line
from .fanout import Shard, read_plan
from .guard import Cancelled
from .logs import QUIET_LOG_FORMAT, TEXT_LOG_FORMAT, JsonLogFormatter
from .redact import RedactingFilter
from .render import print_json, print_records, report_metadata, summary_line, write_records
from .settings import OPTIONS, Group, Option, option_named, options_of
from .terminal import printable

if TYPE_CHECKING:
    from .config import AccessSettings
    from .failed_builds import FailedBuilds
    from .run import SourceTarget, SyncOptions
    from .storage import DataDir
    from .warehouse import QueryResult

__all__ = ["build_parser", "main", "options_from", "run"]

PROG = "image-versions"
QUERY_TABLE_ROWS = 1000
"""Rows a `query` table shows at most (it holds them, to size its columns); csv, json and jsonl
print every row as it is read."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line on stderr and exit status 2, and no shortened
    option names (`--proc` for `--processes` would escape what `sync --processes` strips
    before handing its arguments to its children)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a number of at least {minimum}, got {value}"
            )
        return value

    return parse


def _instant(text: str) -> datetime:
    """An argparse type: `failed_builds.parse_since` of `text`, now."""
    from .failed_builds import parse_since

    try:
        return parse_since(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Keep an analytics-ready copy of SageMaker image versions "
        "(Parquet + DuckDB), synced incrementally.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_sync(commands)
    _add_check(commands)
    _add_readers(commands)
    _add_maintenance(commands)
    _add_emulator_commands(commands)
    return parser


def _add_option(command: argparse.ArgumentParser, option: Option) -> None:
    """The flag of one declared option (settings.OPTIONS); its value lands at `option.name`."""
    if option.kind is bool:
        command.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
    elif option.repeated:
        command.add_argument(
            option.flag,
            dest=option.name,
            action="append",
            default=[],
            metavar=option.metavar,
            help=option.help,
        )
    else:
        command.add_argument(
            option.flag,
            dest=option.name,
            type=option.parse,
            choices=option.choices or None,
            default=option.default,
            metavar=option.metavar,
            help=option.help,
        )


def _verbose_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log progress to stderr (-vv: each image's listing too)",
    )
    command.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text, or as one JSON object each (json implies -v)",
    )


def _data_dir_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--data-dir",
        metavar="DIR",
        help="dataset directory or s3://BUCKET/PREFIX "
        "(default: $IMAGE_VERSIONS_DATA_DIR, else ./data)",
    )


def _add_sync(commands: Any) -> None:
    sync = commands.add_parser("sync", help="pull what changed since the last sync")
    _data_dir_option(sync)
    sync.add_argument(
        "--processes",
        type=_whole_number(1),
        metavar="N",
        help="share the targets out over N processes, for more than one core (default: the "
        f"cores once the data dir knows {PROCESS_PER_CORE_TARGETS} targets of the sources, else 1)",
    )
    sync.add_argument("--shard", type=Shard.parse, help=argparse.SUPPRESS)
    sync.add_argument("--shard-plan", action="store_true", help=argparse.SUPPRESS)
    _target_options(sync, "sync")
    for option in OPTIONS:
        _add_option(sync, option)
    _verbose_option(sync)
    sync.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def _target_options(command: argparse.ArgumentParser, verb: str) -> None:
    """The flags that choose the targets (`build_targets`): those of `sync` and `check`."""
    command.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="R",
        help="AWS region; repeat for several (default: boto3's region)",
    )
    command.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="SageMaker endpoint (default: boto3's, e.g. AWS_ENDPOINT_URL_SAGEMAKER)",
    )
    command.add_argument("--profile", metavar="NAME", help="AWS profile (default: boto3's chain)")
    command.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help=f"{verb} only this source of the sources file; repeat for several",
    )
    command.add_argument(
        "--config",
        metavar="FILE",
        help="sources file (default: $IMAGE_VERSIONS_CONFIG, else ./image-versions.toml)",
    )


def _add_check(commands: Any) -> None:
    check = commands.add_parser(
        "check",
        help="without syncing: each target's identity and ListImages permission, the data "
        "dir's writability and locks, the Dagster code location's load (exit 1 if any fails)",
    )
    _data_dir_option(check)
    _target_options(check, "check")
    for option in options_of("access"):
        _add_option(check, option)
    check.add_argument("--json", action="store_true", help="print one JSON object")


def _add_readers(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="one row per target: images, live versions, last sync and failure, learned rate; "
        "--images: one row per image",
    )
    _data_dir_option(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _status_filters(status)
    status.add_argument(
        "--failed-since",
        metavar="WHEN",
        type=_instant,
        help="instead, the versions that entered CREATE_FAILED or DELETE_FAILED in the syncs "
        "recorded after WHEN: a duration before now (90m, 24h, 7d, 2w) or an ISO date or time",
    )

    query = commands.add_parser("query", help="run SQL against the DuckDB views")
    query.add_argument("sql", metavar="SQL")
    _data_dir_option(query)
    query.add_argument(
        "--format",
        choices=("table", "csv", "json", "jsonl"),
        default="table",
        help=f"table (the first {QUERY_TABLE_ROWS:,} rows, control characters escaped), csv, "
        "json (one array of objects) or jsonl (one object a line); csv and json keep values "
        "exact and stream any number of rows",
    )


def _status_filters(status: argparse.ArgumentParser) -> None:
    status.add_argument(
        "--images",
        action="store_true",
        help="one row per image: watermark, last sync, version count, deleted, last error",
    )
    status.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help="only this source (with an organization source's member accounts); repeat for several",
    )
    status.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="ID",
        help="only this account; repeat for several",
    )
    status.add_argument(
        "--image",
        metavar="GLOB",
        help="with --images: only the images whose name matches this glob ('pytorch-*'; "
        "case matters)",
    )


def _add_maintenance(commands: Any) -> None:
    """compact, retire and verify: each takes the data dir's lock, waiting as `sync --wait`."""
    compact = commands.add_parser("compact", help="merge small Parquet files")
    retire = commands.add_parser(
        "retire",
        help="forget a source that left the sources file: its files, and the state of the "
        "accounts no other source reaches",
    )
    retire.add_argument("source", metavar="SOURCE")
    verify = commands.add_parser(
        "verify", help="check the data dir for damage (exit 1 when something is wrong)"
    )
    for command in (compact, retire, verify):
        _data_dir_option(command)
        _verbose_option(command)
        _add_option(command, option_named("lock_timeout_s"))
    retire.add_argument(
        "--purge",
        action="store_true",
        help="also delete the stored versions, details and catalogue of those accounts",
    )
    verify.add_argument(
        "--repair",
        action="store_true",
        help="move unreadable files to DATA/_quarantine/ and drop a state that no longer holds",
    )


def _add_emulator_commands(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="sync a bundled emulator, change it, sync again, show what changed"
    )
    demo.add_argument(
        "--data-dir", metavar="DIR", help="dataset directory (default: a new temporary directory)"
    )

    emulator = commands.add_parser("emulator", help="serve the bundled SageMaker emulator")
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    emulator.add_argument("--port", type=int, default=8765, metavar="N")
    emulator.add_argument(
        "--images",
        type=_whole_number(1),
        default=12,
        metavar="N",
        help="images in the seeded catalogue (default: 12)",
    )


# ------------------------------------------------------------------ commands


def _progress_bar() -> Any:
    """A progress callback drawing a bar on stderr when it is a terminal; else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=0, unit="image", leave=False)

    def update(progress: Any) -> None:
        bar.total = progress.images
        bar.set_description(f"targets {progress.targets_done}/{progress.targets}", refresh=False)
        bar.update(progress.images_done - bar.n)
        if progress.targets_done == progress.targets:
            bar.close()

    return update


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
    from .extract import sync
    from .shares import default_processes

    data_dir = resolve_data_dir(args.data_dir)
    options, access = options_from(args)
    targets = _targets_from(args, access)
    sources = {target.source for target in targets}
    if args.shard is not None:
        if args.processes is not None:
            raise ConfigError("--processes and --shard do not go together")
        planned = read_plan(sys.stdin.read()) if args.shard_plan else {}
        options = replace(options, shard=replace(args.shard, planned=planned))
    elif (processes := args.processes or default_processes(data_dir, sources)) > 1:
        return _sync_in_processes(args, data_dir, sources, processes)
    report = sync(data_dir, targets, options, on_progress=_progress_bar(), cancel=args.cancel)
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
    args: argparse.Namespace, data_dir: DataDir, sources: set[str], processes: int
) -> int:
    """The same sync as `processes` children, each a shard of the targets planned by what
    each cost last (fanout.py); their own errors reach stderr as they happen."""
    from .fanout import run_shards
    from .shares import plan_by_cost

    plan = plan_by_cost(data_dir, sources, processes)
    argv = _without_option(args.argv[args.argv.index("sync") + 1 :], "--processes")
    outcome = run_shards(argv, processes, plan, args.cancel)
    if args.cancel.is_set():
        raise Cancelled()
    if outcome.figures:
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
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

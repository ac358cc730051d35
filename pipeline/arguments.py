"""The `image-versions` command line: its commands and options, and the checks of their values
(argparse). cli.py runs the commands.

Standard library only, and the project's light modules: `--help` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

from . import __version__
from .defaults import PROCESS_PER_CORE_TARGETS
from .fanout import Shard
from .settings import OPTIONS, Option, option_named, options_of

__all__ = ["PROG", "QUERY_TABLE_ROWS", "build_parser"]

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
        f"cores once the sync has {PROCESS_PER_CORE_TARGETS} targets, an organization's accounts "
        "each one, else 1)",
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
        help="without syncing: each target's identity and the permissions of its sync's "
        "calls, the data dir's writability and locks, the Dagster code location's load "
        "(exit 1 if any fails)",
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

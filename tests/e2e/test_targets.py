"""Targets are independent: per-target state and locks, writers side by side, the move from the
single state file, and the sync history (`sync_runs`) each target writes with its last commit."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.emulator import DEFAULT_ACCOUNT_ID, EmulatorServer, seed_catalogue
from pipeline.fanout import Handover, Shard, in_shard, run_shards
from pipeline.model import account_key, target_key
from pipeline.run import Failure, SourceTarget, SyncReport
from pipeline.schema import STATE_SCHEMA
from pipeline.source import ClientSettings
from pipeline.state import legacy_state_file, state_file, state_files
from pipeline.storage import DataDir
from pipeline.warehouse import run_query
from tests.support import (
    OTHER_REGION,
    REGION,
    assert_converged,
    foreign_packages,
    held_listings,
    live_rows,
    run_cli,
    run_sync,
    stored_states,
    truth,
)


def _cli_sync(data_dir: DataDir, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "sync", "--data-dir", str(data_dir.root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


TRYING = "trying the lock"
_TELLS_WHEN_IT_TRIES = (
    "import sys\n"
    "lock, told = sys.argv.pop(1), []\n"
    "def hook(event, args):\n"
    "    if event == 'open' and str(args[0]) == lock and not told:\n"
    "        told.append(True)\n"
    f"        print({TRYING!r}, flush=True)\n"
    "sys.addaudithook(hook)\n"
    "from pipeline.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _sync_telling_when_it_tries_the_lock(
    data_dir: DataDir, key: str, *args: str
) -> subprocess.Popen[str]:
    """`_cli_sync`, whose first line on stdout says it has begun to try `key`'s lock: by then
    it has its stop handlers, and it waits for the lock from there on."""
    lock = str(Path(data_dir.target_dir(key)) / ".lock")
    sync = ["sync", "--data-dir", str(data_dir.root), *args]
    return subprocess.Popen(
        [sys.executable, "-c", _TELLS_WHEN_IT_TRIES, lock, *sync],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _told_it_tries(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line == TRYING, (line, process.communicate())


def test_two_processes_sync_disjoint_targets_into_one_data_dir(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path
) -> None:
    server.emulator.faults.latency_s = 0.05  # long enough for the two runs to overlap
    first = _cli_sync(data_dir, "--config", str(sources_file), "--region", REGION)
    second = _cli_sync(data_dir, "--config", str(sources_file), "--region", OTHER_REGION)
    outcomes = [process.communicate(timeout=120) for process in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), outcomes
    regions = (REGION, OTHER_REGION)
    assert set(live_rows(data_dir, regions)) == truth(server.emulator, regions)
    assert [Path(p).parent.name for p in state_files(data_dir)] == sorted(
        account_key(DEFAULT_ACCOUNT_ID, region) for region in regions
    )


def test_a_second_writer_of_the_same_target_is_refused_or_waits(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=3, images=4)
    run_sync(data_dir, server)
    endpoint = ("--endpoint-url", server.url, "--region", REGION)
    with data_dir.target_lock(target_key("default", REGION)):
        refused = run_cli("sync", "--data-dir", str(data_dir.root), *endpoint)
        # Another target of the same data dir is not held up by that lock.
        other = run_cli(
            "sync",
            "--data-dir",
            str(data_dir.root),
            "--endpoint-url",
            server.url,
            "--region",
            OTHER_REGION,
        )
    assert refused.code == 2, refused.stderr
    assert "another image-versions process is writing" in refused.stderr
    assert other.code == 0, other.stderr
    key = target_key("default", REGION)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom pipeline.storage import DataDir\n"
            f"with DataDir.at({str(data_dir.root)!r}).target_lock({key!r}):\n"
            "    print('held', flush=True); sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    waiting = _sync_telling_when_it_tries_the_lock(data_dir, key, *endpoint, "--wait", "3600")
    _told_it_tries(waiting)
    holder.communicate("release\n", timeout=300)  # only once the sync is waiting
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err


def _write_legacy_state(data_dir: DataDir) -> None:
    """Turn a data dir into what versions before per-target state left: one state file."""
    paths = state_files(data_dir)
    table = pa.concat_tables([pq.read_table(path, schema=STATE_SCHEMA) for path in paths])
    pq.write_table(table, Path(legacy_state_file(data_dir)))
    for key in data_dir.account_keys():
        shutil.rmtree(Path(data_dir.account_dir(key)))


def test_an_older_data_dir_moves_to_per_target_state_without_a_new_listing(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    seed_catalogue(server.emulator, seed=5, images=5)
    run_sync(data_dir, server)
    before = stored_states(data_dir)
    shown = _sync_state(data_dir)
    _write_legacy_state(data_dir)
    assert _sync_state(data_dir) == shown  # readers see the old file until a sync moves it
    calls_before = len(server.emulator.requests())
    report = run_sync(data_dir, server)
    assert report.ok and (report.new, report.changed, report.deleted) == (0, 0, 0)
    # A no-change sync: one ListImageVersions per image, from the old watermarks.
    requests = server.emulator.requests()[calls_before:]
    assert sum(op == "ListImageVersions" for op, _ in requests) == len(before)
    assert not Path(legacy_state_file(data_dir)).exists()
    assert {k: s.watermark_ms for k, s in stored_states(data_dir).items()} == {
        k: s.watermark_ms for k, s in before.items()
    }
    assert_converged(data_dir, server.emulator)


def _sync_state(data_dir: DataDir) -> list[tuple[object, ...]]:
    return run_query(data_dir, "SELECT * FROM sync_state ORDER BY ALL").rows


def _sync_runs(data_dir: DataDir) -> list[tuple[object, ...]]:
    return run_query(
        data_dir,
        "SELECT source, region, images, versions_new, api_calls, ok, error "
        "FROM sync_runs ORDER BY started_at",
    ).rows


def test_each_target_records_its_sync_in_sync_runs(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path
) -> None:
    result = run_cli("sync", "--data-dir", str(data_dir.root), "--config", str(sources_file))
    assert result.code == 0, result.stderr
    rows = _sync_runs(data_dir)
    assert sorted((r[0], r[1], r[2], r[5], r[6]) for r in rows) == [
        ("emu", OTHER_REGION, 4, True, None),
        ("emu", REGION, 6, True, None),
    ]
    expected_new = {
        region: sum(1 for row in truth(server.emulator, (region,))) for region in (REGION,)
    }
    assert {r[1]: r[3] for r in rows}[REGION] == expected_new[REGION]
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        per_day = connection.sql(
            "SELECT source, sum(api_calls) FROM sync_runs GROUP BY source, started_at::DATE"
        ).fetchall()
    assert per_day == [("emu", sum(r[4] for r in rows))]


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    """Poll until `condition` holds; fail if `process` ends first."""
    while not condition():
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)


def test_a_killed_sync_leaves_no_row_claiming_success(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """Each run is stopped after a commit and before its end, whatever the machine's pace:
    two listings pass (slowly enough for a commit to follow), the others wait."""
    seed_catalogue(server.emulator, seed=9, images=30)
    server.emulator.faults.latency_s = 0.1  # a commit is due after every image
    args = ("--endpoint-url", server.url, "--region", REGION, "--concurrency", "2")
    with held_listings(server.emulator, after=2):
        killed = _cli_sync(data_dir, *args, "--commit-every", "0.01")
        _wait_for(lambda: bool(state_files(data_dir)), killed)  # it committed something
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=300)
    state = Path(state_files(data_dir)[0])
    committed = state.stat().st_mtime_ns
    with held_listings(server.emulator, after=2):
        interrupted = _cli_sync(data_dir, *args, "--commit-every", "0.01")
        _wait_for(lambda: state.stat().st_mtime_ns != committed, interrupted)  # at work
        interrupted.send_signal(signal.SIGINT)
        interrupted.communicate(timeout=300)
    assert interrupted.returncode == 128 + signal.SIGINT
    rows = _sync_runs(data_dir)
    assert [(r[5], r[6]) for r in rows] == [(False, "interrupted")]
    server.emulator.faults.latency_s = 0
    assert run_cli("sync", "--data-dir", str(data_dir.root), *args).code == 0
    assert [r[5] for r in _sync_runs(data_dir)] == [False, True]
    assert_converged(data_dir, server.emulator)


def test_target_keys_read_back_unambiguously() -> None:
    assert target_key("prod", "us-east-1") == "prod.us-east-1"
    assert target_key("org/123456789012", "eu-west-1") == "org.123456789012.eu-west-1"
    assert os.sep not in target_key("org/123456789012", "eu-west-1")


def test_processes_share_the_targets_out_and_add_up_their_figures(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "sync", "--data-dir", str(data_dir.root), "--config", str(sources_file),
        "--processes", "2", "--json",
        cwd=foreign_packages(tmp_path),  # the shards import this package, not the user's
    )  # fmt: skip
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["targets"], summary["images"], summary["ok"]) == (2, 10, True)
    regions = (REGION, OTHER_REGION)
    assert set(live_rows(data_dir, regions)) == truth(server.emulator, regions)
    # Each target was synced by exactly one of the two processes.
    assert sorted(row[1] for row in _sync_runs(data_dir)) == sorted(regions)


def test_the_parent_adds_up_its_shards_progress_as_they_go(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path, tmp_path: Path
) -> None:
    snapshots: list[dict[str, int]] = []
    argv = ["--data-dir", str(data_dir.root), "--config", str(sources_file)]
    with contextlib.chdir(foreign_packages(tmp_path)):
        outcome = run_shards(argv, 2, Handover(), threading.Event(), snapshots.append)
    assert outcome.code == 0, outcome.failures
    done = {"targets_done": 2, "targets": 2, "images_done": 10, "images": 10}
    assert snapshots[-1] == done, snapshots
    assert [s["images_done"] for s in snapshots] == sorted(s["images_done"] for s in snapshots)


def test_a_terminal_sees_the_progress_of_every_process(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path
) -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    with os.fdopen(controller, "rb", buffering=0) as screen:
        sync = subprocess.Popen(
            [sys.executable, "-P", "-m", "pipeline", "sync", "--data-dir", str(data_dir.root),
             "--config", str(sources_file), "--processes", "2"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal,
        )  # fmt: skip
        os.close(terminal)
        drawn = b""
        with contextlib.suppress(OSError):  # EIO once the last writer has closed the terminal
            while chunk := screen.read(4096):
                drawn += chunk
    assert sync.wait(timeout=120) == 0, drawn
    assert b"targets 2/2" in drawn and b"10/10" in drawn, drawn


def test_a_shard_syncs_the_targets_its_plan_gives_it_whatever_their_hash(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path
) -> None:
    keys = {region: target_key("emu", region) for region in (REGION, OTHER_REGION)}
    hashed = {region: 0 if in_shard(key, Shard(0, 2)) else 1 for region, key in keys.items()}
    plan = {keys[region]: 1 - index for region, index in hashed.items()}  # each the other way
    result = run_cli(
        "sync", "--data-dir", str(data_dir.root), "--config", str(sources_file),
        "--shard", "0/2", "--shard-plan", "--json", stdin=Handover(plan).to_json(),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    synced = {row[1] for row in _sync_runs(data_dir)}
    assert synced == {region for region, index in hashed.items() if index == 1}


def test_a_shard_refuses_a_malformed_handover_in_one_line(
    data_dir: DataDir, sources_file: Path
) -> None:
    result = run_cli(
        "sync", "--data-dir", str(data_dir.root), "--config", str(sources_file),
        "--shard", "0/2", "--shard-plan", stdin='{"a.r": 0}',
    )  # fmt: skip
    assert result.code == 2, result.stderr
    assert result.stderr.startswith("image-versions: error: --shard-plan: standard input")
    assert "Traceback" not in result.stderr


def _child_with(argument: str, deadline: float) -> int:
    """The pid of a running process whose command line holds `argument`."""
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                words = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argument.encode() in words:
                return int(entry.name)
        time.sleep(0.05)
    raise AssertionError(f"no process with {argument}")


def test_a_killed_shard_fails_the_run_and_options_are_never_shortened(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path
) -> None:
    server.emulator.faults.latency_s = 0.2
    parent = _cli_sync(data_dir, "--config", str(sources_file), "--processes", "2")
    os.kill(_child_with("1/2", time.monotonic() + 30), signal.SIGKILL)  # the OOM killer, say
    _, err = parent.communicate(timeout=120)
    assert parent.returncode == 1, err
    assert "FAILED shard 2 of 2 stopped with status -9" in err
    shortened = run_cli("sync", "--data-dir", str(data_dir.root), "--proc", "2")
    assert shortened.code == 2 and "unrecognized arguments: --proc" in shortened.stderr


def test_a_damaged_target_fails_alone(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path
) -> None:
    config = ("--config", str(sources_file))
    assert run_cli("sync", "--data-dir", str(data_dir.root), *config).code == 0
    damaged = Path(state_file(data_dir, account_key(DEFAULT_ACCOUNT_ID, REGION)))
    damaged.write_bytes(b"not parquet")
    server.emulator.faults.latency_s = 0.0
    result = run_cli("sync", "--data-dir", str(data_dir.root), *config)
    assert result.code == 1, result.stderr
    [failed] = [line for line in result.stderr.splitlines() if line.startswith("FAILED ")]
    assert "--full-refresh" in failed and f"emu/{REGION}" in failed
    rows = _sync_runs(data_dir)
    last = {row[1]: row[5] for row in rows}  # each region's last run
    assert last == {REGION: False, OTHER_REGION: True}  # the other went on


def test_every_process_of_the_first_sync_after_an_upgrade_succeeds(
    server: EmulatorServer, data_dir: DataDir, sources_file: Path
) -> None:
    config = ("--config", str(sources_file))
    assert run_cli("sync", "--data-dir", str(data_dir.root), *config).code == 0
    _write_legacy_state(data_dir)
    processes = [
        _cli_sync(data_dir, *config, "--region", region) for region in (REGION, OTHER_REGION)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    assert not Path(legacy_state_file(data_dir)).exists()
    assert len(state_files(data_dir)) == 2


def test_a_stop_signal_ends_a_wait_for_a_targets_lock(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """Signalled once it waits for the lock (an hour, were it not stopped): 143, not the
    wait's own end (exit 2)."""
    seed_catalogue(server.emulator, seed=3, images=3)
    run_sync(data_dir, server)
    endpoint = ("--endpoint-url", server.url, "--region", REGION)
    key = target_key("default", REGION)
    with data_dir.target_lock(key):
        waiting = _sync_telling_when_it_tries_the_lock(data_dir, key, *endpoint, "--wait", "3600")
        _told_it_tries(waiting)
        waiting.send_signal(signal.SIGTERM)
        _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 128 + signal.SIGTERM, err


def test_compact_removes_leftovers_of_killed_writes(data_dir: DataDir) -> None:
    data_dir.prepare()
    leftover = Path(data_dir.tmp_dir) / "0123abcd.tmp"
    leftover.write_bytes(b"half a partition")
    assert run_cli("compact", "--data-dir", str(data_dir.root)).code == 0
    assert not leftover.exists()


def test_a_sources_share_of_a_sync_sums_its_member_accounts_and_keeps_its_failures() -> None:
    """What a Dagster partition reports: one (source, region) of the sources file, whose
    targets are its member accounts for an organization source."""

    def target(source: str, region: str = REGION) -> SourceTarget:
        return SourceTarget(source, ClientSettings(region))

    run = SyncReport()
    for source, images in (("org/111111111111", 2), ("org/222222222222", 3), ("prod", 5)):
        one = SyncReport(targets=1, images=images, seconds=1.5, target=target(source))
        one.stats.count_call("ListImages")
        run.merge(one)
    denied = Failure("org/333333333333", OTHER_REGION, None, "AccessDenied")
    run.merge(SyncReport(failures=[denied], target=target(denied.source, OTHER_REGION)))
    run.failures.append(Failure("org", "eu-central-1", None, "its accounts cannot be listed"))

    org = run.of_source("org", REGION)
    assert (org.targets, org.images, org.seconds, org.stats.total_calls) == (2, 5, 3.0, 2)
    assert org.ok and run.of_source("prod", REGION).images == 5
    assert run.of_source("org", OTHER_REGION).failures == [denied]
    assert [str(f) for f in run.of_source("org", "eu-central-1").failures] == [
        "org/eu-central-1: its accounts cannot be listed"
    ]
    assert (run.targets, run.images, len(run.failures)) == (3, 10, 2)

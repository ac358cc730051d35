"""One owner per account and region: however many sources reach an account, whatever they are
called, however often they are renamed and wherever a sync is killed, each observed state is
stored once (invariant 14).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.emulator import DEFAULT_ACCOUNT_ID, Emulator, EmulatorServer, seed_catalogue
from pipeline.model import account_key, target_key
from pipeline.schema import STATE_SCHEMA
from pipeline.state import state_file, state_files
from pipeline.storage import DataDir
from tests.support import REGION, assert_converged, cli_killed_at, run_cli, stored_states

ACCOUNT = account_key(DEFAULT_ACCOUNT_ID, REGION)


def _sources(path: Path, server: EmulatorServer, names: list[str]) -> Path:
    path.write_text(
        "".join(
            f'[sources.{name}]\nendpoint_url = "{server.url}"\nregions = ["{REGION}"]\n'
            for name in names
        )
    )
    return path


def _raw_and_distinct(data_dir: DataDir) -> tuple[int, int]:
    """Stored rows, and the distinct observed states the history view shows."""
    glob = str(Path(data_dir.versions_dir) / "**" / "*.parquet")
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        distinct = connection.execute("SELECT count(*) FROM image_version_history").fetchone()
        raw = connection.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()
    assert raw is not None and distinct is not None
    return int(raw[0]), int(distinct[0])


def _change(emulator: Emulator, step: int) -> None:
    """A new version of one image and a status change of another, a second later."""
    emulator.clock.advance(1)
    names = emulator.image_names()
    emulator.create_image_version(names[step % len(names)])
    live = emulator.live_versions()
    some = live[(7 * step) % len(live)]
    emulator.update_image_version(some["ImageName"], some["Version"], status="CREATE_FAILED")


def _sync(data_dir: DataDir, config: Path, *args: str) -> str:
    result = run_cli("sync", "--data-dir", str(data_dir.root), "--config", str(config), *args)
    assert result.code == 0, result.stderr
    return result.stderr


def test_three_sources_of_one_account_store_each_state_once_over_many_syncs(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=41, images=8)
    config = _sources(tmp_path / "sources.toml", server, ["alpha", "beta", "gamma"])
    for step in range(7):
        stderr = _sync(data_dir, config)
        # Synced once per run, by the first to list it; the others say so in one line each.
        assert stderr.count(f"both reach account and region {ACCOUNT}") == 2, stderr
        raw, distinct = _raw_and_distinct(data_dir)
        assert raw == distinct, f"sync {step}: {raw} rows stored for {distinct} states"
        assert_converged(data_dir, server.emulator)
        _change(server.emulator, step)
    assert [Path(path).parent.name for path in state_files(data_dir)] == [ACCOUNT]
    assert run_cli("verify", "--data-dir", str(data_dir.root)).code == 0


def test_a_sources_file_added_after_syncing_without_one_carries_on_from_the_state(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=42, images=6)
    endpoint = ("--endpoint-url", server.url, "--region", REGION)
    first = run_cli("sync", "--data-dir", str(data_dir.root), *endpoint)  # source `default`
    assert first.code == 0, first.stderr
    stored = _raw_and_distinct(data_dir)
    watermarks = {key: state.watermark_ms for key, state in stored_states(data_dir).items()}
    before = len(server.emulator.requests())
    for name in ("prod", "renamed"):  # a sources file, then the source renamed
        _sync(data_dir, _sources(tmp_path / f"{name}.toml", server, [name]))
        assert _raw_and_distinct(data_dir) == stored  # nothing stored again
    requests = server.emulator.requests()[before:]
    calls = [params for op, params in requests if op == "ListImageVersions"]
    # No-change syncs: one call per image each, every one from its watermark.
    assert len(calls) == 2 * len(watermarks)
    listed_from_watermark = [params for params in calls if "LastModifiedTimeAfter" in params]
    assert len(listed_from_watermark) == 2 * sum(w is not None for w in watermarks.values())
    states = stored_states(data_dir)
    assert {key: state.watermark_ms for key, state in states.items()} == watermarks
    assert {state.source for state in states.values()} == {"renamed"}
    assert_converged(data_dir, server.emulator)


def test_overlapping_sources_in_two_processes_at_once_store_each_state_once(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=43, images=8)
    server.emulator.faults.latency_s = 0.02  # long enough for the two runs to overlap
    configs = [_sources(tmp_path / f"{n}.toml", server, [n]) for n in ("left", "right")]
    for step in range(3):
        if step:
            _change(server.emulator, step)
        processes = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "pipeline", "sync"),
                    *("--data-dir", str(data_dir.root), "--config", str(config), "--wait", "120"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            for config in configs
        ]
        outcomes = [process.communicate(timeout=240) for process in processes]
        assert [process.returncode for process in processes] == [0, 0], outcomes
        raw, distinct = _raw_and_distinct(data_dir)
        assert raw == distinct, f"round {step}: {raw} rows stored for {distinct} states"
    assert_converged(data_dir, server.emulator)


def _previous_release_layout(data_dir: DataDir, sources: list[str]) -> None:
    """What releases before one owner per account left when several sources reached one
    account: a state file per target, each source's copy of every stored row."""
    states = pq.read_table(state_file(data_dir, ACCOUNT), schema=STATE_SCHEMA)
    for source in sources:
        directory = Path(data_dir.target_dir(target_key(source, REGION)))
        directory.mkdir(parents=True, exist_ok=True)
        mine = states.set_column(
            states.schema.get_field_index("source"),
            "source",
            [[source] * states.num_rows],
        )
        pq.write_table(mine.cast(STATE_SCHEMA), directory / "images.parquet")
    shutil.rmtree(Path(data_dir.account_dir(ACCOUNT)))
    for path in Path(data_dir.versions_dir).rglob("*.parquet"):
        shutil.copy(path, path.with_name(f"copy-{path.name}"))  # the second source's copy


def test_a_data_dir_of_overlapping_sources_moves_to_one_owner_and_compacts_its_copies(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=44, images=6)
    config = _sources(tmp_path / "sources.toml", server, ["old", "older"])
    _sync(data_dir, config)
    expected_watermarks = {k: s.watermark_ms for k, s in stored_states(data_dir).items()}
    raw, distinct = _raw_and_distinct(data_dir)
    _previous_release_layout(data_dir, ["old", "older"])
    assert _raw_and_distinct(data_dir) == (2 * raw, distinct)

    verified = run_cli("verify", "--data-dir", str(data_dir.root))
    assert verified.code == 1
    assert "sources old and older both synced it" in verified.stdout, verified.stdout

    before = len(server.emulator.requests())
    _sync(data_dir, config)  # moves the state, then lists from the old watermarks
    calls = [op for op, _ in server.emulator.requests()[before:] if op == "ListImageVersions"]
    assert len(calls) == len(expected_watermarks)
    assert {k: s.watermark_ms for k, s in stored_states(data_dir).items()} == expected_watermarks
    assert [Path(path).parent.name for path in state_files(data_dir)] == [ACCOUNT]

    compacted = run_cli("compact", "--data-dir", str(data_dir.root))
    assert compacted.code == 0, compacted.stderr
    assert _raw_and_distinct(data_dir) == (raw, distinct)
    assert run_cli("verify", "--data-dir", str(data_dir.root)).code == 0
    assert_converged(data_dir, server.emulator)


def test_retiring_a_source_forgets_its_accounts_unless_another_source_reaches_them(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path
) -> None:
    seed_catalogue(server.emulator, seed=45, images=4)
    _sync(data_dir, _sources(tmp_path / "both.toml", server, ["keep", "leave"]))
    root = ("--data-dir", str(data_dir.root))
    retired = run_cli("retire", "leave", *root)
    assert retired.code == 0, retired.stderr
    assert state_files(data_dir), "`keep` still reaches the account: its state stays"

    unknown = run_cli("retire", "nosuch", *root)
    assert unknown.code == 2 and "no target of source 'nosuch'" in unknown.stderr

    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        live = connection.execute("SELECT count(*) FROM image_versions").fetchone()
    purged = run_cli("retire", "keep", *root, "--purge")
    assert purged.code == 0, purged.stderr
    assert f"{ACCOUNT}: state dropped, stored history deleted" in purged.stdout
    assert state_files(data_dir) == []
    with duckdb.connect(str(data_dir.warehouse_path), read_only=True) as connection:
        left = connection.execute("SELECT count(*) FROM image_versions").fetchone()
        state = connection.execute("SELECT count(*) FROM sync_state").fetchone()
    assert live is not None and live[0] > 0 and left == (0,) and state == (0,)


@pytest.mark.parametrize("instant", ["state", "journal"])
def test_a_sync_killed_between_its_data_and_its_state_stores_nothing_twice(
    server: EmulatorServer, data_dir: DataDir, tmp_path: Path, instant: str
) -> None:
    seed_catalogue(server.emulator, seed=46, images=6)
    config = _sources(tmp_path / "sources.toml", server, ["only"])
    _sync(data_dir, config)
    for step in range(3):
        _change(server.emulator, step)
    args = ("sync", "--data-dir", str(data_dir.root), "--config", str(config))
    killed = subprocess.run(
        [*cli_killed_at(instant), *args, "-v"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "data durable" in killed.stderr
    journal = Path(data_dir.for_account(ACCOUNT).commit_journal_path)
    verified = run_cli("verify", "--data-dir", str(data_dir.root))
    assert verified.code == 1 and "unfinished commit" in verified.stdout, verified.stdout

    stderr = _sync(data_dir, config)
    raw, distinct = _raw_and_distinct(data_dir)
    assert raw == distinct, f"{raw} rows stored for {distinct} states"
    rolled_back = "data file(s) of a commit that an interrupted sync never finished"
    assert (rolled_back in stderr) == (instant == "state"), stderr
    assert not journal.exists()
    assert_converged(data_dir, server.emulator)

"""Invariant 10: nothing outside the data dir is written or deleted, no link inside it is
followed; a broken layout or an unmergeable file stops a command with one line, exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.backends import LocalStore
from pipeline.emulator import DEFAULT_ACCOUNT_ID, EmulatorServer, seed_catalogue
from pipeline.errors import DataError
from pipeline.model import account_key, target_key
from pipeline.schema import IMAGE_VERSION_SCHEMA
from pipeline.storage import DataDir
from tests.support import FILE_PERMISSIONS_HOLD, REGION, CliResult, run_cli, run_sync


@pytest.fixture
def dataset(server: EmulatorServer, data_dir: DataDir) -> DataDir:
    """A synced data dir whose first month partition holds two files (compact has work)."""
    seed_catalogue(server.emulator, seed=41, images=4)
    run_sync(data_dir, server)
    first = Path(data_dir.version_files()[0])
    table = pq.read_table(first, schema=IMAGE_VERSION_SCHEMA)
    later = pc.add(table.column("observed_at"), pa.scalar(timedelta(milliseconds=1)))
    # Observed again a moment later: a second file, but no copy (verify would report one).
    index = table.schema.get_field_index("observed_at")
    pq.write_table(
        table.set_column(index, "observed_at", later).cast(IMAGE_VERSION_SCHEMA),
        first.with_name("part-again.parquet"),
    )
    return data_dir


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file at or under `path` (not following links): relative name -> bytes. Lock files
    are left out: taking a lock may create one, and that changes no data."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {
        os.path.relpath(os.path.join(folder, name), path): Path(folder, name).read_bytes()
        for folder, _, names in os.walk(path)
        for name in names
        if not name.endswith(".lock")
    }


def commands(server: EmulatorServer, root: Path) -> dict[str, list[str]]:
    data = ["--data-dir", str(root)]
    return {
        "sync": ["sync", *data, "--endpoint-url", server.url, "--region", REGION],
        "compact": ["compact", *data],
        "verify": ["verify", *data],
        "verify --repair": ["verify", "--repair", *data],
        "query": ["query", "SELECT count(*) FROM image_versions", *data],
        "status": ["status", *data],
    }


def assert_one_line_error(result: CliResult, *fragments: str) -> str:
    assert result.code == 2, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def link_target(data_dir: DataDir, where: str) -> Path:
    """The entry of the data dir a case replaces with a link, found by its first part."""
    root = Path(data_dir.root)
    if where == "image_versions/account_region":
        return next((root / "image_versions").iterdir())
    if where == "image_versions/month":
        return Path(data_dir.version_files()[0]).parent
    if where == "image_versions/one file":
        return Path(data_dir.version_files()[0])
    if where == "images/account_region":
        return next((root / "images").iterdir())
    return root / where


TARGET_DIR = f"_state/targets/{target_key('default', REGION)}"
ACCOUNT_DIR = f"_state/accounts/{account_key(DEFAULT_ACCOUNT_ID, REGION)}"
LINKED = [
    "_tmp",
    "_state",
    TARGET_DIR,
    ACCOUNT_DIR,
    f"{ACCOUNT_DIR}/images.parquet",
    f"{ACCOUNT_DIR}/.lock",
    "image_versions",
    "image_versions/account_region",
    "image_versions/month",
    "image_versions/one file",
    "images/account_region",
    "warehouse.duckdb",
    f"{TARGET_DIR}/.lock",
]


@pytest.mark.parametrize("where", LINKED)
def test_a_symlink_anywhere_in_the_data_dir_is_refused_by_every_command(
    server: EmulatorServer, dataset: DataDir, tmp_path: Path, where: str
) -> None:
    entry = link_target(dataset, where)
    a_parquet_file = Path(dataset.version_files()[0]).read_bytes()
    outside = tmp_path / "outside" / entry.name
    outside.parent.mkdir()
    shutil.move(entry, outside)
    if outside.is_dir():
        # Leftover-looking and Parquet sentinels: what clean_tmp and compact would delete.
        (outside / "sentinel.tmp").write_bytes(b"must survive")
        (outside / "sentinel.parquet").write_bytes(a_parquet_file)
    elif not outside.stat().st_size:
        outside.write_bytes(b"must survive")  # the lock file: opening it could truncate it
    entry.symlink_to(outside, target_is_directory=outside.is_dir())
    before = snapshot(outside)
    relative = str(entry.relative_to(dataset.root))

    for name, args in commands(server, Path(dataset.root)).items():
        result = run_cli(*args)
        assert_one_line_error(result, relative, "symbolic link", "remove")
        assert snapshot(outside) == before, f"{name} changed what {relative} points at"
        assert entry.is_symlink(), f"{name} replaced the link"
    assert not (Path(dataset.root) / "_quarantine").exists()


def test_the_data_dir_itself_may_be_a_symlink(
    server: EmulatorServer, dataset: DataDir, tmp_path: Path
) -> None:
    linked = tmp_path / "linked-data"
    linked.symlink_to(dataset.root, target_is_directory=True)
    for name, args in commands(server, linked).items():
        result = run_cli(*args)
        assert result.code == 0, (name, result.stdout, result.stderr)


def test_local_listing_never_descends_into_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "month=2026-01").mkdir(parents=True)
    (outside / "month=2026-01" / "a.parquet").write_bytes(b"x")
    (outside / "b.parquet").write_bytes(b"x")
    base = tmp_path / "data" / "image_versions"
    real = base / "account_region=1.r" / "month=2026-02"
    real.mkdir(parents=True)
    (real / "c.parquet").write_bytes(b"x")
    (base / "account_region=1.r" / "month=2026-01").symlink_to(outside / "month=2026-01")
    (real / "b.parquet").symlink_to(outside / "b.parquet")
    (base / "account_region=2.r").symlink_to(outside)
    store = LocalStore()

    assert store.files(base) == [real / "c.parquet"]
    assert store.glob(base, "*/*/*.parquet") == [real / "c.parquet"]
    assert store.files(base / "account_region=2.r") == []
    assert store.first_symlink(tmp_path / "data") == Path(
        "image_versions/account_region=1.r/month=2026-01"
    )


@pytest.mark.parametrize("broken", ["_state is a file", "the state file is a directory"])
def test_verify_reports_a_broken_state_and_repair_quarantines_it(
    server: EmulatorServer, dataset: DataDir, broken: str
) -> None:
    root, state = Path(dataset.root), Path(dataset.state_dir)
    if broken == "_state is a file":
        shutil.rmtree(state)
        state.write_bytes(b"not a directory")
        moved, kind = state, "misplaced file"
    else:
        state_file = root / ACCOUNT_DIR / "images.parquet"
        state_file.unlink()
        state_file.mkdir()
        (state_file / "inside").write_bytes(b"kept")
        moved, kind = state_file, "misplaced directory"
    before = snapshot(moved)
    data = ["--data-dir", str(root)]

    found = run_cli("verify", *data)
    assert found.code == 1, (found.stdout, found.stderr)
    assert f"PROBLEM {kind}: {moved}" in found.stdout and "1 problem(s)" in found.stdout

    repaired = run_cli("verify", "--repair", *data)
    assert repaired.code == 1 and "REPAIR moved" in repaired.stdout, repaired.stdout
    quarantined = list((root / "_quarantine").glob(f"*/{moved.relative_to(root)}"))
    assert len(quarantined) == 1 and snapshot(quarantined[0]) == before
    assert not moved.exists()

    assert run_cli("verify", *data).code == 0
    resync = run_cli(*commands(server, root)["sync"], "--full-refresh")
    assert resync.code == 0, resync.stderr
    assert run_cli("verify", *data).code == 0


@pytest.mark.parametrize("blocked", ["_tmp", "_state", "image_versions", f"{TARGET_DIR}/.lock"])
def test_an_unwritable_data_dir_stops_sync_and_compact_with_one_line(
    server: EmulatorServer, dataset: DataDir, blocked: str
) -> None:
    """Each fails for root too: a file where a directory belongs, a directory as the lock."""
    path = Path(dataset.root) / blocked
    if path.is_dir():
        shutil.rmtree(path)
        path.write_bytes(b"in the way")
    else:
        path.unlink()
        path.mkdir()
    before = snapshot(Path(dataset.root))
    all_commands = commands(server, Path(dataset.root))
    for name in ("sync", "compact"):
        line = assert_one_line_error(run_cli(*all_commands[name]), blocked)
        assert "writ" in line or "verify --repair" in line, line
        assert snapshot(Path(dataset.root)) == before, f"{name} changed the data dir"


def foreign_parquet(path: Path) -> None:
    pq.write_table(pa.table({"something": ["else"]}), path)


def truncated_parquet(path: Path) -> None:
    path.write_bytes(path.with_name("part-again.parquet").read_bytes()[:300])


@pytest.mark.parametrize("damage", [truncated_parquet, foreign_parquet])
def test_compaction_refuses_an_unreadable_file_and_deletes_nothing(
    dataset: DataDir, damage: Callable[[Path], None]
) -> None:
    partition = Path(dataset.version_files()[0]).parent
    bad = partition / "part-bad.parquet"
    damage(bad)
    before = snapshot(Path(dataset.root))
    relative = str(bad.relative_to(dataset.root))

    result = run_cli("compact", "--data-dir", str(dataset.root))
    assert_one_line_error(result, relative, "verify --repair")
    assert snapshot(Path(dataset.root)) == before
    with pytest.raises(DataError, match=r"part-bad\.parquet"):
        dataset.compact()
    assert snapshot(Path(dataset.root)) == before

    assert run_cli("verify", "--repair", "--data-dir", str(dataset.root)).code == 1
    assert not bad.exists()
    compacted = run_cli("compact", "--data-dir", str(dataset.root))
    assert compacted.code == 0, compacted.stderr
    assert len(list(partition.iterdir())) == 1


def not_readable_by_its_owner(path: Path) -> tuple[str, ...]:
    """What a sudo run with umask 077 leaves; the prefix under which that stops the reader."""
    path.chmod(0)
    return FILE_PERMISSIONS_HOLD


def not_parquet(path: Path) -> tuple[str, ...]:
    path.write_bytes(b"PAR1" + bytes(200))  # a Parquet header, then no footer
    return ()


def reads_as_parquet(path: Path, prefix: tuple[str, ...]) -> bool:
    probe = "import sys, pyarrow.parquet as pq; pq.read_metadata(sys.argv[1])"
    return subprocess.run([*prefix, sys.executable, "-c", probe, str(path)]).returncode == 0


@pytest.mark.parametrize("damage", [not_readable_by_its_owner, not_parquet])
def test_an_unreadable_parquet_file_stops_every_command_with_one_line_naming_it(
    server: EmulatorServer, data_dir: DataDir, damage: Callable[[Path], tuple[str, ...]]
) -> None:
    """The views must be rebuilt (no warehouse file) and the file they bind to is the one
    that cannot be read: no command shows DuckDB's traceback; verify finds it, repair
    moves it aside, and every command works again."""
    seed_catalogue(server.emulator, seed=41, images=4)
    run_sync(data_dir, server)
    root = Path(data_dir.root)
    bad = Path(min(data_dir.version_files()))  # the file whose schema the views bind to
    data_dir.warehouse_path.unlink()
    prefix = damage(bad)
    assert not reads_as_parquet(bad, prefix)  # the fault is real for the commands below
    relative = str(bad.relative_to(root))
    every = commands(server, root)

    for name in ("sync", "compact", "query", "status"):
        line = assert_one_line_error(run_cli(*every[name], prefix=prefix), relative)
        assert f"in {root} cannot be read" in line and "verify --repair" in line, (name, line)
        assert ("permission denied" in line) == (damage is not_readable_by_its_owner), line
    found = run_cli(*every["verify"], prefix=prefix)
    assert found.code == 1 and f"PROBLEM unreadable file: {bad}" in found.stdout, found

    repaired = run_cli(*every["verify --repair"], prefix=prefix)
    assert repaired.code == 1 and f"REPAIR moved {relative}" in repaired.stdout, repaired
    assert not bad.exists() and list((root / "_quarantine").glob(f"*/{relative}"))
    for name in ("sync", "compact", "query", "status", "verify"):
        result = run_cli(*every[name], prefix=prefix)
        assert result.code == 0, (name, result.stdout, result.stderr)

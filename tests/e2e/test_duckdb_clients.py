"""The warehouse file in the oldest DuckDB client we promise: DuckDB 1.1 opens it read-only and
answers every view and the as-of macro exactly as `image-versions query` does.

The client is the real duckdb 1.1.3 wheel (with pytz, which its TIMESTAMPTZ results need),
installed once into a git-ignored cache at the repository root and run in a child interpreter
that cannot import the project's own duckdb.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pipeline.emulator import EmulatorServer
from pipeline.storage import DataDir
from pipeline.warehouse import (
    AS_OF_MACRO,
    VIEW_NAMES,
    refresh_views,
    run_query,
    warehouse_statements,
)
from tests.support import run_sync

OLDEST_CLIENT = "1.1.3"
CLIENT_PACKAGES = (f"duckdb=={OLDEST_CLIENT}", "pytz==2024.2")
CLIENT_CACHE = Path(__file__).resolve().parents[2] / ".cache" / f"duckdb-{OLDEST_CLIENT}"
# Run as `python -I -S`: no site-packages (so not the project's duckdb), no PYTHONPATH, no cwd.
CLIENT_SCRIPT = """
import datetime, pickle, sys
sys.path.insert(0, sys.argv[1])
import duckdb

def plain(value):
    # pytz's UTC to the standard library's, so that the parent can unpickle without pytz.
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc)
    return value

with duckdb.connect(sys.argv[2], read_only=True) as connection:
    answers = [
        [tuple(plain(value) for value in row) for row in connection.execute(sql).fetchall()]
        for sql in sys.argv[3:]
    ]
pickle.dump((duckdb.__version__, duckdb.__file__, answers), sys.stdout.buffer)
"""


def _install_client() -> Path:
    """The directory holding the old client, installed on first use; concurrent test runs each
    install aside and the first rename wins."""
    if (CLIENT_CACHE / "duckdb" / "__init__.py").exists():
        return CLIENT_CACHE
    aside = CLIENT_CACHE.with_name(f"{CLIENT_CACHE.name}.{uuid.uuid4().hex}.tmp")
    # The interpreter the venv was made from: uv makes venvs without pip, and the quick start
    # asks for a Python with pip.
    python = getattr(sys, "_base_executable", sys.executable)
    pip = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(aside)]
    subprocess.run(
        [*pip, *CLIENT_PACKAGES],
        check=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    try:
        aside.rename(CLIENT_CACHE)
    except OSError:  # another run finished first: its copy is as good
        shutil.rmtree(aside)
    return CLIENT_CACHE


@pytest.fixture(scope="session")
def oldest_client() -> Path:
    return _install_client()


def in_oldest_client(
    client: Path, warehouse: Path, sqls: list[str]
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", CLIENT_SCRIPT, str(client), str(warehouse), *sqls],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
    )


def write_as_an_earlier_release(data_dir: DataDir) -> None:
    """Rewrite the warehouse as the releases before this one left it: the same objects, in the
    pinned DuckDB's own storage format, under another signature."""
    data_dir.warehouse_path.unlink()
    with duckdb.connect(str(data_dir.warehouse_path)) as connection:
        for target, sql in warehouse_statements(data_dir):
            connection.execute(sql)
            connection.execute(f"COMMENT ON {target} IS 'image-versions:an-earlier-release'")


def build_small_history(server: EmulatorServer, data_dir: DataDir) -> datetime:
    """Two enriched syncs that leave a row in every view: statuses moving, failure reasons,
    details with aliases, a deleted version and a deleted image, roles and tags (map columns)
    from the second. Returns an instant between the syncs."""
    emulator = server.emulator
    emulator.create_image(
        "alpha", display_name="Alpha", description="the first", tags={"team": "ml"}
    )
    details = {
        "JobType": "TRAINING",
        "Processor": "GPU",
        "Horovod": True,
        "MLFramework": "PyTorch 2.3",
    }
    emulator.create_image_version("alpha", status="CREATING", details=details, aliases=["v1"])
    emulator.create_image_version("alpha")
    emulator.create_image_version("alpha", status="CREATE_FAILED", failure_reason="no space")
    emulator.create_image("beta")
    emulator.create_image_version("beta")
    assert run_sync(data_dir, server, enrich=True).ok
    between = datetime.now(UTC)
    emulator.clock.advance(90.5)
    emulator.update_image_version("alpha", 1, status="CREATED", aliases_to_add=["latest"])
    emulator.delete_image_version("alpha", 2)
    emulator.delete_image("beta")
    version_arn = emulator.live_versions()[0]["ImageVersionArn"]
    emulator.tag_resource(version_arn, {"team": "vision", "stage": "prod"})
    assert run_sync(data_dir, server, reconcile=True, tags=True).ok
    return between


def test_duckdb_1_1_reads_every_view_as_query_does(
    server: EmulatorServer, data_dir: DataDir, oldest_client: Path
) -> None:
    between = build_small_history(server, data_dir)
    sqls = [f"SELECT * FROM {name} ORDER BY ALL" for name in VIEW_NAMES] + [
        f"SELECT * FROM {AS_OF_MACRO}(TIMESTAMPTZ '{between.isoformat()}') ORDER BY ALL"
    ]
    expected = [run_query(data_dir, sql).rows for sql in sqls]
    assert all(expected), "every view and the macro have rows to compare"
    changes = expected[VIEW_NAMES.index("image_version_changes")]
    assert any("DELETED" in row for row in changes), "tombstones too"
    for view in ("images", "image_version_details"):
        rows = expected[VIEW_NAMES.index(view)]
        assert any(
            {"team": "ml"} in row or {"team": "vision", "stage": "prod"} in row for row in rows
        )

    write_as_an_earlier_release(data_dir)
    refused = in_oldest_client(oldest_client, data_dir.warehouse_path, sqls[:1])
    assert refused.returncode != 0
    assert b"version number" in refused.stderr  # the format DuckDB 1.x cannot read

    assert refresh_views(data_dir) is True  # what any sync, compact or verify --repair does
    answered = in_oldest_client(oldest_client, data_dir.warehouse_path, sqls)

    assert answered.returncode == 0, answered.stderr.decode()
    version, module, answers = pickle.loads(answered.stdout)
    assert (version, Path(module).parent.parent) == (OLDEST_CLIENT, oldest_client)
    for sql, want, got in zip(sqls, expected, answers, strict=True):
        assert got == want, sql


def test_the_oldest_client_is_installed_where_git_ignores_it(oldest_client: Path) -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", str(oldest_client)],
        cwd=oldest_client.parent.parent,
        timeout=10,
        stdin=subprocess.DEVNULL,
    )
    assert ignored.returncode == 0

"""The bounds on calls and the redaction of secrets, in process: what the hostile fault-matrix
rows show end to end, checked here at the unit that promises it."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.config import AccessSettings, ProjectConfig, SourceConfig, build_targets
from pipeline.emulator import EmulatorServer, seed_catalogue
from pipeline.errors import ConfigError, DataError
from pipeline.extract import sync
from pipeline.redact import RedactingFilter
from pipeline.run import SyncOptions
from pipeline.schema import MalformedRecord, details_row
from pipeline.storage import DataDir
from tests.support import OTHER_REGION, REGION, run_sync

SENDERS = "image-versions-http"


def live_senders() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == SENDERS}


def test_sender_threads_end_with_their_target(server: EmulatorServer, data_dir: DataDir) -> None:
    before = live_senders()
    for region in (REGION, OTHER_REGION):
        seed_catalogue(server.emulator, seed=3, images=12, region=region)
        report = run_sync(data_dir, server, region=region, concurrency=8)
        assert report.ok
    for thread in live_senders() - before:
        thread.join(timeout=300)  # they end on their own once their target is done
    assert live_senders() <= before


def test_waiting_for_the_rate_limit_does_not_spend_the_call_deadline(
    server: EmulatorServer, data_dir: DataDir
) -> None:
    """12 calls at 4 requests/s take 3 s; each call's network time stays far below 1 s."""
    seed_catalogue(server.emulator, seed=4, images=11)
    source = SourceConfig("default", (REGION,), endpoint_url=server.url)
    access = AccessSettings(max_rps=4, call_deadline_s=1.0, concurrency=8)
    targets = build_targets(ProjectConfig(sources=(source,)), access)
    started = time.monotonic()
    report = sync(data_dir, targets, SyncOptions(concurrency=8))
    assert time.monotonic() - started > 2  # the limit really held the calls back
    assert report.ok, [str(failure) for failure in report.failures]


def test_details_of_the_wrong_json_type_are_rejected_not_coerced() -> None:
    listed = {"account_id": "123456789012", "region": REGION, "image_name": "a", "version": 1}
    described = {"LastModifiedTime": datetime(2026, 1, 1, tzinfo=UTC)}
    for bad, aliases in (
        ({"Horovod": "false"}, []),
        ({"BaseImage": {"a": 1}}, []),
        ({}, [7]),
    ):
        with pytest.raises(MalformedRecord):
            details_row(listed, {**described, **bad}, aliases, observed_at_ms=0)


def test_a_planted_compaction_journal_cannot_delete_outside(tmp_path: Path) -> None:
    data_dir = DataDir(tmp_path / "data")
    data_dir.prepare()
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(b"mine")
    for journal in (
        {"new": ".image-versions", "old": [str(victim)]},
        {"new": "image_versions/x.parquet", "old": ["image_versions/../../victim.parquet"]},
        {"old": []},
        ["not", "a", "journal"],
    ):
        Path(data_dir.journal_path).write_text(json.dumps(journal))
        with pytest.raises(DataError, match="outside"):
            data_dir.recover_compaction()
    assert victim.read_bytes() == b"mine"


def test_a_password_in_a_url_never_leaves_an_error_or_a_log_line() -> None:
    assert "s3cret" not in str(ConfigError("cannot reach http://user:s3cret@host:1/"))
    try:
        raise OSError('Could not connect to "http://user:s3cret@127.0.0.1:9/"')
    except OSError:
        record = logging.LogRecord(
            "pipeline.x", logging.ERROR, __file__, 1, "failed %s", ("http://u:s3cret@h",), None
        )
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert "s3cret" not in formatted and "***@" in formatted

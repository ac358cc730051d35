"""The data dir (`pipeline.storage`): what it refuses to touch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import DataError
from pipeline.storage import DataDir


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

"""Files from before a release added columns: read as nulls there, anything else refused."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.evolution import added_columns, earlier_form, read_file
from pipeline.schema import (
    IMAGE_SCHEMA,
    IMAGE_VERSION_DETAILS_SCHEMA,
    IMAGE_VERSION_SCHEMA,
    MalformedRecord,
    tags_of,
)


def image_row(**extra: object) -> dict[str, object]:
    return {
        "account_id": "123456789012",
        "region": "us-east-1",
        "image_name": "a",
        "image_arn": "arn:aws:sagemaker:us-east-1:123456789012:image/a",
        "display_name": None,
        "description": None,
        "status": "CREATED",
        "failure_reason": None,
        "creation_time": 0,
        "last_modified_time": 0,
        "observed_at": 0,
        **extra,
    }


def test_only_the_tables_that_gained_columns_have_an_earlier_form() -> None:
    assert added_columns(IMAGE_SCHEMA) == ("role_arn", "tags")
    assert added_columns(IMAGE_VERSION_DETAILS_SCHEMA) == ("tags",)
    assert earlier_form(IMAGE_VERSION_SCHEMA) is None
    earlier = earlier_form(IMAGE_SCHEMA)
    assert earlier is not None and earlier.names == IMAGE_SCHEMA.names[:-2]


def test_an_earlier_file_reads_with_nulls_in_the_added_columns(tmp_path: Path) -> None:
    earlier = earlier_form(IMAGE_SCHEMA)
    assert earlier is not None
    pq.write_table(pa.Table.from_pylist([image_row()], schema=earlier), tmp_path / "old.parquet")
    table = read_file(pq.ParquetFile(tmp_path / "old.parquet"), IMAGE_SCHEMA)
    assert table is not None and table.schema.equals(IMAGE_SCHEMA)
    assert table.to_pylist()[0]["tags"] is None and table.to_pylist()[0]["role_arn"] is None
    some = read_file(pq.ParquetFile(tmp_path / "old.parquet"), IMAGE_SCHEMA, ["tags", "image_name"])
    assert some is not None and some.column_names == ["tags", "image_name"]


def test_a_file_missing_other_columns_is_refused(tmp_path: Path) -> None:
    partial = pa.schema([f for f in IMAGE_SCHEMA if f.name not in ("tags", "description")])
    pq.write_table(pa.Table.from_pylist([image_row()], schema=partial), tmp_path / "bad.parquet")
    assert read_file(pq.ParquetFile(tmp_path / "bad.parquet"), IMAGE_SCHEMA) is None


def test_tags_become_sorted_pairs_and_malformed_ones_fail_the_record() -> None:
    pairs = tags_of([{"Key": "team", "Value": "nlp"}, {"Key": "owner", "Value": ""}])
    assert pairs == [("owner", ""), ("team", "nlp")]
    for bad in (None, [{"Key": "team"}], [{"Key": 1, "Value": "x"}], ["team"]):
        with pytest.raises(MalformedRecord):
            tags_of(bad)

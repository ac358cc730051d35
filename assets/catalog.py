"""What Dagster's catalog shows of the datasets: kinds, column schemas with descriptions (from
pipeline/columns.py), where each dataset lives (`dagster/uri`) and the DuckDB view that
exposes it (`dagster/table_name`)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import dagster as dg

from pipeline.columns import IMAGE_COLUMNS, IMAGE_VERSION_COLUMNS, Column
from pipeline.storage import DataDir

__all__ = ["IMAGES", "VERSIONS", "WAREHOUSE", "Dataset", "column_schema"]

DUCKDB_SCHEMA = "main"


def column_schema(columns: Sequence[Column]) -> dg.TableSchema:
    """Dagster's column schema: each column's type, nullability and description."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=column.type,
                description=column.description,
                constraints=dg.TableColumnConstraints(nullable=column.nullable),
            )
            for column in columns
        ]
    )


@dataclass(frozen=True)
class Dataset:
    """One asset's data: its storage kind, where it lives in a data dir, the view that
    exposes it, its columns."""

    storage: str
    path: Callable[[DataDir], PurePath]
    view: str
    columns: tuple[Column, ...]

    def kinds(self, data_dir: DataDir) -> set[str]:
        return {"python", self.storage} | (set() if data_dir.is_local else {"s3"})

    def location(self, data_dir: DataDir) -> dict[str, str]:
        """`dagster/uri` and `dagster/table_name` (catalog.schema.view of the warehouse)."""
        path = self.path(data_dir)
        local = data_dir.is_local or self.storage == "duckdb"
        return {
            "dagster/uri": str(Path(path).resolve()) if local else data_dir.store.uri(path),
            "dagster/table_name": f"{data_dir.warehouse_path.stem}.{DUCKDB_SCHEMA}.{self.view}",
        }

    def definition_metadata(self, data_dir: DataDir) -> dict[str, object]:
        return {"dagster/column_schema": column_schema(self.columns), **self.location(data_dir)}


IMAGES = Dataset("parquet", lambda data_dir: data_dir.images_dir, "images", IMAGE_COLUMNS)
VERSIONS = Dataset(
    "parquet",
    lambda data_dir: data_dir.versions_dir,
    "image_version_history",
    IMAGE_VERSION_COLUMNS,
)
"""Every observed state, as `image_version_history` shows them (each distinct state once)."""
WAREHOUSE = Dataset(
    "duckdb", lambda data_dir: data_dir.warehouse_path, "image_versions", IMAGE_VERSION_COLUMNS
)
"""The warehouse's headline view: one row per live version."""

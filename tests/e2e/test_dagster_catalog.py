"""What Dagster's catalog shows, built from the definitions alone (no run): kinds, column
schemas whose descriptions are README's column tables, paths and table names, code references,
the freshness policy, the checks and how they block, the backfill policy, the executor."""

from __future__ import annotations

import ast
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from assets.code_references import ROOT, GitSource, git_source, web_url
from assets.definitions import PARTITIONS_PER_RUN_ENV, build_definitions, partitions_per_run
from assets.resources import DataDirResource, SageMakerResource
from assets.schedules import JOB_NAME
from pipeline.columns import (
    IMAGE_COLUMNS,
    IMAGE_VERSION_COLUMNS,
    IMAGE_VERSION_DETAILS_COLUMNS,
    Column,
)
from pipeline.config import ProjectConfig, SourceConfig
from pipeline.errors import ConfigError

pytestmark = pytest.mark.dagster

ASSETS = ("sagemaker_images", "image_versions", "image_versions_warehouse")
README_COLUMN_TABLES = {
    "image_versions": IMAGE_VERSION_COLUMNS,
    "image_version_details": IMAGE_VERSION_DETAILS_COLUMNS,
    "images": IMAGE_COLUMNS,
}
"""The dataset each README heading "Columns of `NAME/`" documents."""
_COLUMNS_HEADING = re.compile(r"^#+ Columns of `([a-z_]+)/`", re.MULTILINE)


def built(
    data_path: str,
    *,
    sync_cron: str = "0 * * * *",
    git: GitSource | None = None,
    max_partitions_per_run: int | None = None,
) -> dg.Definitions:
    config = ProjectConfig(
        sources=(SourceConfig("prod", ("us-east-1", "eu-west-1")),), sync_cron=sync_cron
    )
    return build_definitions(
        config,
        SageMakerResource(),
        DataDirResource(path=data_path),
        max_partitions_per_run=max_partitions_per_run,
        git=git,
    )


def specs(definitions: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {
        spec.key.to_user_string(): spec
        for assets in definitions.assets or ()
        if isinstance(assets, dg.AssetsDefinition)
        for spec in assets.specs
    }


def readme_column_tables() -> dict[str, list[tuple[str, str, str]]]:
    """Each "Columns of `NAME/`" section of README: its table's (column, type, meaning) rows."""
    text = (ROOT / "README.md").read_text()
    tables = {}
    for match in _COLUMNS_HEADING.finditer(text):
        section = text[match.end() :].split("\n#", 1)[0]
        lines = [line for line in section.splitlines() if line.startswith("|")]
        assert lines[:2] == ["| column | type | meaning |", "|---|---|---|"], match[1]
        tables[match[1]] = [
            tuple(cell.strip() for cell in line.strip("|").split(" | "))  # type: ignore[misc]
            for line in lines[2:]
        ]
    return tables


def markdown_rows(columns: tuple[Column, ...]) -> list[tuple[str, str, str]]:
    return [(c.name, c.type_and_nullability, c.description) for c in columns]


def test_readme_column_tables_are_the_column_descriptions() -> None:
    tables = readme_column_tables()
    assert "image_versions" in tables
    for dataset, rows in tables.items():
        assert dataset in README_COLUMN_TABLES, f"README documents {dataset}/: describe it"
        expected = markdown_rows(README_COLUMN_TABLES[dataset])
        assert rows == expected, "README's table should read:\n" + "\n".join(
            f"| {' | '.join(row)} |" for row in expected
        )


def test_every_asset_has_kinds_columns_and_where_it_lives(tmp_path: Path) -> None:
    found = specs(built(str(tmp_path / "data")))
    assert set(found) == set(ASSETS)
    assert found["sagemaker_images"].kinds == {"python", "parquet"}
    assert found["image_versions"].kinds == {"python", "parquet"}
    assert found["image_versions_warehouse"].kinds == {"python", "duckdb"}
    columns = {
        name: {c.name: c.description for c in spec.metadata["dagster/column_schema"].columns}
        for name, spec in found.items()
    }
    assert columns["image_versions"] == {c.name: c.description for c in IMAGE_VERSION_COLUMNS}
    assert columns["sagemaker_images"] == {c.name: c.description for c in IMAGE_COLUMNS}
    assert all(all(described.values()) for described in columns.values())
    where = {
        name: (spec.metadata["dagster/uri"], spec.metadata["dagster/table_name"])
        for name, spec in found.items()
    }
    root = (tmp_path / "data").resolve()
    assert where == {
        "sagemaker_images": (str(root / "images"), "warehouse.main.images"),
        "image_versions": (str(root / "image_versions"), "warehouse.main.image_version_history"),
        "image_versions_warehouse": (
            str(root / "warehouse.duckdb"),
            "warehouse.main.image_versions",
        ),
    }


def test_an_s3_data_dir_adds_the_s3_kind_and_s3_uris() -> None:
    found = specs(built("s3://bucket/prefix"))
    assert all("s3" in spec.kinds for spec in found.values())
    assert found["image_versions"].metadata["dagster/uri"] == "s3://bucket/prefix/image_versions"


def code_references(definitions: dg.Definitions) -> dict[str, list[object]]:
    return {
        name: spec.metadata["dagster/code_references"].code_references
        for name, spec in specs(definitions).items()
    }


def test_code_references_point_at_the_asset_functions(tmp_path: Path) -> None:
    functions = {}
    for name, (reference,) in code_references(built(str(tmp_path))).items():
        assert isinstance(reference, dg.LocalFileCodeReference), name
        path = Path(reference.file_path)
        assert path.parent == ROOT / "assets"
        lines = path.read_text().splitlines()[reference.line_number - 1 :]
        assert lines[0].lstrip().startswith("@"), (name, lines[0])  # the decorated function
        functions[name] = next(line for line in lines if line.lstrip().startswith("def "))
    assert {name: line.split("(")[0].split()[-1] for name, line in functions.items()} == {
        "sagemaker_images": "sync_sagemaker_sources",
        "image_versions": "sync_sagemaker_sources",
        "image_versions_warehouse": "image_versions_warehouse",
    }


def test_code_references_link_to_the_hosted_repository(tmp_path: Path) -> None:
    source = GitSource("https://github.com/org/image-versions", "0123abc")
    for name, (reference,) in code_references(built(str(tmp_path), git=source)).items():
        assert isinstance(reference, dg.UrlCodeReference), name
        assert re.fullmatch(
            r"https://github\.com/org/image-versions/tree/0123abc/assets/\w+\.py#L\d+",
            reference.url,
        ), reference.url


@pytest.mark.parametrize(
    ("remote", "page"),
    [
        ("git@github.com:org/repo.git", "https://github.com/org/repo"),
        ("https://user:secret@github.com/org/repo.git", "https://github.com/org/repo"),
        (
            "ssh://git@gitlab.example.com/group/sub/repo.git",
            "https://gitlab.example.com/group/sub/repo",
        ),
        ("https://git.example.com/org/repo.git", None),
        ("/srv/git/repo.git", None),
    ],
)
def test_remote_urls_become_web_pages_without_credentials(remote: str, page: str | None) -> None:
    assert web_url(remote) == page


def test_the_git_source_comes_from_origin_and_is_none_without_it(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    git("commit", "-q", "--allow-empty", "-m", "first")
    assert git_source(tmp_path) is None  # a checkout without a remote
    git("remote", "add", "origin", "git@github.com:org/repo.git")
    assert git_source(tmp_path) == GitSource(
        "https://github.com/org/repo", git("rev-parse", "HEAD")
    )
    assert git_source(tmp_path / "not-a-checkout") is None


@pytest.mark.parametrize(
    ("cron", "fail_after"),
    [
        ("0 * * * *", timedelta(hours=2)),
        ("*/15 * * * *", timedelta(minutes=30)),
        ("0 9 * * 1-5", timedelta(days=6)),
    ],
)
def test_image_versions_is_stale_after_two_sync_intervals(
    tmp_path: Path, cron: str, fail_after: timedelta
) -> None:
    found = specs(built(str(tmp_path), sync_cron=cron))
    expected = dg.FreshnessPolicy.time_window(fail_window=fail_after)
    assert found["image_versions"].freshness_policy == expected
    assert found["sagemaker_images"].freshness_policy is None


def test_the_checks_describe_image_versions_and_bad_data_blocks_the_warehouse(
    tmp_path: Path,
) -> None:
    definitions = built(str(tmp_path))
    checks = {
        spec.name: spec
        for checks_def in definitions.asset_checks or ()
        for spec in checks_def.check_specs
    }
    assert {name: spec.asset_key.to_user_string() for name, spec in checks.items()} == {
        "no_duplicate_live_versions": "image_versions",
        "values_match_the_api_model": "image_versions",
        "watermarks_never_decrease": "image_versions",
        "sources_are_fresh": "image_versions",
        "failed_builds_since_last_run": "image_versions",
    }
    assert {name for name, spec in checks.items() if spec.blocking} == {
        "no_duplicate_live_versions",
        "values_match_the_api_model",
    }


def test_a_backfill_is_one_run_unless_told_to_fan_out(tmp_path: Path) -> None:
    assert partitions_per_run({}) is None
    assert partitions_per_run({PARTITIONS_PER_RUN_ENV: " 3 "}) == 3
    for wrong in ("0", "-1", "two", "1.5"):
        with pytest.raises(ConfigError, match=PARTITIONS_PER_RUN_ENV):
            partitions_per_run({PARTITIONS_PER_RUN_ENV: wrong})
    for per_run, policy in (
        (None, dg.BackfillPolicy.single_run()),
        (1, dg.BackfillPolicy.multi_run(max_partitions_per_run=1)),
    ):
        definitions = built(str(tmp_path), max_partitions_per_run=per_run)
        assert {assets.backfill_policy for assets in definitions.assets or ()} == {policy}


def test_runs_execute_their_steps_in_one_process(tmp_path: Path) -> None:
    definitions = built(str(tmp_path))
    assert definitions.resolve_job_def(JOB_NAME).executor_def.name == "in_process"
    assert definitions.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"


def test_the_code_location_imports_nothing_private_from_dagster() -> None:
    for path in (ROOT / "assets").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(name.startswith("dagster._") for name in names), (path, names)
    assert "dagster._" not in (ROOT / "dagster.yaml").read_text()

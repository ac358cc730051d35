"""The sources file's model: its `[sources.NAME]` tables and `[schedules]`, checked in one place.

Each key is a field of the pydantic models below, with its own check; the keys a table takes
are its fields, and the options of settings.OPTIONS that also belong to a source (`enrich`, `tags`)
become fields of `SourceTable` from their declaration. A bad file raises the ConfigError of
its first problem, in the words of the contract: `[sources.NAME] KEY must be ...`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic import ValidationInfo as Info
from pydantic_core import ErrorDetails

from .cron import cron_problem
from .errors import ConfigError
from .model import ACCOUNT_ID
from .project import ProjectConfig, SourceConfig, check_endpoint_url, check_region
from .settings import OPTIONS
from .source import AssumeRole, Organization

__all__ = ["SourceTable", "SourcesFile", "parse_sources_file"]

SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
_IAM_CHARS = r"A-Za-z0-9_+=,.@\-"
ROLE_ARN = re.compile(
    rf"arn:aws[a-z-]*:iam::[0-9]{{12}}:role/([{_IAM_CHARS}]+/)*[{_IAM_CHARS}]{{1,64}}\Z"
)
MEMBER_ROLE = re.compile(rf"([{_IAM_CHARS}]+/)*[{_IAM_CHARS}]{{1,64}}\Z")
SESSION_NAME = re.compile(rf"[{_IAM_CHARS}]{{2,64}}\Z")
EXTERNAL_ID = re.compile(rf"[{_IAM_CHARS}:/]{{2,1224}}\Z")
SOURCE_OPTIONS = tuple(option for option in OPTIONS if option.in_sources_file)


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[Any, Info], Any]:
    """A before-validator: a string matching `pattern`, described as `what` when it does not."""

    def check(value: Any, info: Info) -> Any:
        if not (isinstance(value, str) and pattern.match(value)):
            raise ValueError(f"{info.field_name} must be {what}, not {value!r}")
        return value

    return check


def _string(value: Any, info: Info) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"{info.field_name} must be a string")
    return value


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrganizationTable(_Table):
    """`[sources.NAME.organization]`: every ACTIVE member account, reached through one role."""

    member_role: str | None = None
    accounts: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    external_id: str | None = None

    _member_role = field_validator("member_role", mode="before")(
        _matching(MEMBER_ROLE, "an IAM role name")
    )
    _external_id = field_validator("external_id", mode="before")(
        _matching(EXTERNAL_ID, "2-1224 characters")
    )

    @field_validator("accounts", "exclude", mode="before")
    @classmethod
    def _account_ids(cls, value: Any, info: Info) -> Any:
        if not isinstance(value, list) or not all(
            isinstance(v, str) and ACCOUNT_ID.match(v) for v in value
        ):
            raise ValueError(
                f"organization {info.field_name} must be a list of 12-digit account ids as strings"
            )
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _has_member_role(self) -> OrganizationTable:
        if self.member_role is None:
            raise ValueError("organization needs member_role (the role to assume in each account)")
        return self


class _SourceKeys(_Table):
    """`[sources.NAME]`: whose credentials (a profile, a role assumed with one, or every member
    account of an organization), which regions, which endpoint."""

    regions: tuple[str, ...] = ()
    profile: str | None = None
    endpoint_url: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    source_profile: str | None = None
    role_session_name: str | None = None
    duration_seconds: int | None = None
    organization: OrganizationTable | None = None

    _strings = field_validator("profile", "source_profile", mode="before")(_string)
    _role_arn = field_validator("role_arn", mode="before")(
        _matching(ROLE_ARN, "an IAM role ARN (arn:aws:iam::ID:role/NAME)")
    )
    _external_id = field_validator("external_id", mode="before")(
        _matching(EXTERNAL_ID, "2-1224 of A-Z a-z 0-9 +=,.@:/-_")
    )
    _session_name = field_validator("role_session_name", mode="before")(
        _matching(SESSION_NAME, "2-64 of A-Z a-z 0-9 +=,.@-_")
    )

    @field_validator("regions", mode="before")
    @classmethod
    def _regions(cls, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
            raise ValueError("regions must be a list of strings")
        for region in value:
            _reworded(check_region, region, "region")
        return tuple(dict.fromkeys(value))

    @field_validator("endpoint_url", mode="before")
    @classmethod
    def _endpoint_url(cls, value: Any, info: Info) -> Any:
        _string(value, info)
        _reworded(check_endpoint_url, value, "endpoint_url")
        return value

    @field_validator("duration_seconds", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if type(value) is not int or value < 1:
            raise ValueError(f"duration_seconds must be a positive integer, not {value!r}")
        return value

    @field_validator(*(option.name for option in SOURCE_OPTIONS), mode="before", check_fields=False)
    @classmethod
    def _declared_option(cls, value: Any, info: Info) -> Any:
        (option,) = (o for o in SOURCE_OPTIONS if o.name == info.field_name)
        _reworded(option.check, value)
        return value

    @model_validator(mode="after")
    def _roles_fit_together(self) -> _SourceKeys:
        given = self.model_fields_set
        if self.role_arn is None:
            for key in ("external_id", "source_profile"):
                if key in given:
                    raise ValueError(f"{key} needs role_arn (the role it is for)")
            if self.organization is None:
                for key in ("role_session_name", "duration_seconds"):
                    if key in given:
                        raise ValueError(f"{key} needs role_arn or organization")
        elif "profile" in given:
            raise ValueError("with role_arn, name the profile that assumes it with source_profile")
        return self

    def source(self, name: str) -> SourceConfig:
        """The validated source `name` this table describes."""
        session_name = self.role_session_name or AssumeRole.session_name
        role = None
        if self.role_arn is not None:
            role = AssumeRole(self.role_arn, session_name, self.external_id, self.duration_seconds)
        organization = None
        if self.organization is not None and self.organization.member_role is not None:
            organization = Organization(
                member_role=self.organization.member_role,
                accounts=self.organization.accounts,
                exclude=self.organization.exclude,
                external_id=self.organization.external_id,
                session_name=session_name,
                duration_seconds=self.duration_seconds,
            )
        return SourceConfig(
            name=name,
            regions=self.regions,
            profile=self.source_profile or self.profile,
            endpoint_url=self.endpoint_url,
            role=role,
            organization=organization,
            **{option.name: getattr(self, option.name) for option in SOURCE_OPTIONS},
        )


if TYPE_CHECKING:
    SourceTable = _SourceKeys
else:
    SourceTable = create_model(
        "SourceTable",
        __base__=_SourceKeys,
        **{option.name: (option.kind, option.default) for option in SOURCE_OPTIONS},
    )


def _reworded(check: Callable[..., None], *args: Any) -> None:
    """`check`'s ConfigError as the ValueError pydantic files under the key it is about."""
    try:
        check(*args)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class SchedulesTable(_Table):
    """`[schedules]`: when Dagster syncs, and when it reconciles."""

    sync_cron: str = ProjectConfig.sync_cron
    reconcile_cron: str = ProjectConfig.reconcile_cron

    @field_validator("sync_cron", "reconcile_cron", mode="before")
    @classmethod
    def _cron(cls, value: Any, info: Info) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be a string, not {value!r}")
        problem = cron_problem(value)
        if problem:
            raise ValueError(f"{info.field_name} {value!r} is not a valid cron: {problem}")
        return value


class SourcesFile(_Table):
    """The whole file: at least one source, and the schedules."""

    schedules: SchedulesTable = SchedulesTable()
    sources: dict[str, SourceTable]

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, document: Any) -> Any:
        unknown = set(document) - set(cls.model_fields)
        if unknown:
            raise ValueError(
                f"unknown section(s) {sorted(unknown)}; expected [sources.NAME], [schedules]"
            )
        sources = document.get("sources")
        if not isinstance(sources, dict) or not sources:
            raise ValueError("no sources: add at least one [sources.NAME] table")
        for name in sources:
            if not SOURCE_NAME.match(name):
                raise ValueError(f"source name {name!r} must be letters, digits, '-' or '_'")
        return document

    def project(self, path: Path) -> ProjectConfig:
        return ProjectConfig(
            sources=tuple(table.source(name) for name, table in self.sources.items()),
            sync_cron=self.schedules.sync_cron,
            reconcile_cron=self.schedules.reconcile_cron,
            path=path,
        )


def parse_sources_file(document: dict[str, Any], path: Path) -> ProjectConfig:
    """The sources file's TOML document, validated; ConfigError naming its first problem."""
    try:
        parsed = SourcesFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"config file {path}: {_described(exc.errors()[0])}") from None
    return parsed.project(path)


def _described(error: ErrorDetails) -> str:
    """One pydantic error in the contract's words, prefixed with the table it is in."""
    where = tuple(str(part) for part in error["loc"])
    prefix = ""
    if where[:1] == ("schedules",):
        prefix = "[schedules] "
    elif where[:1] == ("sources",) and len(where) > 1:
        prefix = f"[sources.{where[1]}] "
    if error["type"] == "value_error":
        return prefix + str(error["ctx"]["error"])
    if error["type"] not in ("extra_forbidden", "model_type"):
        return f"{prefix}{'.'.join(where[2:])}: {error['msg']}"
    # An unknown key, or a table that is not a table: name the keys the table takes. Its depth
    # tells which table it is (source names may be any word, `schedules` included).
    table = where[:-1] if error["type"] == "extra_forbidden" else where
    tables: dict[int, tuple[type[BaseModel], str]] = {
        1: (SchedulesTable, ""),
        2: (SourceTable, ""),
        3: (OrganizationTable, "organization "),
    }
    model, what = tables[len(table)]
    return f"{prefix}{what}takes only {sorted(model.model_fields)}"

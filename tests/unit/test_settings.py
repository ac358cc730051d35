"""Every option of settings.OPTIONS reaches the core from every route in: the `sync` flags,
Dagster's run config or `sagemaker` resource, the sources file where it belongs there, and
code; and each route refuses the same bad values. The options are found by introspection, so
an option added without its wiring fails here."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from assets.resources import SageMakerResource
from assets.sync_assets import SyncConfig
from pipeline.arguments import build_parser
from pipeline.cli import options_from
from pipeline.config import AccessSettings, load_config
from pipeline.errors import ConfigError
from pipeline.run import SyncOptions
from pipeline.settings import OPTIONS, Option, options_of

INTERNAL = {"max_in_flight", "flush_rows", "compact", "shard"}
"""SyncOptions fields that are no user's option: the engine's own tuning and `--processes`."""
MODELS: dict[str, Any] = {"sync": SyncOptions, "access": AccessSettings}
DAGSTER: dict[str, Any] = {"sync": SyncConfig, "access": SageMakerResource}


def ids(option: Option) -> str:
    return option.name


def sample(option: Option) -> Any:
    """A valid value other than the option's default."""
    if option.repeated:
        return ["other.image", "some-image"]  # sorted, as from_core gives them
    if option.choices:
        return next(choice for choice in option.choices if choice != option.default)
    if option.kind is bool:
        return not option.default
    base = option.minimum or 0
    return option.kind(base + 2) if option.kind is int else base + 2.5


def invalid(option: Option) -> Any:
    """A value of the option's type that its bounds or pattern refuse."""
    if option.repeated:
        return ["bad name!"]
    if option.choices:
        return "bogus"
    if option.maximum is not None:
        return option.kind(option.maximum + 1)
    assert option.minimum is not None, option
    return option.kind(option.minimum if option.above_minimum else option.minimum - 1)


def as_flags(option: Option, value: Any) -> list[str]:
    if option.kind is bool:
        return [option.flag] if value else []
    values = value if option.repeated else [value]
    return [word for item in values for word in (option.flag, str(item))]


def sync_actions() -> dict[str, argparse.Action]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in commands.choices["sync"]._actions}


def from_core(option: Option, options: SyncOptions, access: AccessSettings) -> Any:
    value = getattr(options if option.group == "sync" else access, option.name)
    return sorted(value) if option.repeated else value


def test_every_field_of_the_options_is_declared_once() -> None:
    declared = [option.name for option in OPTIONS]
    assert len(declared) == len(set(declared))
    for group, model in MODELS.items():
        fields = {field.name: field for field in dataclasses.fields(model)}
        names = {option.name for option in options_of(group)}
        shared = {"concurrency"} if group == "sync" else set()
        assert set(fields) - INTERNAL - shared == names, group
        for option in options_of(group):
            default = fields[option.name].default
            assert default == option.default, option.name
    assert SyncOptions().concurrency == AccessSettings().concurrency


def test_every_option_is_a_sync_flag_with_its_default() -> None:
    actions = sync_actions()
    for option in OPTIONS:
        action = actions[option.name]
        assert action.option_strings == [option.flag] and action.help == option.help
        assert action.default == ([] if option.repeated else option.default)


def test_every_option_is_dagster_config_with_its_description() -> None:
    for option in OPTIONS:
        field = DAGSTER[option.group].model_fields[option.dagster_name]
        assert field.description == option.description
        default = field.get_default(call_default_factory=True)
        assert default == option.dagster_default, option.name
    assert set(SyncConfig.model_fields) == {o.dagster_name for o in options_of("sync")}
    assert set(SageMakerResource.model_fields) - {"config_path"} == {
        o.dagster_name for o in options_of("access")
    }


@pytest.mark.parametrize("option", OPTIONS, ids=ids)
def test_a_value_reaches_the_core_from_flags_dagster_and_code(option: Option) -> None:
    value = sample(option)
    args = build_parser().parse_args(["sync", *as_flags(option, value)])
    assert from_core(option, *options_from(args)) == value

    dagster = {option.dagster_name: value}
    resource = SageMakerResource(**dagster) if option.group == "access" else SageMakerResource()
    run_config = SyncConfig(**dagster) if option.group == "sync" else SyncConfig()
    assert from_core(option, run_config.options(resource), resource.access()) == value

    in_code = {option.name: value}
    options = SyncOptions(**in_code) if option.group == "sync" else SyncOptions()
    access = AccessSettings(**in_code) if option.group == "access" else AccessSettings()
    assert from_core(option, options, access) == value


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.kind is not bool], ids=ids)
def test_a_bad_value_is_refused_by_every_route(
    option: Option, capsys: pytest.CaptureFixture[str]
) -> None:
    value = invalid(option)
    flags = ["sync", *as_flags(option, value)]
    if option.repeated:  # each item is checked with the options, as the command starts
        with pytest.raises(ConfigError, match="invalid image name") as refused:
            options_from(build_parser().parse_args(flags))
        assert refused.value.exit_code == 2
    else:
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(flags)
        assert exited.value.code == 2
        assert option.flag in capsys.readouterr().err

    dagster = {option.dagster_name: value}
    with pytest.raises(ConfigError, match=r"image name|" + option.name):
        if option.group == "access":
            SageMakerResource(**dagster).access()
        else:
            SyncConfig(**dagster).options(SageMakerResource())

    with pytest.raises(ConfigError, match=r"image name|" + option.name):
        MODELS[option.group](**{option.name: value})


@pytest.mark.parametrize("option", OPTIONS, ids=ids)
def test_the_sources_file_takes_exactly_the_options_that_belong_there(
    tmp_path: Path, option: Option
) -> None:
    path = tmp_path / "image-versions.toml"
    path.write_text(f"[sources.a]\n{option.name} = {json.dumps(sample(option))}\n")
    if not option.in_sources_file:
        with pytest.raises(ConfigError, match=r"\[sources\.a\] takes only"):
            load_config(str(path))
        return
    (source,) = load_config(str(path)).sources
    assert getattr(source, option.name) == sample(option)

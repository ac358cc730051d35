"""The failed-builds check: real assets materialised on a real Dagster instance against the
emulator, its alert posted to a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from assets.checks import FAILED_BUILDS_CHECK
from assets.definitions import ALERT_WEBHOOK_ENV, alerts_resource, build_definitions
from assets.resources import BuildAlertsResource, DataDirResource, SageMakerResource
from pipeline.config import load_config
from pipeline.emulator import EmulatorServer
from tests.support import REGION, run_job

pytestmark = pytest.mark.dagster

SECRET_PATH = "/hooks/T0KEN-s3cret"


@dataclass
class Receiver:
    """A webhook on loopback: the JSON documents posted to it, and the status it answers."""

    url: str
    documents: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert self.path == SECRET_PATH
            assert self.headers["Content-Type"] == "application/json"
            if state.status == 200:
                state.documents.append(json.loads(body))
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # no request lines on stderr
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as http:
        state.url = f"http://127.0.0.1:{http.server_address[1]}{SECRET_PATH}"
        serving = threading.Thread(target=http.serve_forever, daemon=True)
        serving.start()
        yield state
        http.shutdown()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as temporary:
        yield temporary


def catalogue(server: EmulatorServer, tmp_path: Path) -> Path:
    """Two images: `train` with a failed build, `serve` with two good ones."""
    emulator = server.emulator
    for name in ("train", "serve"):
        emulator.create_image(name, region=REGION)
    emulator.create_image_version("train", region=REGION)
    emulator.create_image_version(
        "train", region=REGION, status="CREATE_FAILED", failure_reason="pip: no space left"
    )
    emulator.create_image_version("serve", region=REGION)
    emulator.create_image_version("serve", region=REGION)
    sources = tmp_path / "image-versions.toml"
    sources.write_text(f'[sources.emu]\nendpoint_url = "{server.url}"\nregions = ["{REGION}"]\n')
    return sources


def named(document: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    return [
        (v["image_name"], v["version"], v["status"], v["failure_reason"])
        for v in document["versions"]
    ]


def run(
    built: dg.Definitions, instance: dg.DagsterInstance, sources: Path
) -> dg.AssetCheckEvaluation:
    result = run_job(built, instance, load_config(str(sources)).partition_keys())
    assert result.success
    (evaluation,) = [
        c for c in result.get_asset_check_evaluations() if c.check_name == FAILED_BUILDS_CHECK
    ]
    logs = " ".join(str(entry) for entry in instance.all_logs(result.run_id))
    assert SECRET_PATH not in str(evaluation) and SECRET_PATH not in logs
    return evaluation


def definitions(sources: Path, data: Path, alerts: BuildAlertsResource) -> dg.Definitions:
    return build_definitions(
        load_config(str(sources)),
        SageMakerResource(config_path=str(sources)),
        DataDirResource(path=str(data)),
        alerts=alerts,
    )


def test_the_check_posts_each_newly_failed_version_once(
    server: EmulatorServer,
    receiver: Receiver,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    sources = catalogue(server, tmp_path)
    built = definitions(sources, tmp_path / "data", BuildAlertsResource(webhook_url=receiver.url))

    first = run(built, instance, sources)
    assert not first.passed and first.severity == dg.AssetCheckSeverity.WARN
    assert first.metadata["failed_count"].value == 1
    (document,) = receiver.documents
    assert named(document) == [("train", 2, "CREATE_FAILED", "pip: no space left")]
    assert document["count"] == 1 and document["more"] == 0
    assert document["check"] == FAILED_BUILDS_CHECK

    server.emulator.clock.advance(60)
    server.emulator.update_image_version(
        "serve", 1, region=REGION, status="DELETE_FAILED", failure_reason="in use by a domain"
    )
    server.emulator.create_image_version(
        "train", region=REGION, status="CREATE_FAILED", failure_reason="base image not found"
    )
    second = run(built, instance, sources)  # train v2 stays failed: not posted again
    assert second.metadata["failed_count"].value == 2
    assert named(receiver.documents[1]) == [
        ("serve", 1, "DELETE_FAILED", "in use by a domain"),
        ("train", 3, "CREATE_FAILED", "base image not found"),
    ]

    third = run(built, instance, sources)
    assert third.passed and third.metadata["delivery"].value == "nothing to deliver"
    assert len(receiver.documents) == 2


def test_a_failed_delivery_leaves_the_sync_done_and_is_posted_by_the_next_run(
    server: EmulatorServer,
    receiver: Receiver,
    instance: dg.DagsterInstance,
    tmp_path: Path,
) -> None:
    sources = catalogue(server, tmp_path)
    alerts = BuildAlertsResource(webhook_url=receiver.url, severity=dg.AssetCheckSeverity.ERROR)
    built = definitions(sources, tmp_path / "data", alerts)

    receiver.status = 500
    failed = run(built, instance, sources)  # the run succeeds: the versions are materialised
    assert failed.severity == dg.AssetCheckSeverity.ERROR and not failed.passed
    delivery = failed.metadata["delivery"].value
    assert delivery == "failed: the webhook answered HTTP 500; listed again at the next evaluation"
    assert receiver.documents == []

    receiver.status = 200
    again = run(built, instance, sources)
    assert again.metadata["delivery"].value == "HTTP 200"
    (document,) = receiver.documents
    assert named(document) == [("train", 2, "CREATE_FAILED", "pip: no space left")]


def test_the_webhook_is_bound_to_the_environment_only_when_set() -> None:
    assert alerts_resource({}).webhook_url is None
    assert alerts_resource({ALERT_WEBHOOK_ENV: " "}).webhook_url is None
    bound = alerts_resource({ALERT_WEBHOOK_ENV: "http://127.0.0.1:9/hooks/T0KEN"}).webhook_url
    assert isinstance(bound, dg.EnvVar) and bound == ALERT_WEBHOOK_ENV  # the name, not the URL

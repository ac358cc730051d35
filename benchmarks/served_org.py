"""An organization served for a benchmark: moto's server playing STS and Organizations
(moto_proc.py), one emulator process answering for every account (each with its own
catalogue, faults and rate-limit bucket), and the sources file that syncs them all.

ORG and RATE use it: the product syncs the organization as an organization source (one
`image-versions sync --config` process); a yardstick that speaks to one account at a time runs
with that account's credentials (the member role's, from STS), by which the emulator tells
the accounts apart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.emulator import DEFAULT_ACCOUNT_ID

from .catalogue import REGION, CatalogueSpec
from .commands import cli
from .emulator_proc import EmulatorHandle, ProcessEmulator
from .moto_proc import MotoServer, create_organization

MEMBER_ROLE = "SageMakerReadOnly"


@dataclass(frozen=True)
class ServedOrganization:
    """The servers, the organization's accounts (the management account first) and how long
    making the organization in moto took."""

    moto: MotoServer
    emulator: EmulatorHandle
    accounts: list[str]
    created_seconds: float

    def fill(self, spec: CatalogueSpec) -> list[list[int]]:
        """Fill every account's catalogue after `spec`, the n-th account's drawn with seed
        `spec.seed + n`; the version count of each image of each account."""
        return [
            self.emulator.fill(replace(spec, seed=spec.seed + n), account)
            for n, account in enumerate(self.accounts)
        ]

    def sources_file(self, path: Path) -> Path:
        """Write the sources file of one organization source over every account to `path`."""
        path.write_text(
            f'[sources.org]\nendpoint_url = "{self.emulator.url}"\nregions = ["{REGION}"]\n'
            f'[sources.org.organization]\nmember_role = "{MEMBER_ROLE}"\n'
        )
        return path

    def env(self) -> dict[str, str]:
        """This process's environment with STS and Organizations at moto."""
        return {
            **os.environ,
            "AWS_ENDPOINT_URL_STS": self.moto.url,
            "AWS_ENDPOINT_URL_ORGANIZATIONS": self.moto.url,
        }

    def sync_command(self, sources_file: Path, data_dir: Path, *options: str) -> list[str]:
        """An `image-versions sync` of the organization source into `data_dir`."""
        return [
            *cli(),
            "sync",
            "--config",
            str(sources_file),
            "--json",
            *options,
            "--data-dir",
            str(data_dir),
        ]

    def account_env(self, account: str) -> dict[str, str]:
        """This process's environment with the credentials of the member role in `account`."""
        import boto3

        sts = boto3.client("sts", endpoint_url=self.moto.url, region_name=REGION)
        credentials = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/{MEMBER_ROLE}", RoleSessionName="benchmark"
        )["Credentials"]
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
        }


@contextmanager
def served_organization(accounts: int) -> Iterator[ServedOrganization]:
    """An organization of `accounts` accounts (the management account among them) while the
    block runs; its emulator has empty catalogues and no faults."""
    with MotoServer() as moto:
        began = time.perf_counter()
        management, members = create_organization(moto.url, accounts - 1)
        created = time.perf_counter() - began
        if management != DEFAULT_ACCOUNT_ID:
            raise RuntimeError(f"moto's management account {management} is not the emulator's")
        with ProcessEmulator(members, sts_endpoint_url=moto.url) as emulator:
            yield ServedOrganization(moto, emulator, [management, *members], created)

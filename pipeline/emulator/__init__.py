"""Local emulator of the SageMaker image APIs, speaking AWS JSON 1.1 over HTTP.

Unmodified boto3 talks to it like to the real service::

    with EmulatorServer() as server:
        seed_catalogue(server.emulator)
        client = boto3.client(
            "sagemaker",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        client.list_image_versions(ImageName="pytorch-2-3-gpu")

(or set ``AWS_ENDPOINT_URL_SAGEMAKER`` to ``server.url``). Supported operations are ListImages,
ListImageVersions, ListAliases, DescribeImage, DescribeImageVersion, CreateImage,
CreateImageVersion, UpdateImage, UpdateImageVersion, DeleteImage, DeleteImageVersion, and
ListTags, AddTags and DeleteTags of images and versions, following the botocore service model
``sagemaker 2017-07-24``: request validation, error codes, epoch-second timestamps with
millisecond precision, inclusive time filters, every sort order, and opaque
NextTokens that are bound to their request and resume after the last returned item (a keyset
cursor), so that creating or deleting items between pages never makes a listing skip an
unchanged item. Image versions carry their details and aliases (an alias names one version
of its image).

Tests drive the catalogue through the :class:`Emulator` Python API and a controllable
:class:`Clock`, and inject latency, throttling (random, or a rate limit's token bucket that a
simulated neighbour may share) and server errors through :class:`Faults`.
:class:`Modes` (each off by default) give the other answer to what AWS leaves open: whole-second
time filters, short or empty pages with a NextToken, CREATING and DELETING that last, names
found in any case, archived versions unlisted.
One server can stand for several accounts, each an :class:`Emulator` of its own: it tells
which account a request is for from the request's access key, which :class:`CallerAccounts`
resolves through STS GetCallerIdentity (see :class:`EmulatorServer`).
The package depends on the standard library only (and on no other part of ``pipeline``). Its
modules: ``clock`` (the Clock), ``validation`` (error codes, ApiError, request members),
``faults`` (Faults), ``modes`` (Modes, and the lifecycle of CREATING and DELETING versions),
``shapes`` (catalogue records and response shapes), ``tagging`` (tags), ``paging`` (sorting,
filtering, NextTokens), ``operations`` (the Emulator), ``seeding`` (seed_catalogue), ``mutations``
(random_mutations), ``accounts`` (CallerAccounts) and ``server`` (HTTP, EmulatorServer,
serve).
"""

from .accounts import CallerAccounts
from .clock import Clock
from .faults import Faults
from .modes import Modes
from .mutations import random_mutations
from .operations import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Emulator
from .seeding import MIN_SEED_IMAGES, seed_catalogue
from .server import EmulatorServer, serve
from .validation import (
    ACCESS_DENIED,
    IN_USE,
    INTERNAL_FAILURE,
    LIMIT_EXCEEDED,
    NOT_FOUND,
    SERIALIZATION,
    THROTTLING,
    UNKNOWN_OPERATION,
    VALIDATION,
    ApiError,
)

__all__ = [
    "ACCESS_DENIED",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "INTERNAL_FAILURE",
    "IN_USE",
    "LIMIT_EXCEEDED",
    "MIN_SEED_IMAGES",
    "NOT_FOUND",
    "SERIALIZATION",
    "THROTTLING",
    "UNKNOWN_OPERATION",
    "VALIDATION",
    "ApiError",
    "CallerAccounts",
    "Clock",
    "Emulator",
    "EmulatorServer",
    "Faults",
    "Modes",
    "random_mutations",
    "seed_catalogue",
    "serve",
]

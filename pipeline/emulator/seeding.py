"""Realistic data: a deterministic, seeded catalogue of images and versions."""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from .operations import Emulator
from .shapes import _compact

__all__ = ["MIN_SEED_IMAGES", "seed_catalogue"]

MIN_SEED_IMAGES = 3
"""A seeded catalogue holds a big image, an image without versions, and small ones."""


@dataclass(frozen=True)
class _ImageTemplate:
    name: str
    display_name: str
    description: str


_IMAGE_TEMPLATES = (
    _ImageTemplate("pytorch-2-3-gpu", "PyTorch 2.3 GPU", "PyTorch 2.3 with CUDA 12.1 for GPU"),
    _ImageTemplate("tensorflow-2-16-cpu", "TensorFlow 2.16 CPU", "TensorFlow 2.16, Python 3.11"),
    _ImageTemplate("sklearn-1-5", "scikit-learn 1.5", "scikit-learn 1.5 with pandas and polars"),
    _ImageTemplate("Custom.R-4.4", "R 4.4", "R 4.4 with tidyverse for the analytics team"),
    _ImageTemplate("xgboost-1-7-6", "XGBoost 1.7.6", "XGBoost 1.7.6 training image"),
    _ImageTemplate("huggingface-tgi-2-0", "Hugging Face TGI 2.0", "Text generation inference"),
    _ImageTemplate("DataScience.Py3-11", "Data Science 3.11", "Conda data science distribution"),
    _ImageTemplate("spark-3-5-emr", "Spark 3.5", "PySpark 3.5 notebook kernel for EMR"),
    _ImageTemplate("jax-0-4-30-gpu", "JAX 0.4.30 GPU", "JAX with CUDA 12 and cuDNN 9"),
    _ImageTemplate("Geospatial.v1", "Geospatial", "GDAL, rasterio and geopandas"),
    _ImageTemplate("rapids-24-06", "RAPIDS 24.06", "RAPIDS cuDF and cuML on CUDA 12"),
    _ImageTemplate("autogluon-1-1", "AutoGluon 1.1", "AutoGluon tabular and time series"),
    _ImageTemplate("mxnet-1-9-cpu", "MXNet 1.9 CPU", "Legacy MXNet 1.9 image"),
    _ImageTemplate("julia-1-10", "Julia 1.10", "Julia 1.10 with IJulia kernel"),
    _ImageTemplate("team-nlp.base-v2", "NLP base v2", "Shared base image of the NLP team"),
    _ImageTemplate("llama3-finetune-a100", "Llama 3 fine-tuning", "QLoRA fine-tuning on A100"),
)
_BUILD_FAILURES = (
    "Image size 31.2 GB exceeds the maximum of 30 GB.",
    "Unable to pull the base image: the ECR repository policy denies access to the role.",
    "The kernel gateway did not start within 300 seconds.",
    "The base image manifest was not found; the tag may have been overwritten.",
)
_DELETE_FAILURES = (
    "The image version is used by a running app and cannot be deleted.",
    "An internal error occurred while deleting the image version. Retry the request.",
)
_FAILURE_REASONS = {"CREATE_FAILED": _BUILD_FAILURES, "DELETE_FAILED": _DELETE_FAILURES}
_TEAMS = ("nlp", "vision", "forecasting", "platform", "analytics")
_BIG_IMAGE_VERSIONS = (305, 340)
_SMALL_IMAGE_VERSIONS = (1, 8)
_FORCED_TIE_SIZE = 5
_BUILD_FAILURE_RATE = 0.08
_OBSERVED_BUILD_RATE = 0.3


def _seconds(rng: random.Random, low_ms: int, high_ms: int) -> float:
    """A random duration in whole milliseconds, as seconds."""
    return rng.randint(low_ms, high_ms) / 1000


def _pick_templates(rng: random.Random, count: int) -> list[_ImageTemplate]:
    picked = rng.sample(_IMAGE_TEMPLATES, min(count, len(_IMAGE_TEMPLATES)))
    extra = range(len(picked), count)
    return picked + [
        _ImageTemplate(f"custom-image-{n:03d}", f"Custom image {n}", "Team-built image")
        for n in extra
    ]


def _version_chunks(rng: random.Random, count: int, *, forced_tie: bool) -> list[int]:
    """Split ``count`` versions into groups created at the same instant (mostly singles)."""
    chunks: list[int] = []
    remaining = count
    while remaining > 0:
        chunks.append(min(remaining, rng.choice((1, 1, 1, 1, 1, 1, 1, 1, 2, 3))))
        remaining -= chunks[-1]
    if forced_tie:
        chunks.insert(rng.randrange(len(chunks) + 1), _FORCED_TIE_SIZE)
    return chunks


def _demo_details(name: str) -> dict[str, Any]:
    """Plausible CreateImageVersion details for an image, derived from its name alone."""
    lower = name.lower()
    gpu = any(mark in lower for mark in ("gpu", "a100", "rapids", "tgi"))
    training = any(mark in lower for mark in ("finetune", "xgboost", "train"))
    job = "INFERENCE" if "tgi" in lower else "TRAINING" if training else "NOTEBOOK_KERNEL"
    framework = re.match(r"([a-z]+)-(\d+)-(\d+)", lower)
    return _compact(
        {
            "JobType": job,
            "Processor": "GPU" if gpu else "CPU",
            "Horovod": gpu and job == "TRAINING",
            "MLFramework": f"{framework[1]} {framework[2]}.{framework[3]}" if framework else None,
            "ProgrammingLang": "Python 3.11",
            "VendorGuidance": "STABLE",
            "ReleaseNotes": f"Built from the {name} Dockerfile",
        }
    )


def _team(name: str) -> str | None:
    """The team tag of a seeded image, from its name alone (the random draws stay as they
    were): every template image has one, the generic `custom-image-*` ones have none."""
    if name.startswith("custom-image-"):
        return None
    return _TEAMS[zlib.crc32(name.encode()) % len(_TEAMS)]


def _image_tags(name: str) -> dict[str, str]:
    team = _team(name)
    return {} if team is None else {"team": team, "owner": f"{team}-leads@example.com"}


def _role(emulator: Emulator, name: str) -> str | None:
    """A team's image runs as the team's role; the others as the emulator's default."""
    team = _team(name)
    return None if team is None else f"arn:aws:iam::{emulator.account_id}:role/{team}-images"


def _create_demo_version(
    emulator: Emulator,
    name: str,
    region: str | None,
    *,
    status: str = "CREATED",
    failure_reason: str | None = None,
) -> dict[str, Any]:
    """Create a version with demo details, the alias ``v<number>`` and the image's team tag
    (every third version builds for the platform team), stamped once."""
    created = emulator.create_image_version(
        name,
        region=region,
        status=status,
        failure_reason=failure_reason,
        details=_demo_details(name),
    )
    number = created["Version"]
    emulator.update_image_version(
        name,
        number,
        region=region,
        aliases_to_add=[f"v{number}"],
        last_modified_time=created["LastModifiedTime"],
    )
    team = _team(name)
    if team is not None:
        tags = {"team": "platform" if number % 3 == 0 else team}
        emulator.tag_resource(created["ImageVersionArn"], tags, region=region)
    return created


def _seed_versions(
    emulator: Emulator, rng: random.Random, name: str, count: int, region: str | None
) -> None:
    """Create ``count`` versions: a group shares one timestamp, a single one may fail or be
    observed while building (its LastModifiedTime then follows its CreationTime)."""
    if count > 1:
        for _ in range(count):
            _create_demo_version(emulator, name, region)
        return
    status = "CREATE_FAILED" if rng.random() < _BUILD_FAILURE_RATE else "CREATED"
    reason = rng.choice(_BUILD_FAILURES) if status == "CREATE_FAILED" else None
    if rng.random() < _OBSERVED_BUILD_RATE:
        version = _create_demo_version(emulator, name, region, status="CREATING")
        emulator.clock.advance(_seconds(rng, 60_000, 1_200_000))
        emulator.update_image_version(
            name, version["Version"], region=region, status=status, failure_reason=reason
        )
    else:
        _create_demo_version(emulator, name, region, status=status, failure_reason=reason)


def _age_big_image(emulator: Emulator, rng: random.Random, name: str, region: str | None) -> None:
    """Fail one deletion and delete two versions of the big image (avoiding tied versions)."""
    versions = [v for v in emulator.live_versions(region) if v["ImageName"] == name]
    stamps = Counter(v["LastModifiedTime"] for v in versions)
    candidates = [
        v["Version"]
        for v in versions
        if v["ImageVersionStatus"] == "CREATED" and stamps[v["LastModifiedTime"]] == 1
    ]
    failed, *deleted = rng.sample(candidates, 3)
    emulator.clock.advance(_seconds(rng, 60_000, 3_600_000))
    emulator.update_image_version(
        name, failed, region=region, status="DELETE_FAILED", failure_reason=_DELETE_FAILURES[0]
    )
    for number in deleted:
        emulator.delete_image_version(name, number, region=region)


def seed_catalogue(
    emulator: Emulator, *, seed: int = 0, images: int = 12, region: str | None = None
) -> None:
    """Fill a region with a realistic catalogue, deterministic for ``seed`` and the start clock.

    ``images`` images (at least 3): one with 300+ versions (including a group of versions
    created at the same millisecond, one DELETE_FAILED and two deleted), one without versions,
    the others with 1-8. About 8% of builds fail with a FailureReason. Image creations and
    version groups are interleaved at random, the clock advancing 30 s to 8 h between events,
    so the history spans about two months of the clock.
    """
    if images < MIN_SEED_IMAGES:
        raise ValueError(f"seed_catalogue needs at least {MIN_SEED_IMAGES} images")
    rng = random.Random(seed)
    templates = _pick_templates(rng, images)
    counts = [rng.randint(*_BIG_IMAGE_VERSIONS), 0]
    counts += [rng.randint(*_SMALL_IMAGE_VERSIONS) for _ in templates[2:]]
    timelines = [
        deque([-1, *_version_chunks(rng, count, forced_tie=index == 0)])
        for index, count in enumerate(counts)
    ]
    pending = dict(zip(range(images), timelines, strict=True))
    while pending:
        index = rng.choices(list(pending), weights=[len(t) for t in pending.values()])[0]
        event = pending[index].popleft()
        if not pending[index]:
            del pending[index]
        emulator.clock.advance(_seconds(rng, 30_000, 8 * 3_600_000))
        template = templates[index]
        if event < 0:
            has_text = rng.random() < 0.8
            emulator.create_image(
                template.name,
                region=region,
                display_name=template.display_name if has_text else None,
                description=template.description if has_text else None,
                tags=_image_tags(template.name),
                role_arn=_role(emulator, template.name),
            )
        else:
            _seed_versions(emulator, rng, template.name, event, region)
    _age_big_image(emulator, rng, templates[0].name, region)

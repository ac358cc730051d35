"""Random mutations: realistic changes applied to a catalogue between syncs."""

from __future__ import annotations

import random
from collections.abc import Callable

from .operations import Emulator
from .seeding import _FAILURE_REASONS, _create_demo_version, _seconds

__all__ = ["random_mutations"]

_TRANSITIONS = {
    "CREATING": ("CREATED", "CREATED", "CREATE_FAILED"),
    "CREATED": ("DELETE_FAILED",),
    "DELETE_FAILED": ("CREATED",),
}
_PROJECTS = ("churn", "fraud", "vision", "forecast", "ranking", "speech")
_FLAVOURS = ("cpu", "gpu", "base", "dev")
_TIE_RATE = 0.2

_Mutation = Callable[[Emulator, random.Random, str | None], str | None]


def _mutate_create_version(
    emulator: Emulator, rng: random.Random, region: str | None
) -> str | None:
    names = emulator.image_names(region)
    if not names:
        return None
    name = rng.choice(names)
    status = rng.choice(("CREATING", "CREATING", "CREATED"))
    version = _create_demo_version(emulator, name, region, status=status)
    return f"created {name} version {version['Version']} ({status})"


def _mutate_status(emulator: Emulator, rng: random.Random, region: str | None) -> str | None:
    candidates = [
        v for v in emulator.live_versions(region) if v["ImageVersionStatus"] in _TRANSITIONS
    ]
    if not candidates:
        return None
    target = rng.choice(candidates)
    old = target["ImageVersionStatus"]
    new = rng.choice(_TRANSITIONS[old])
    reason = rng.choice(_FAILURE_REASONS[new]) if new in _FAILURE_REASONS else None
    name, number = target["ImageName"], target["Version"]
    emulator.update_image_version(name, number, region=region, status=new, failure_reason=reason)
    return f"{name} version {number}: {old} -> {new}"


def _mutate_delete_version(
    emulator: Emulator, rng: random.Random, region: str | None
) -> str | None:
    versions = emulator.live_versions(region)
    if not versions:
        return None
    target = rng.choice(versions)
    emulator.delete_image_version(target["ImageName"], target["Version"], region=region)
    return f"deleted {target['ImageName']} version {target['Version']}"


def _mutate_delete_image(emulator: Emulator, rng: random.Random, region: str | None) -> str | None:
    names = emulator.image_names(region)
    if not names:
        return None
    name = rng.choice(names)
    emulator.delete_image(name, region=region)
    return f"deleted image {name} with all its versions"


def _mutate_create_image(emulator: Emulator, rng: random.Random, region: str | None) -> str:
    existing = {name.lower() for name in emulator.image_names(region)}
    name = ""
    while not name or name.lower() in existing:
        name = f"{rng.choice(_PROJECTS)}-{rng.choice(_FLAVOURS)}-{rng.randint(1, 99)}"
    emulator.create_image(name, region=region, display_name=name.replace("-", " ").title())
    count = rng.randint(1, 3)
    for _ in range(count):
        _create_demo_version(emulator, name, region)
    return f"created image {name} with {count} versions"


_MUTATIONS: tuple[tuple[_Mutation, float], ...] = (
    (_mutate_create_version, 4.0),
    (_mutate_status, 3.0),
    (_mutate_delete_version, 2.0),
    (_mutate_create_image, 1.0),
    (_mutate_delete_image, 0.3),
)


def random_mutations(
    emulator: Emulator, rng: random.Random, count: int, *, region: str | None = None
) -> list[str]:
    """Apply ``count`` random realistic changes; returns one human-readable line per change.

    Changes create versions, move statuses along (CREATING -> CREATED/CREATE_FAILED, CREATED
    <-> DELETE_FAILED), delete versions or images and create images with a few versions. The
    clock advances up to two minutes before each change, except ~20% of the time (ties).
    """
    mutations = [mutation for mutation, _ in _MUTATIONS]
    weights = [weight for _, weight in _MUTATIONS]
    lines = []
    for _ in range(count):
        if rng.random() >= _TIE_RATE:
            emulator.clock.advance(_seconds(rng, 1, 120_000))
        mutate = rng.choices(mutations, weights)[0]
        lines.append(mutate(emulator, rng, region) or _mutate_create_image(emulator, rng, region))
    return lines

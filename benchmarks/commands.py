"""The product's command line as the benchmarks run it, and where its imports' time goes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .catalogue import REGION

TOP_IMPORTS = 4
MIN_IMPORT_S = 0.01
_IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (.+)$")


def cli() -> list[str]:
    """The installed `image-versions` script, else `python -m pipeline`."""
    script = Path(sys.executable).with_name("image-versions")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline"]


def sync_args(endpoint_url: str, data_dir: Path, *options: str) -> list[str]:
    """The arguments of a sync of the benchmark region of one emulator, after the command."""
    return [
        "sync",
        "--data-dir",
        str(data_dir),
        "--endpoint-url",
        endpoint_url,
        "--region",
        REGION,
        *options,
    ]


def import_profile(args: list[str]) -> tuple[dict[str, float], float]:
    """Under `python -X importtime ARGS`: the cumulative seconds of each package's first
    import (wherever it is nested), largest first, and the seconds of every import."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    lines = [
        (match.group(2), int(match.group(1)) / 1e6)
        for line in completed.stderr.splitlines()
        if (match := _IMPORT_LINE.match(line))
    ]
    times = {name.strip(): seconds for name, seconds in lines}
    total = sum(seconds for name, seconds in lines if not name.startswith(" "))  # top level
    return dict(sorted(times.items(), key=lambda item: -item[1])), total


def imports_note(times: dict[str, float]) -> str:
    """The heaviest third-party packages among the imports."""
    packages = [
        (name, seconds)
        for name, seconds in times.items()
        if seconds >= MIN_IMPORT_S
        and not name.startswith("_")
        and "." not in name
        and name not in sys.stdlib_module_names
        and name != "pipeline"
    ]
    return "imports of " + ", ".join(f"{n} {s:.2f} s" for n, s in packages[:TOP_IMPORTS])

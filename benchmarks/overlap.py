"""OVERLAP: many sources naming one account, synced again and again (invariant 14).

    python -m benchmarks.overlap [--sources 20] [--syncs 10] [--images 40] [--code DIR]

Each sync is an `image-versions sync` process over a sources file whose every source names the
same emulator (one account, one region); between syncs 10 versions are created and 10 change
status. After each sync it records the stored version rows, the distinct observed states (the
`image_version_history` view), and the sync's wall time and peak RSS. `--code DIR` runs the
CLI of another checkout (for a before-and-after in one run), with this checkout's emulator.
Prints a table and writes JSON (default benchmarks/results/overlap.json).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import duckdb

from pipeline.emulator import Emulator, EmulatorServer, seed_catalogue
from pipeline.emulator.clock import Clock

from .harness import isolate_aws_env
from .measured import run_measured

REGION = "us-east-1"


def _stored(data: Path) -> tuple[int, int]:
    """(stored version rows, distinct observed states)."""
    files = str(data / "image_versions" / "**" / "*.parquet")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        raw = connection.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()
        states = connection.execute("SELECT count(*) FROM image_version_history").fetchone()
    assert raw is not None and states is not None
    return int(raw[0]), int(states[0])


def _change(emulator: Emulator, rng: random.Random) -> None:
    emulator.clock.advance(2)
    names = emulator.image_names()
    for _ in range(10):
        emulator.create_image_version(rng.choice(names))
    for version in rng.sample(emulator.live_versions(), 10):
        emulator.update_image_version(
            version["ImageName"], version["Version"], status="CREATE_FAILED"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--syncs", type=int, default=10)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--code", type=Path, help="the checkout whose CLI runs (default: this)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/overlap.json"))
    args = parser.parse_args()
    code = (args.code or Path(__file__).resolve().parents[1]).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="overlap-"))
    isolate_aws_env(scratch)
    emulator = Emulator(clock=Clock())
    server = EmulatorServer(emulator).start()
    rng = random.Random(7)
    seed_catalogue(emulator, seed=7, images=args.images)
    sources = scratch / "sources.toml"
    sources.write_text(
        "".join(
            f'[sources.s{n}]\nendpoint_url = "{server.url}"\nregions = ["{REGION}"]\n'
            for n in range(args.sources)
        )
    )
    data = scratch / "data"
    command = [
        sys.executable,
        "-c",
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from pipeline.cli import main; sys.exit(main())",
        str(code),
    ]
    rows = []
    print(
        f"{'sync':>4} {'stored rows':>12} {'states':>8} {'rows/state':>10} {'wall s':>7} "
        f"{'peak RSS MB':>11}"
    )
    try:
        for step in range(args.syncs):
            run = run_measured(
                [*command, "sync", "--data-dir", str(data), "--config", str(sources)],
                timeout=1800,
            )
            raw, states = _stored(data)
            rows.append(
                {
                    "sync": step + 1,
                    "stored_rows": raw,
                    "states": states,
                    "rows_per_state": round(raw / states, 3),
                    "seconds": round(run.seconds, 2),
                    "peak_rss_mb": round(run.peak_rss_mb, 1),
                }
            )
            print(
                f"{step + 1:>4} {raw:>12,} {states:>8,} {raw / states:>10.2f} "
                f"{run.seconds:>7.1f} {run.peak_rss_mb:>11.0f}"
            )
            _change(emulator, rng)
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"code": code.name, "sources": args.sources, "rows": rows}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""B7: one sync through the Dagster job against the same sync from the CLI; B8: start-up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .api import api_catalogue
from .catalogue import REGION
from .emulator_proc import open_emulator
from .harness import (
    INFO,
    Context,
    Outcome,
    Row,
    median,
    run_command,
    run_json,
    seconds_text,
    verdict,
)

DAGSTER_OVERHEAD_LIMIT_S = 5.0
HELP_LIMIT_S = 0.5
HELP_RUNS = 10
TOP_IMPORTS = 4
MIN_IMPORT_S = 0.01
_IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (.+)$")


def cli() -> list[str]:
    """The installed `image-versions` script, else `python -m pipeline`."""
    script = Path(sys.executable).with_name("image-versions")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline"]


# ---------------------------------------------------------------- B7


def _dagster_home(ctx: Context) -> dict[str, str]:
    """An environment whose DAGSTER_HOME is a scratch directory with telemetry off."""
    home = ctx.fresh_dir("dagster-home")
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {**os.environ, "DAGSTER_HOME": str(home)}


def b7(ctx: Context) -> Outcome:
    cli_runs: list[float] = []
    dagster_runs = []
    env = _dagster_home(ctx)
    with open_emulator() as emulator:
        emulator.fill(api_catalogue(ctx.sizes.api_images))
        config = ctx.fresh_dir("sources.toml")
        config.write_text(
            f'[sources.bench]\nendpoint_url = "{emulator.url}"\nregions = ["{REGION}"]\n'
        )
        for _ in range(ctx.sizes.repeats):
            data_dir = str(ctx.fresh_dir("b7-cli"))
            cli_runs.append(
                run_command([*cli(), "sync", "--config", str(config), "--data-dir", data_dir])
            )
            seconds, result = run_json(
                [
                    "benchmarks.dagster_child",
                    "--config",
                    str(config),
                    "--data-dir",
                    str(ctx.fresh_dir("b7-dagster")),
                ],
                env=env,
            )
            dagster_runs.append(result | {"process_seconds": seconds})
    return _b7_outcome(ctx, cli_runs, dagster_runs)


def _b7_outcome(
    ctx: Context, cli_runs: list[float], dagster_runs: list[dict[str, float]]
) -> Outcome:
    outcome = Outcome(
        raw={"images": ctx.sizes.api_images, "cli": cli_runs, "dagster": dagster_runs}
    )
    cli_s = median(cli_runs)
    dagster_s = median([run["process_seconds"] for run in dagster_runs])
    overhead = dagster_s - cli_s
    one_run = all(run["runs"] == 1 and run["success"] for run in dagster_runs)
    parts = {
        name: median([run[f"{name}_seconds"] for run in dagster_runs])
        for name in ("import", "setup", "run")
    }
    outcome.add(
        Row(
            "B7",
            "full sync / CLI process",
            seconds_text(cli_s),
            "-",
            "-",
            INFO,
            f"median of {len(cli_runs)}",
        ),
        Row(
            "B7",
            "full sync / Dagster job process",
            seconds_text(dagster_s),
            f"{dagster_s / cli_s:.2f}x CLI",
            f"one run; overhead < {DAGSTER_OVERHEAD_LIMIT_S:.0f} s",
            verdict(one_run and overhead < DAGSTER_OVERHEAD_LIMIT_S),
            f"overhead {overhead:+.2f} s; one successful run each time: {one_run}; "
            + ", ".join(f"{name} {seconds_text(s)}" for name, s in parts.items()),
        ),
    )
    return outcome


# ---------------------------------------------------------------- B8


def import_times(args: list[str]) -> dict[str, float]:
    """Cumulative seconds of each package's first import under `python -X importtime ARGS`
    (wherever it is nested), largest first."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    times = {
        match.group(2).strip(): int(match.group(1)) / 1e6
        for line in completed.stderr.splitlines()
        if (match := _IMPORT_LINE.match(line))
    }
    return dict(sorted(times.items(), key=lambda item: -item[1]))


def _imports_note(times: dict[str, float]) -> str:
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


def b8(ctx: Context) -> Outcome:
    help_runs = [run_command([*cli(), "--help"]) for _ in range(HELP_RUNS)]
    bare = [run_command([sys.executable, "-c", "pass"]) for _ in range(HELP_RUNS)]
    help_imports = import_times(["-m", "pipeline", "--help"])
    with open_emulator() as empty:

        def sync_args() -> list[str]:
            data_dir = str(ctx.fresh_dir("b8-noop"))
            return ["sync", "--data-dir", data_dir, "--endpoint-url", empty.url, "--region", REGION]

        noop = [run_command([*cli(), *sync_args()]) for _ in range(ctx.sizes.repeats)]
        baseline = [
            run_command(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.baseline",
                    "--endpoint-url",
                    empty.url,
                    "--data-dir",
                    str(ctx.fresh_dir("b8-baseline")),
                ]
            )
            for _ in range(ctx.sizes.repeats)
        ]
        sync_imports = import_times(["-m", "pipeline", *sync_args()])
    outcome = Outcome(
        raw={
            "help": help_runs,
            "bare_python": bare,
            "noop_sync": noop,
            "baseline_noop": baseline,
            "help_imports": help_imports,
            "sync_imports": sync_imports,
        }
    )
    help_s, noop_s, baseline_s = median(help_runs), median(noop), median(baseline)
    outcome.add(
        Row(
            "B8",
            "image-versions --help",
            seconds_text(help_s),
            f"{help_s / median(bare):.2f}x bare python",
            f"< {HELP_LIMIT_S} s",
            verdict(help_s < HELP_LIMIT_S),
            f"bare python {seconds_text(median(bare))}; " + _imports_note(help_imports),
        ),
        Row(
            "B8",
            "no-op sync (empty region, CLI)",
            seconds_text(noop_s),
            f"{noop_s / baseline_s:.2f}x baseline",
            "report",
            INFO,
            f"baseline {seconds_text(baseline_s)}; " + _imports_note(sync_imports),
        ),
    )
    return outcome

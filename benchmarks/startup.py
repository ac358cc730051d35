"""B7: one sync through the Dagster job against the same sync from the CLI, and runs launched
from the UI (`dagster dev`, GraphQL) on the demo catalogue; B8: start-up."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from pipeline.config import load_config
from pipeline.emulator import Emulator, EmulatorServer, seed_catalogue

from .api import api_catalogue
from .catalogue import REGION
from .commands import cli, import_profile, imports_note, sync_args
from .dagster_ui import ASSET_JOB, dagster_dev
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
UI_IMAGES = 40
"""The demo catalogue of `python3 dev.py dev`."""
UI_RUN_LIMIT_S = 10.0
_SYNC_SECONDS = re.compile(r"\bseconds=([0-9.]+)")
HELP_LIMIT_S = 0.5
HELP_RUNS = 10


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
    return _b7_outcome(ctx, cli_runs, dagster_runs, _ui_runs(ctx))


def _ui_runs(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """Runs launched through the webserver of `dagster dev` (the repository's dagster.yaml),
    as a UI user launches them, on the demo catalogue: the job over every partition (a full
    sync first, then incremental ones), and the asset checks alone. Each with its wall time
    from the launch to its end, the run worker's time, and the sync's own seconds."""
    from assets.checks import CHECKED_ASSET, build_checks
    from assets.schedules import JOB_NAME, range_tags

    checks = [spec.name for c in build_checks(timedelta(hours=2)) for spec in c.check_specs]
    scratch = ctx.fresh_dir("b7-ui")
    scratch.mkdir(parents=True)
    with EmulatorServer(Emulator()) as server:
        seed_catalogue(server.emulator, images=UI_IMAGES, region=REGION)
        config = scratch / "image-versions.toml"
        config.write_text(
            f'[sources.demo]\nendpoint_url = "{server.url}"\nregions = ["{REGION}"]\n'
        )
        env = {
            **os.environ,
            "IMAGE_VERSIONS_CONFIG": str(config),
            "IMAGE_VERSIONS_DATA_DIR": str(scratch / "data"),
        }
        tags = range_tags(load_config(str(config)).partition_keys())
        with (scratch / "dagster-dev.log").open("w") as log, dagster_dev(scratch, env, log) as dev:

            def timed(launch: Callable[[], str]) -> dict[str, Any]:
                timing = dev.timed_run(launch)
                found = (_SYNC_SECONDS.search(m) for m in dev.log_messages(timing.run_id))
                syncs = [float(match[1]) for match in found if match]
                return asdict(timing) | {"sync_seconds": syncs[0] if syncs else None}

            sync_runs = [
                timed(lambda: dev.launch_run(JOB_NAME, tags)) for _ in range(ctx.sizes.repeats + 1)
            ]
            check_runs = [
                timed(lambda: dev.launch_run(ASSET_JOB, checks={CHECKED_ASSET: checks}))
                for _ in range(ctx.sizes.repeats)
            ]
    return {"sync": sync_runs, "checks": check_runs}


def _b7_outcome(
    ctx: Context,
    cli_runs: list[float],
    dagster_runs: list[dict[str, float]],
    ui_runs: dict[str, list[dict[str, Any]]],
) -> Outcome:
    outcome = Outcome(
        raw={
            "images": ctx.sizes.api_images,
            "cli": cli_runs,
            "dagster": dagster_runs,
            "ui_images": UI_IMAGES,
            "ui": ui_runs,
        }
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
        *_ui_rows(ui_runs),
    )
    return outcome


def _ui_rows(ui_runs: dict[str, list[dict[str, Any]]]) -> list[Row]:
    full, *incremental = ui_runs["sync"]
    checks = ui_runs["checks"]
    ok = all(run["status"] == "SUCCESS" for run in [full, *incremental, *checks])
    wall = median([run["wall_seconds"] for run in incremental])
    sync_s = median([run["sync_seconds"] for run in incremental])
    worker = median([run["worker_seconds"] for run in incremental])
    checks_wall = median([run["wall_seconds"] for run in checks])
    return [
        Row(
            "B7",
            f"UI-launched run, {UI_IMAGES} images (incremental)",
            seconds_text(wall),
            f"{wall / sync_s:.1f}x its sync",
            f"<= {UI_RUN_LIMIT_S:.0f} s",
            verdict(ok and wall <= UI_RUN_LIMIT_S),
            f"median of {len(incremental)}, launch to end; run worker {seconds_text(worker)}, "
            f"sync {seconds_text(sync_s)}; first (full) run {seconds_text(full['wall_seconds'])}",
        ),
        Row(
            "B7",
            "UI-launched checks-only run",
            seconds_text(checks_wall),
            "-",
            "report",
            INFO,
            f"median of {len(checks)}; all runs succeeded: {ok}",
        ),
    ]


# ---------------------------------------------------------------- B8


def b8(ctx: Context) -> Outcome:
    help_runs = [run_command([*cli(), "--help"]) for _ in range(HELP_RUNS)]
    bare = [run_command([sys.executable, "-c", "pass"]) for _ in range(HELP_RUNS)]
    help_imports, _ = import_profile(["-m", "pipeline", "--help"])
    with open_emulator() as empty:

        def noop_args() -> list[str]:
            return sync_args(empty.url, ctx.fresh_dir("b8-noop"))

        noop = [run_command([*cli(), *noop_args()]) for _ in range(ctx.sizes.repeats)]
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
        sync_imports, _ = import_profile(["-m", "pipeline", *noop_args()])
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
            f"bare python {seconds_text(median(bare))}; " + imports_note(help_imports),
        ),
        Row(
            "B8",
            "no-op sync (empty region, CLI)",
            seconds_text(noop_s),
            f"{noop_s / baseline_s:.2f}x baseline",
            "report",
            INFO,
            f"baseline {seconds_text(baseline_s)}; " + imports_note(sync_imports),
        ),
    )
    return outcome

"""The fault matrix: real `image-versions` processes against the emulator, under real faults.

Every row ends with 0 rows lost and 0 duplicates visible, or with a documented clear refusal.
`python -m tests.fault_matrix` runs the long version (printing a table, writing JSON);
tests/e2e/test_faults.py runs each row with its quick trial count.

"Lost" counts the live versions of the source that the `image_versions` view misses or holds
with a wrong field, plus rows it holds that the source no longer has; "duplicates" counts
repeated keys in `image_versions` and repeated states in `image_version_history`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from pipeline.emulator import EmulatorServer, Faults
from pipeline.state import state_files
from pipeline.storage import AUTO_COMPACT_FILES
from tests.fault_dagster import DAGSTER_MATRIX
from tests.fault_harness import Harness, Row, Trial, harness, read_until
from tests.fault_hostile import HOSTILE_MATRIX
from tests.fault_modes import MODES_MATRIX
from tests.support import KILL_INSTANTS, OTHER_REGION, REGION, held_listings, kill_mid_run

ROOT = Path(__file__).resolve().parents[1]
KILL_PHASES = (
    "listing",
    "parquet write",
    "data committed, state not yet",
    "compaction",
    "any instant",
)
PHASE_MARKERS = {
    "listing": "listing images of",
    "parquet write": "writing ",
    "compaction": "compacting ",
}
PLANTED_SECRET = "PLANTEDsecretKEY0123456789abcdefXYZ"
PLANTED_TOKEN = "PLANTEDsessionTOKEN9876543210zyxw"


# ------------------------------------------------------------------ the rows


def sigkill(trials: int) -> Row:
    """SIGKILL at every phase's marker, and at instants spread over a whole `--reconcile` run
    (wherever they fall), each followed by a normal re-run (invariants 2 and 14)."""
    results = []
    phases = [KILL_PHASES[i % len(KILL_PHASES)] for i in range(trials)]
    spread = phases.count("any instant")
    with harness(1) as h:
        h.seed(images=30)
        h.emulator.faults.latency_s = 0.01  # calls in flight at every instant, as against AWS
        run_seconds = _timed_sync(h, "--reconcile", "--concurrency", "2")
        for phase in phases:
            h.mutate(6)
            h.emulator.clock.advance(1)
            if phase == "compaction":
                h.sync()
                h.mutate(3)
                last = h.kill_at(
                    ["compact", "--data-dir", str(h.data.root)],
                    PHASE_MARKERS[phase],
                    h.rng.uniform(0, 0.05),
                )
            elif phase == "data committed, state not yet":
                instant = KILL_INSTANTS[phases[: len(results)].count(phase) % 2]
                last = h.killed_at(h.args("--concurrency", "2"), instant)
            elif phase == "any instant":
                index = phases[: len(results)].count(phase)
                instant = run_seconds * (index + 0.5) / spread
                args = h.args("--reconcile", "--concurrency", "2")
                landed = kill_mid_run(lambda args=args: h.started(args), instant, attempts=4)
                last = f"{instant:.2f} s after the start" + ("" if landed else ": never mid-run")
            else:
                delay = h.rng.uniform(0, 0.3) if phase == "listing" else h.rng.uniform(0, 0.02)
                last = h.kill_at(
                    h.args("--concurrency", "2", "--full-refresh"), PHASE_MARKERS[phase], delay
                )
            visible = [p for p in h.data.versions_dir.rglob("*") if p.is_file()]
            partial = [p for p in visible if p.suffix != ".parquet"]
            run = h.sync()
            trial = h.trial(run, note=f"{phase} (last log: {last[-60:]})")
            trial.lost += len(partial) + last.endswith("never mid-run")  # a kill that missed
            trial.duplicates += stored_copies(h)  # no state stored twice (invariant 14)
            results.append(trial)
    row = Row("SIGKILL mid-run, then a normal re-run", results)
    row.details["instants"] = {p: phases.count(p) for p in KILL_PHASES}
    return row


def _timed_sync(h: Harness, *extra: str) -> float:
    """Seconds of a whole sync of the catalogue, process start included, into a scratch dir."""
    started = time.monotonic()
    scratch = ["sync", "--data-dir", str(h.workdir / "timing"), "--endpoint-url", h.endpoint]
    run = h.cli(*scratch, *extra)
    assert run.code == 0, run.stderr
    return time.monotonic() - started


def faulty_source(name: str, setup: Callable[[Harness], None], *extra: str) -> Callable[[int], Row]:
    """A row whose fault is switched on in the emulator for the whole sync."""

    def run(trials: int) -> Row:
        results = []
        with harness(3) as h:
            h.seed(images=12)
            for _ in range(trials):
                h.mutate(5)
                setup(h)
                sync = h.sync(*extra)
                h.emulator.faults = Faults()
                results.append(h.trial(sync))
        row = Row(name, results)
        row.details["exit statuses"] = sorted({t.exit_status for t in results})
        return row

    return run


def burst_of_throttles(h: Harness) -> None:
    """50 throttles in a row, landing on the version listings (8 workers share them)."""
    h.emulator.faults = Faults(throttle_burst=50, operations=frozenset({"ListImageVersions"}))


def throttled_20_rps(trials: int) -> Row:
    """A server limit of 20 requests/s: the client's own limit keeps throttles under 2%."""
    results = []
    with harness(4) as h:
        h.seed(images=40)
        for _ in range(trials):
            h.mutate(5)
            h.emulator.faults.rate_limit_rps = 20
            h.emulator.clear_requests()
            run = h.sync("--max-rps", "18", "--full-refresh")
            match = re.search(r"(\d+) API calls.*?(\d+) throttled", run.stdout)
            calls, throttled = (int(match[1]), int(match[2])) if match else (0, -1)
            trial = h.trial(run, note=f"{throttled} of {calls} calls throttled")
            if not 0 <= throttled <= 0.02 * calls:
                trial.lost += 1  # over budget counts as a failed trial
            results.append(trial)
            h.emulator.faults = Faults()
    return Row("server limit 20 rps (client --max-rps 18)", results)


def deleted_mid_sync(trials: int) -> Row:
    """An image deleted between ListImages and its ListImageVersions."""
    results = []
    with harness(5) as h:
        h.seed(images=10)
        h.sync()
        for _ in range(trials):
            h.mutate(3)
            names = [v["ImageName"] for v in h.emulator.live_versions(REGION)]
            victim = h.rng.choice(names)

            def hook(operation: str, params: dict[str, Any], victim: str = victim) -> None:
                if operation == "ListImageVersions" and params.get("ImageName") == victim:
                    h.emulator.before_request = None
                    h.emulator.delete_image(victim, region=REGION)

            h.emulator.before_request = hook
            results.append(h.trial(h.sync()))
    return Row(
        "image deleted between ListImages and ListImageVersions",
        results,
        refusal="exit 1 naming the image; it is tombstoned, the rest commits",
    )


def changed_mid_pagination(trials: int) -> Row:
    """Versions created and deleted while an image's listing is between pages."""
    results = []
    with harness(6) as h:
        h.seed(images=6)
        for _ in range(trials):
            big = max(
                h.emulator.image_names(REGION),
                key=lambda n: sum(v["ImageName"] == n for v in h.emulator.live_versions(REGION)),
            )

            def hook(operation: str, params: dict[str, Any], big: str = big) -> None:
                if operation == "ListImageVersions" and "NextToken" in params:
                    h.emulator.before_request = None
                    live = [
                        v["Version"]
                        for v in h.emulator.live_versions(REGION)
                        if v["ImageName"] == big
                    ]
                    for number in h.rng.sample(live, 3):
                        h.emulator.delete_image_version(big, number, region=REGION)
                    for _ in range(3):
                        h.emulator.create_image_version(big, region=REGION)

            h.emulator.before_request = hook
            h.sync("--full-refresh")
            results.append(h.trial(h.sync("--reconcile"), note="then one reconcile"))
    return Row("versions created/deleted mid-pagination", results)


def clock_skew(trials: int) -> Row:
    """LastModifiedTime in the future; and late updates stamped before watermark - lookback."""
    results = []
    with harness(7) as h:
        h.seed(images=8)
        h.sync()
        for _ in range(trials):
            names = h.emulator.image_names(REGION)
            future = h.rng.choice(names)
            h.emulator.create_image_version(future, region=REGION)
            number = max(
                v["Version"] for v in h.emulator.live_versions(REGION) if v["ImageName"] == future
            )
            h.emulator.update_image_version(
                future,
                number,
                region=REGION,
                last_modified_time=datetime.now(UTC) + timedelta(days=1),
            )
            h.sync()
            h.emulator.clock.advance(30)
            h.mutate(3)  # ordinary changes after the future stamp must still be seen
            plain = h.sync()
            results.append(h.trial(plain, note="future stamp, then normal changes"))
            late = h.rng.choice(h.emulator.live_versions(REGION))
            h.emulator.update_image_version(
                late["ImageName"],
                late["Version"],
                region=REGION,
                status="DELETE_FAILED",
                last_modified_time=h.emulator.clock.now() - timedelta(hours=3),
            )
            h.sync()
            results.append(h.trial(h.sync("--reconcile"), note="late update, reconcile"))
    return Row("clock skew: future stamps; late stamps beyond the lookback", results)


def regions_failing(trials: int) -> Row:
    """One region denied, or unknown: the other syncs, exit 1 names the failed one."""
    results = []
    with harness(8) as h:
        h.seed(images=6, region=REGION)
        h.seed(images=6, region=OTHER_REGION)
        for index in range(trials):
            h.mutate(3)
            if index % 2 == 0:
                h.emulator.faults.denied_regions = frozenset({OTHER_REGION})
                run = h.sync("--region", OTHER_REGION)
                named = OTHER_REGION in run.stderr and "AccessDenied" in run.stderr
            else:
                run = h.sync("--region", "xx-nowhere-1")
                named = "xx-nowhere-1" in run.stderr
            h.emulator.faults = Faults()
            trial = h.trial(run, note="denied" if index % 2 == 0 else "unknown region")
            if run.code != 1 or not named:
                trial.lost += 1
            results.append(trial)
    return Row(
        "one region denied or unknown",
        results,
        refusal="exit 1, the failed region named; the other region commits",
    )


MALFORMED_CASES: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing required field (ImageArn)": lambda v: v.pop("ImageArn"),
    "unknown ImageVersionStatus": lambda v: v.update(ImageVersionStatus="QUANTUM_FLUX"),
    "extra unknown fields": lambda v: v.update(Shiny={"a": [1, 2]}, Other="x"),
    "FailureReason of 1,024 chars": lambda v: v.update(FailureReason="é" + "x" * 1023),
    "FailureReason non-ASCII": lambda v: v.update(FailureReason="échec: 镜像构建失败 ✗"),
    "Version 0": lambda v: v.update(
        Version=0, ImageVersionArn=v["ImageVersionArn"].rsplit("/", 1)[0] + "/0"
    ),
    "Version 2**31 (beyond int32)": lambda v: v.update(Version=2**31),
    "ImageVersionArn 'None'": lambda v: v.update(ImageVersionArn="None"),
    "ImageArn of another image": lambda v: v.update(ImageArn=v["ImageArn"] + "-other"),
}
REJECTED = {
    "missing required field (ImageArn)",
    "Version 2**31 (beyond int32)",
    "ImageArn of another image",
}


def malformed(trials: int) -> list[Row]:
    """Malformed records: kept, coerced or rejected-and-reported; never a crashed run."""
    rows = []
    for case, damage in MALFORMED_CASES.items():
        results = []
        with harness(9) as h:
            h.seed(images=5)
            target = h.emulator.live_versions(REGION)[0]
            for _ in range(trials):
                h.emulator.rewrite_response = _damaging(
                    target["ImageName"], target["Version"], damage
                )
                run = h.sync("--full-refresh")
                h.emulator.rewrite_response = None
                kept = _stored_version_fields(h, target["ImageName"])
                trial = h.trial(h.sync("--full-refresh") if case in REJECTED else run)
                if case in REJECTED:
                    ok = run.code == 1 and target["ImageName"] in run.stderr
                    trial.note = f"first run exit {run.code}: {run.message[:90]}"
                else:
                    ok = run.code == 0 and kept is not None
                    trial.lost = 0  # the source's record differs on purpose: checked below
                    trial.note = f"stored: {kept}"
                    trial.lost += 0 if _kept_as_policy(case, kept) else 1
                if not ok:
                    trial.lost += 1
                results.append(trial)
        policy = "reject-and-report" if case in REJECTED else "keep"
        rows.append(
            Row(
                f"malformed: {case} ({policy})",
                results,
                refusal="exit 1 naming the image; fixed next run" if case in REJECTED else "",
            )
        )
    return rows


def _damaging(
    name: str, number: int, damage: Callable[[dict[str, Any]], None]
) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """A response rewriter that damages one version of one image in every listing."""

    def rewrite(operation: str, body: dict[str, Any]) -> dict[str, Any]:
        for version in body.get("ImageVersions", []):
            image_arn = str(version.get("ImageArn", ""))
            if (
                operation == "ListImageVersions"
                and version.get("Version") == number
                and (image_arn.endswith("/" + name))
            ):
                damage(version)
        return body

    return rewrite


def _stored_version_fields(h: Harness, image: str) -> list[tuple[Any, ...]] | None:
    if not h.data.warehouse_path.exists():
        return None
    with duckdb.connect(str(h.data.warehouse_path), read_only=True) as con:
        return con.execute(
            "SELECT version, status, failure_reason, image_version_arn FROM image_versions "
            "WHERE image_name = ? ORDER BY version",
            [image],
        ).fetchall()


def _kept_as_policy(case: str, stored: list[tuple[Any, ...]] | None) -> bool:
    """Whether the damaged record was stored as the documented policy says."""
    if not stored:
        return False
    statuses = {row[1] for row in stored}
    reasons = {row[2] for row in stored}
    arns = {row[3] for row in stored}
    return {
        "unknown ImageVersionStatus": "QUANTUM_FLUX" in statuses,
        "extra unknown fields": True,
        "FailureReason of 1,024 chars": any(r and len(r) == 1024 for r in reasons),
        "FailureReason non-ASCII": "échec: 镜像构建失败 ✗" in reasons,
        "Version 0": any(row[0] == 0 for row in stored),
        "ImageVersionArn 'None'": "None" in arns,
    }[case]


def disk_full(trials: int) -> Row:
    """RLIMIT_FSIZE makes a write fail mid-file: exit 1, nothing corrupt, then a run with room
    converges."""
    results = []
    with harness(10) as h:
        h.seed(images=30)
        for _ in range(trials):
            h.mutate(5)
            full = h.sync("--full-refresh", fsize=4_000)
            visible = (
                [p for p in h.data.versions_dir.rglob("*") if p.is_file()]
                if (h.data.versions_dir.exists())
                else []
            )
            bad = [p for p in visible if p.suffix != ".parquet"]
            trial = h.trial(h.sync(), note=f"full disk: exit {full.code}, {full.message[:80]}")
            if full.code != 1 or "Traceback" in full.stderr or bad:
                trial.lost += 1 + len(bad)
            results.append(trial)
    return Row("disk full during a write (RLIMIT_FSIZE)", results)


def corrupt_files(trials: int) -> Row:
    """A truncated Parquet file: verify reports it, --repair quarantines, a full refresh
    converges. A corrupt state: exit 2, then a full refresh converges."""
    results = []
    with harness(11) as h:
        h.seed(images=10)
        for index in range(trials):
            h.mutate(4)
            h.sync()
            if index % 2 == 0:
                victim = h.rng.choice(h.data.version_files())
                victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
                found = h.cli("verify", "--data-dir", str(h.data.root))
                fixed = h.cli("verify", "--data-dir", str(h.data.root), "--repair")
                refused = found.code == 1 and victim.name in found.stdout and fixed.code == 1
                note = "truncated Parquet: verify, --repair, --full-refresh"
            else:
                Path(state_files(h.data)[0]).write_bytes(b"garbage")
                first = h.sync()
                said = first.stderr.strip().splitlines()
                refused = first.code == 2 and len(said) == 1 and "--full-refresh" in said[0]
                note = "corrupt state: exit 2, then --full-refresh"
            run = h.sync("--full-refresh")
            if index % 2:
                run = h.sync()  # and the state the full refresh wrote reads back
            trial = h.trial(run, note=note)
            if not refused:
                trial.lost += 1
            results.append(trial)
    return Row(
        "corrupt Parquet file / corrupt state",
        results,
        refusal="verify exit 1 / sync exit 2 with the repair path",
    )


def concurrent_writers(trials: int) -> Row:
    """A second sync while one runs: exit 2 with a clear message; a killed holder's lock is
    recovered at once. The first sync's listings are held until it is killed, so it is
    still running when the second one starts, however slow the machine."""
    results = []
    with harness(12) as h:
        h.seed(images=20)
        for _ in range(trials):
            h.mutate(4)
            with held_listings(h.emulator), h.started(h.args()) as first:
                read_until(first, "listing images")
                second = h.sync()
            after_kill = h.sync()  # the killed holder's lock must not block this
            trial = h.trial(after_kill, note=f"second writer: exit {second.code}")
            if second.code != 2 or "another image-versions process" not in second.stderr:
                trial.lost += 1
            results.append(trial)
    return Row(
        "two writers on one data dir; stale lock after SIGKILL",
        results,
        refusal="the second exits 2: another process is writing",
    )


def overlapping_sources(trials: int) -> Row:
    """Four sources naming one account, synced over and over, two processes at once and
    SIGKILLs in between: every observed state stays stored once (invariant 14)."""
    results = []
    with harness(17) as h:
        h.seed(images=16)
        config = h.workdir / "overlapping.toml"
        config.write_text(
            "".join(
                f'[sources.s{n}]\nendpoint_url = "{h.endpoint}"\nregions = ["{REGION}"]\n'
                for n in range(4)
            )
        )
        args = ["sync", "--data-dir", str(h.data.root), "--config", str(config), "--wait", "120"]
        for index in range(trials):
            h.mutate(5)
            if index % 3 == 1:
                h.kill_at(args, PHASE_MARKERS["parquet write"], h.rng.uniform(0, 0.02))
            with h.started(args):  # a second process of the same sources, killed at the end
                run = h.cli(*args)
            run = h.cli(*args)
            trial = h.trial(run, note=f"sync {index}")
            trial.duplicates += stored_copies(h)
            results.append(trial)
    return Row("four sources naming one account; two processes; kills", results)


def stored_copies(h: Harness) -> int:
    """Stored version rows beyond the distinct observed states (must be 0)."""
    glob = str(h.data.versions_dir / "**" / "*.parquet")
    with duckdb.connect(str(h.data.warehouse_path), read_only=True) as connection:
        distinct = connection.execute("SELECT count(*) FROM image_version_history").fetchone()
        raw = connection.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()
    assert raw is not None and distinct is not None
    return int(raw[0]) - int(distinct[0])


BAD_INPUTS: list[list[str]] = [
    ["--concurrency", "0"],
    ["--concurrency", "x"],
    ["--concurrency", "65"],
    ["--max-rps", "0"],
    ["--max-rps", "nan"],
    ["--lookback-minutes", "-1"],
    ["--max-attempts", "0"],
    ["--retry-mode", "chaotic"],
    ["--region", "nowhere"],
    ["--image", "bad name"],
    ["--image", "-leading-dash"],
    ["--endpoint-url", "ftp://x"],
    ["--config", "/nonexistent/image-versions.toml"],
    ["--source", "nope"],
    ["--wait", "-3"],
    ["--unknown-flag"],
]


def bad_input(trials: int) -> Row:
    """Every flag with an invalid value, bad config and data dirs, SQL errors: exit 2, one
    line, no traceback, nothing written."""
    results = []
    with harness(13) as h:
        bad_config = h.workdir / "bad.toml"
        bad_config.write_text("[sources.x\n")
        foreign = h.workdir / "photos"
        foreign.mkdir()
        (foreign / "a.jpg").write_bytes(b"x")
        a_file = h.workdir / "a-file"
        a_file.write_text("x")
        sync = ["sync", "--data-dir", str(h.data.root), "--endpoint-url", h.server.url]
        cases = [[*sync, *flags] for flags in BAD_INPUTS] + [
            [*sync, "--config", str(bad_config)],
            ["sync", "--data-dir", str(foreign), "--endpoint-url", h.server.url],
            ["sync", "--data-dir", str(a_file), "--endpoint-url", h.server.url],
            ["query", "SELEC 1", "--data-dir", str(h.data.root)],
            ["query", "SELECT 1", "--data-dir", str(h.data.root), "--format", "xml"],
            ["status", "--data-dir", str(h.workdir / "missing")],
        ]
        for args in cases[: max(trials, len(cases))]:
            run = h.cli(*args)
            lines = run.stderr.strip().splitlines()
            clean = run.code == 2 and len(lines) == 1 and "Traceback" not in run.stderr
            written = h.data.root.exists() or sorted(p.name for p in foreign.iterdir()) != ["a.jpg"]
            results.append(
                Trial(
                    0 if clean else 1,
                    0,
                    run.code,
                    run.message,
                    note=" ".join(args[4:] if args[0] == "sync" else args[:2]),
                )
            )
            if written:
                results[-1].lost += 1
    return Row(
        "bad input (flags, config, data dirs, SQL)",
        results,
        refusal="exit 2, one line, nothing written",
    )


def planted_secrets(trials: int) -> Row:
    """Credentials never reach logs, Parquet, state, the warehouse or Dagster's storage."""
    results = []
    with harness(14) as h:
        h.seed(images=6)
        h.env.update(AWS_SECRET_ACCESS_KEY=PLANTED_SECRET, AWS_SESSION_TOKEN=PLANTED_TOKEN)
        for _ in range(trials):
            h.mutate(3)
            run = h.sync("-vv")
            found = [
                str(p)
                for p in h.workdir.rglob("*")
                if p.is_file()
                and (
                    PLANTED_SECRET.encode() in p.read_bytes()
                    or PLANTED_TOKEN.encode() in p.read_bytes()
                )
                and p.name != "aws-config"
            ]
            leaked = PLANTED_SECRET in run.stdout + run.stderr or PLANTED_TOKEN in (
                run.stdout + run.stderr
            )
            trial = h.trial(run, note=f"files with a secret: {found}; in logs: {leaked}")
            trial.lost += len(found) + leaked
            results.append(trial)
    return Row("planted credentials never stored or logged", results)


def safe_defaults(trials: int) -> Row:
    """The emulator binds to loopback unless asked; `query` cannot change the warehouse."""
    results = []
    with harness(16) as h:
        h.seed(images=4)
        h.sync()
        for _ in range(trials):
            with EmulatorServer() as spare:
                loopback = spare.url.startswith("http://127.0.0.1:")
            attempts = [
                h.cli("query", sql, "--data-dir", str(h.data.root))
                for sql in ("DROP VIEW image_versions", "CREATE TABLE t AS SELECT 1")
            ]
            refused = all(a.code == 2 and "read-only" in a.stderr for a in attempts)
            trial = h.trial(h.sync(), note=f"loopback={loopback}, writes refused={refused}")
            trial.lost += (not loopback) + (not refused)
            results.append(trial)
    return Row("loopback emulator; read-only query", results)


def soak(cycles: int) -> Row:
    """Random sync / mutate / reconcile / compact cycles with kills mixed in."""
    actions: dict[str, int] = {}
    with harness(15) as h:
        h.seed(images=15)
        for _ in range(cycles):
            action = h.rng.choices(
                ["mutate", "sync", "reconcile", "compact", "kill"], [4, 3, 1, 1, 1]
            )[0]
            actions[action] = actions.get(action, 0) + 1
            if action == "mutate":
                h.mutate(h.rng.randint(1, 6))
                if h.rng.random() < 0.2:
                    versions = h.emulator.live_versions(REGION)
                    if versions:
                        v = h.rng.choice(versions)
                        h.emulator.delete_image_version(v["ImageName"], v["Version"], region=REGION)
            elif action == "sync":
                h.sync()
            elif action == "reconcile":
                h.sync("--reconcile")
            elif action == "compact" and h.data.is_ours():
                h.cli("compact", "--data-dir", str(h.data.root))
            elif action == "kill":
                h.kill_at(h.args("--reconcile"), None, h.rng.uniform(0.2, 1.2))
        final = h.sync("--reconcile")
        trial = h.trial(final, note=str(actions))
        partitions = {p.parent for p in h.data.version_files()}
        files = len(h.data.version_files())
        if files > len(partitions) * (AUTO_COMPACT_FILES + 1):
            trial.lost += 1
        trial.note += f"; {files} files in {len(partitions)} partitions"
    return Row(f"soak: {cycles} random cycles with kills", [trial])


# ------------------------------------------------------------------ the matrix

RowFactory = Callable[[int], "Row | list[Row]"]
MATRIX: list[tuple[str, RowFactory, int, int]] = [
    # key, factory, quick trials, full trials
    ("sigkill", sigkill, 15, 50),
    *DAGSTER_MATRIX,
    (
        "throttle_30",
        faulty_source(
            "30% of calls throttled", lambda h: setattr(h.emulator.faults, "throttle_rate", 0.3)
        ),
        1,
        5,
    ),
    (
        "throttle_burst",
        faulty_source("bursts of 50 consecutive throttles", burst_of_throttles),
        1,
        5,
    ),
    ("throttle_20rps", throttled_20_rps, 1, 3),
    (
        "http_500",
        faulty_source("5% HTTP 500s", lambda h: setattr(h.emulator.faults, "error_rate", 0.05)),
        1,
        5,
    ),
    (
        "latency_spikes",
        faulty_source(
            "latency spikes of 2 s",
            lambda h: (
                setattr(h.emulator.faults, "spike_rate", 0.03),
                setattr(h.emulator.faults, "spike_s", 2.0),
            ),
        ),
        1,
        3,
    ),
    ("deleted_mid_sync", deleted_mid_sync, 1, 5),
    ("mid_pagination", changed_mid_pagination, 1, 5),
    (
        "expired_token",
        faulty_source(
            "expired or invalid NextToken (30% of paged calls)",
            lambda h: setattr(h.emulator.faults, "token_expiry_rate", 0.3),
            "--full-refresh",
        ),
        1,
        5,
    ),
    ("clock_skew", clock_skew, 1, 5),
    ("regions", regions_failing, 2, 6),
    ("malformed", malformed, 1, 3),
    ("disk_full", disk_full, 1, 3),
    ("corrupt", corrupt_files, 2, 6),
    ("concurrency", concurrent_writers, 1, 5),
    ("overlapping_sources", overlapping_sources, 2, 30),
    ("bad_input", bad_input, 1, 1),
    ("secrets", planted_secrets, 1, 3),
    ("safe_defaults", safe_defaults, 1, 1),
    ("soak", soak, 10, 300),
    *HOSTILE_MATRIX,
    *MODES_MATRIX,
]


def run_row(key: str, quick: bool) -> list[Row]:
    for name, factory, quick_trials, full_trials in MATRIX:
        if name == key:
            started = time.monotonic()
            made = factory(quick_trials if quick else full_trials)
            rows = made if isinstance(made, list) else [made]
            for row in rows:
                row.seconds = round((time.monotonic() - started) / len(rows), 1)
            return rows
    raise KeyError(key)


def print_table(rows: list[Row]) -> None:
    header = f"{'fault':62} {'trials':>6} {'lost':>5} {'dups':>5} {'exit':>8}  result"
    print(header)
    print("-" * len(header))
    for row in rows:
        statuses = ",".join(str(s) for s in sorted({t.exit_status for t in row.trials}, key=str))
        lost = sum(t.lost for t in row.trials)
        dups = sum(t.duplicates for t in row.trials)
        verdict = ("ok" if not row.refusal else "ok (clear refusal)") if row.ok else "FAIL"
        print(
            f"{row.fault[:62]:62} {len(row.trials):>6} {lost:>5} {dups:>5} {statuses:>8}  {verdict}"
        )
        for name, value in row.details.items():
            print(f"    {name}: {value}")
        if not row.ok:
            for trial in row.trials:
                if trial.lost or trial.duplicates:
                    print(
                        f"    lost={trial.lost} dups={trial.duplicates} exit={trial.exit_status}"
                        f" {trial.note} | {trial.message}"
                    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's trial counts")
    parser.add_argument("--only", help="comma-separated row keys")
    parser.add_argument("--out", default="benchmarks/results/faults.json")
    args = parser.parse_args()
    keys = args.only.split(",") if args.only else [key for key, *_ in MATRIX]
    started = time.monotonic()
    rows: list[Row] = []
    for key in keys:
        rows += run_row(key, args.quick)
        print(f"... {key} done ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    print_table(rows)
    total = sum(len(row.trials) for row in rows)
    elapsed = time.monotonic() - started
    print(f"{total} trials in {elapsed:.0f} s; {sum(not r.ok for r in rows)} row(s) failing")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"seconds": round(elapsed, 1), "rows": [{**asdict(row), "ok": row.ok} for row in rows]},
            indent=1,
            default=str,
        )
    )
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

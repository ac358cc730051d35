"""The fault matrix's hostile rows: a SageMaker that answers wrongly (tests/hostile.py), and
signals, against real `image-versions` processes.

Each row counts rows lost and duplicated against the source like every other row, and adds
one to `lost` for each promise broken on the way: a traceback on stderr, a wrong exit status,
a failing image not named, a false tombstone, a call that outlived its bound, a leaked
password.
"""

from __future__ import annotations

import itertools
import math
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipeline.defaults import READ_TIMEOUT_S
from tests.fault_harness import Harness, Row, Run, harness, read_until
from tests.hostile import HostileProxy, Misbehaviour, Plan, aimed_at, body, rewrite
from tests.support import REGION, stored_states

ACCOUNT = "123456789012"
VERSION_DAMAGE: list[tuple[str, Any]] = [
    ("ImageArn", f"arn:aws:sagemaker:{REGION}:1234567890123:image/x"),
    ("ImageArn", f"arn:aws:sagemaker:{REGION}:../../etc:image/x"),
    ("ImageArn", f"arn:aws:sagemaker:{REGION}:12/456789012:image/x"),
    ("ImageArn", f"arn:aws:sagemaker:{REGION}:%2e%2e:image/x"),
    ("ImageArn", f"arn:aws:sagemaker:../{REGION}:{ACCOUNT}:image/x"),
    ("ImageArn", f"arn:aws:sagemaker:us east 1:{ACCOUNT}:image/x"),
    ("LastModifiedTime", "garbage"),
    ("LastModifiedTime", ""),
    ("LastModifiedTime", {}),
    ("LastModifiedTime", math.nan),
    ("LastModifiedTime", math.inf),
    ("LastModifiedTime", 1e20),
    ("LastModifiedTime", -1e11),
    ("LastModifiedTime", True),
    ("Version", "5"),
    ("Version", 5.9),
    ("Version", True),
    ("ImageVersionStatus", 7),
]
CATALOGUE_DAMAGE: list[tuple[str, Any]] = [
    ("ImageArn", f"arn:aws:sagemaker:{REGION}:123:image/x"),
    ("LastModifiedTime", "yesterday"),
    ("ImageStatus", ["CREATED"]),
]
UNNAMED = ("ImageName", "no such/name")
PASSWORD = "PLANTEDurlPASSWORD42"


@contextmanager
def hostile(h: Harness, plan: Plan) -> Iterator[HostileProxy]:
    """`h`'s syncs go through a hostile proxy for the block."""
    with HostileProxy(h.server.url, plan) as proxy:
        h.endpoint = proxy.url
        try:
            yield proxy
        finally:
            h.endpoint = h.server.url


def broken_promises(run: Run, *, code: int, named: Sequence[str] = ()) -> int:
    """One per promise `run` broke: a traceback, another exit status, an image not named."""
    failed = [line for line in run.stderr.splitlines() if line.startswith("FAILED")]
    unnamed = [name for name in named if not any(f"image {name}:" in line for line in failed)]
    return ("Traceback" in run.stderr) + (run.code != code) + len(unnamed)


def deleted_transitions(h: Harness) -> int:
    """Deletions `image_version_changes` recorded: a false one stays there forever."""
    with duckdb.connect(str(h.data.warehouse_path), read_only=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM image_version_changes WHERE to_status = 'DELETED'"
        ).fetchone()
    return int(row[0]) if row else 0


def watermarks(h: Harness) -> dict[str, Any]:
    """image -> watermark, from the committed state file."""
    return {state.image_name: state.watermark_ms for state in stored_states(h.data).values()}


def _damage_versions(cases: dict[str, tuple[str, Any]]) -> Callable[[dict[str, Any]], None]:
    def change(answer: dict[str, Any]) -> None:
        for version in answer.get("ImageVersions", []):
            case = cases.get(version["ImageArn"].rsplit("/", 1)[1])
            if case is not None and version is answer["ImageVersions"][-1]:
                version[case[0]] = case[1]

    return change


def hostile_records(trials: int) -> Row:
    """Malformed records (odd ARN parts, timestamps that do not parse, wrong JSON types) in
    ListImageVersions and ListImages: each fails only its image, by name, with exit 1; a known
    image is never taken as deleted because its record is bad; the rest commits."""
    results = []
    with harness(21) as h:
        h.seed(images=len(VERSION_DAMAGE) + len(CATALOGUE_DAMAGE) + 4)
        h.sync()
        names = sorted(h.emulator.image_names(REGION))
        version_cases = dict(zip(names, VERSION_DAMAGE, strict=False))
        rest = names[len(version_cases) :]
        catalogue_cases = dict(zip(rest, [*CATALOGUE_DAMAGE, UNNAMED], strict=False))
        for index in range(trials):
            before = watermarks(h)

            def plan(operation: str, params: dict[str, Any]) -> Misbehaviour | None:
                if operation == "ListImageVersions":
                    return rewrite(_damage_versions(version_cases))
                if operation == "ListImages":
                    return rewrite(damage_catalogue)
                return None

            def damage_catalogue(answer: dict[str, Any]) -> None:
                for image in answer.get("Images", []):
                    case = catalogue_cases.get(image["ImageName"])
                    if case is not None:
                        image[case[0]] = case[1]

            with hostile(h, plan):
                run = h.sync("--reconcile" if index % 2 == 0 else "--full-refresh")
            named = [*version_cases, *(n for n, c in catalogue_cases.items() if c != UNNAMED)]
            broken = broken_promises(run, code=1, named=named)
            broken += "names no valid image" not in run.stderr
            after = watermarks(h)
            moved = [n for n in named if after.get(n) != before.get(n)]
            trial = h.trial(run, note=f"{len(named)} damaged images; watermarks moved: {moved}")
            trial.lost += broken + len(moved) + deleted_transitions(h)
            results.append(trial)
    return Row("hostile: malformed records fail only their image", results)


def non_api_answers(trials: int) -> Row:
    """A 200 that is not the API's answer (a captive portal's HTML, `{}`) deletes nothing: the
    region (or image) fails, exit 1, no tombstone, no false DELETED transition."""
    results = []
    cases: list[tuple[str, str, Misbehaviour, tuple[str, ...]]] = [
        ("ListImages", "HTML page", body(b"<html><body>Please log in</body></html>"), ()),
        ("ListImages", "{}", body(b"{}", "application/x-amz-json-1.1"), ()),
        ("ListImageVersions", "{} (reconcile)", body(b"{}", "application/x-amz-json-1.1"), ()),
        ("ListImageVersions", "HTML (full refresh)", body(b"<html/>"), ("--full-refresh",)),
    ]
    with harness(22) as h:
        h.seed(images=8)
        h.sync()
        victim = sorted(h.emulator.image_names(REGION))[0]
        for index in range(max(trials, len(cases))):
            operation, label, misbehaviour, extra = cases[index % len(cases)]

            with hostile(h, aimed_at(operation, misbehaviour, victim)):
                run = h.sync(*(extra or ("--reconcile",)))
            named = [victim] if operation == "ListImageVersions" else []
            trial = h.trial(run, note=f"{operation} answered {label}")
            trial.lost += broken_promises(run, code=1, named=named) + deleted_transitions(h)
            results.append(trial)
    return Row("hostile: a 200 that is not the API's answer deletes nothing", results)


def endless_answers(trials: int) -> Row:
    """A NextToken that never changes (ListImages, ListImageVersions), an answer trickled a
    byte at a time, and silence: each fails its region or image within its bound.

    A bound is some call deadlines (`--call-timeout`) plus a few times the pace of a whole
    sync measured on this machine just before: far below what an unbounded call takes (the
    trickle needs minutes, the silence never ends), and no tighter when the machine is busy.
    """
    results = []
    timeout = 2.0
    cases: list[tuple[str, str, Misbehaviour, int]] = [
        # operation, what it does, the misbehaviour, call deadlines it may cost
        ("ListImageVersions", "the same NextToken forever", Misbehaviour("loop"), 2),
        ("ListImages", "the same NextToken forever", Misbehaviour("loop"), 2),
        ("ListImageVersions", "one byte every 0.5 s", Misbehaviour("trickle", seconds=0.5), 4),
        ("ListImageVersions", "silence", Misbehaviour("silent"), 4),
    ]
    with harness(23) as h:
        h.seed(images=8)
        started = time.monotonic()
        h.sync()
        pace = time.monotonic() - started
        victim = sorted(h.emulator.image_names(REGION))[-1]
        for index in range(max(trials, len(cases))):
            operation, label, misbehaviour, deadlines = cases[index % len(cases)]
            bound = deadlines * timeout + 4 * pace

            started = time.monotonic()
            with hostile(h, aimed_at(operation, misbehaviour, victim)):
                run = h.sync("--call-timeout", str(timeout), timeout=600)
            seconds = time.monotonic() - started
            named = [victim] if operation == "ListImageVersions" else []
            trial = h.trial(run, note=f"{operation}: {label}; {seconds:.1f} s of {bound:.1f}")
            trial.lost += broken_promises(run, code=1, named=named) + (seconds > bound)
            results.append(trial)
    return Row("hostile: endless answers end within their bound", results)


def stopped_by_signal(trials: int) -> Row:
    """SIGTERM or SIGINT while a worker is stuck in a silent call (default deadline, 120 s):
    the process stops within 5 s with 143 or 130, keeps the images it finished, releases the
    lock, and a normal re-run converges."""
    results = []
    with harness(24) as h:
        h.seed(images=8)
        victim = sorted(h.emulator.image_names(REGION))[0]
        for index in range(trials):
            h.mutate(4)
            shutil.rmtree(h.data.root, ignore_errors=True)  # every state is this run's
            signum = (signal.SIGTERM, signal.SIGINT)[index % 2]

            images = len(h.emulator.image_names(REGION))
            silent = aimed_at("ListImageVersions", Misbehaviour("silent"), victim)
            with hostile(h, silent) as proxy, h.started(h.args()) as process:
                waited = _wait_until_quiet(proxy, images)
                process.send_signal(signum)
                sent = time.monotonic()
                try:
                    _, err = process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    _, err = process.communicate()
                seconds = time.monotonic() - sent
            kept = len(watermarks(h).keys() - {victim})
            started = time.monotonic()
            rerun = h.sync()  # no --wait: the lock must be free
            # Stopping takes a commit and an exit: within 5 s, or twice a whole sync's time
            # when the machine is busier than that (the stuck call alone would take 120 s).
            bound = max(5.0, 2 * (time.monotonic() - started))
            trial = h.trial(
                rerun,
                note=f"{signum.name}: exit {process.returncode} after {seconds:.2f} s "
                f"(bound {bound:.1f} s), {kept} of {images - 1} images kept, quiet: {waited}",
            )
            trial.lost += (
                (not waited)
                + (process.returncode != 128 + signum)
                + (seconds > bound)
                + ("Traceback" in err)
                + (kept < images - 1)
                + (rerun.code != 0)
            )
            results.append(trial)
    return Row("SIGTERM/SIGINT with a worker stuck in a call", results)


PROGRESS_IMAGES = 4
"""The images a slow sync in `progress_kept` gets answers for; the rest meet silence."""
COMMITTED = "state committed"
"""What a sync logs (with -v) once a commit is durable."""


def _answering_only_first(images: int, misbehaviour: Misbehaviour) -> Plan:
    """A plan: ListImageVersions calls of the first `images` images listed meet
    `misbehaviour`; those of any later image are never answered."""
    answered: set[str] = set()

    def plan(operation: str, params: dict[str, Any]) -> Misbehaviour | None:
        if operation != "ListImageVersions":
            return None
        name = str(params.get("ImageName"))
        if name in answered or len(answered) < images:
            answered.add(name)
            return misbehaviour
        return Misbehaviour("silent")

    return plan


def progress_kept(trials: int) -> Row:
    """A slow sync SIGKILLed mid-run keeps what it committed on the way (commits every
    --commit-every seconds), and a re-run converges.

    Events, not the clock, place the kill: the first images are answered slowly enough that
    a periodic commit falls among them, every later image waits on silence, and the kill
    follows the run's own "state committed" line; so the kill lands after a commit and
    before the end on a machine of any speed.
    """
    results = []
    with harness(25) as h:
        h.seed(images=16)
        for _ in range(trials):
            h.mutate(4)
            shutil.rmtree(h.data.root, ignore_errors=True)  # every commit is this run's

            slow = Misbehaviour("delay", seconds=0.25)  # 4 images take 2 commit intervals
            args = h.args("--concurrency", "1", "--commit-every", "0.5", "--full-refresh")
            with (
                hostile(h, _answering_only_first(PROGRESS_IMAGES, slow)),
                h.started(args) as process,
            ):
                committed = read_until(process, COMMITTED)
            kept = sum(w is not None for w in watermarks(h).values())
            trial = h.trial(h.sync(), note=f"{kept} images committed before the kill")
            killed_mid_run = process.returncode == -signal.SIGKILL and COMMITTED in committed
            trial.lost += (kept == 0) + (not killed_mid_run)
            results.append(trial)
    return Row("SIGKILL of a slow sync keeps its periodic commits", results)


def _wait_until_quiet(proxy: HostileProxy, calls: int) -> bool:
    """Wait until `proxy` has had at least `calls` ListImageVersions calls and then no new
    request for a while (every image but the stuck one is done); False after 120 s.

    The while is the run's own pace: five times the longest gap between two of its listings
    (at least 1 s), so a busy machine's slower listings are not taken for the end; and less
    than the silence after which the stuck call is tried again (a new request)."""
    deadline = time.monotonic() + 120
    arrivals: list[float] = []
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        requests = list(proxy.requests)
        if len(requests) != seen:
            seen, since = len(requests), time.monotonic()
            listed = sum(op == "ListImageVersions" for op, _ in requests)
            while len(arrivals) < min(listed, calls):  # the pace until all were listed
                arrivals.append(since)
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        quiet = min(max(1.0, 5 * max(gaps, default=0.0)), READ_TIMEOUT_S / 2)
        if len(arrivals) >= calls and time.monotonic() - since >= quiet:
            return True
        time.sleep(0.05)
    return False


def secret_in_url(trials: int) -> Row:
    """A password inside the endpoint URL never shows: not in messages, `--json`, state,
    `status` or logs, whether the endpoint is unreachable or one image's call fails."""
    results = []
    with harness(26) as h:
        h.seed(images=6)
        victim = sorted(h.emulator.image_names(REGION))[0]

        plan = aimed_at("ListImageVersions", Misbehaviour("drop"), victim)
        for _ in range(trials):
            h.mutate(3)
            with hostile(h, plan) as proxy:
                h.endpoint = proxy.url.replace("http://", f"http://user:{PASSWORD}@")
                failing = h.sync("--max-attempts", "1", "--json", "-v")
                status = h.cli("status", "--data-dir", str(h.data.root))
                h.endpoint = f"http://user:{PASSWORD}@127.0.0.1:9"
                unreachable = h.sync()
            outputs = [failing, status, unreachable]
            leaks = sum(PASSWORD in run.stdout + run.stderr for run in outputs)
            stored = [
                p.name
                for p in h.data.root.rglob("*")
                if p.is_file() and PASSWORD.encode() in p.read_bytes()
            ]
            trial = h.trial(
                h.sync(),
                note=f"exits {failing.code}/{unreachable.code}; leaks {leaks}; files {stored}",
            )
            trial.lost += leaks + len(stored) + (failing.code != 1) + (unreachable.code != 2)
            trial.lost += "***@" not in failing.stdout  # --json: the failures are in its JSON
            results.append(trial)
    return Row("hostile: a password in the endpoint URL never shows", results)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def planted_files(trials: int) -> Row:
    """Links planted under the data dir, a garbage warehouse, and `query` reaching out: the
    data dir is never left (exit 2, one line, nothing outside changed), derived files heal."""
    results = []
    with harness(27) as h:
        h.seed(images=6)
        h.sync()
        outside = h.workdir / "outside"
        outside.mkdir()
        (outside / "sentinel.txt").write_text("not yours")
        shutil.copy(h.data.version_files()[0], outside / "sentinel.parquet")
        data = str(h.data.root)
        month = h.data.version_files()[0].parent
        cases: list[tuple[str, Path, list[str], int]] = [
            ("_tmp linked outside", h.data.root / "_tmp", ["sync"], 2),
            ("_state linked outside", h.data.root / "_state", ["sync"], 2),
            ("a month= partition linked outside", month, ["compact", "--data-dir", data], 2),
            ("images/ linked outside", h.data.root / "images", ["verify", "--data-dir", data], 2),
        ]
        queries = [
            f"COPY (SELECT 1 AS x) TO '{month}/planted.parquet'",
            f"SELECT * FROM read_text('{outside}/sentinel.txt')",
            f"SELECT * FROM glob('{outside}/*')",
            "INSTALL httpfs",
        ]
        for index in range(max(trials, len(cases) + len(queries) + 1)):
            before = _snapshot(outside)
            if index < len(cases):
                label, planted, command, code = cases[index]
                aside = h.workdir / "aside"
                planted.rename(aside)
                planted.symlink_to(outside, target_is_directory=True)
                run = h.sync() if command == ["sync"] else h.cli(*command)
                planted.unlink()
                aside.rename(planted)
            elif index < len(cases) + len(queries):
                label = queries[index - len(cases)]
                run, code = h.cli("query", label, "--data-dir", data), 2
            else:
                label, code = "garbage warehouse.duckdb, then a sync", 0
                h.data.warehouse_path.write_bytes(b"garbage" * 100)
                run = h.sync()
            lines = run.stderr.strip().splitlines()
            broken = (run.code != code) + (code == 2 and len(lines) != 1)
            changed = _snapshot(outside) != before
            planted_inside = [p.name for p in h.data.root.rglob("planted*")]
            trial = h.trial(h.sync(), note=f"{label}: exit {run.code} {lines[-1:]}")
            trial.lost += broken + changed + len(planted_inside)
            results.append(trial)
    return Row("planted links, garbage warehouse, query reaching out", results)


HOSTILE_MATRIX: list[tuple[str, Callable[[int], Row], int, int]] = [
    # key, factory, quick trials, full trials
    ("hostile_records", hostile_records, 1, 4),
    ("non_api_answers", non_api_answers, 4, 8),
    ("endless_answers", endless_answers, 4, 8),
    ("signals", stopped_by_signal, 2, 6),
    ("progress_kept", progress_kept, 1, 4),
    ("secret_url", secret_in_url, 1, 3),
    ("planted_files", planted_files, 9, 9),
]

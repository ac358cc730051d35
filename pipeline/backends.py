"""Where a dataset's files live: a local directory or an S3 prefix, behind one small interface.

`DataDir` (storage.py) holds all the dataset logic and calls only these primitives. Paths are
`PurePath`s: absolute local paths, or `bucket/key` for S3 (pyarrow's S3 path form).

The two stores make a file visible whole in different ways:

- local: written to `_tmp/`, fsynced, renamed into place, directory fsynced (rename is atomic
  within one filesystem);
- S3: one PutObject per file under its final name. S3 has no rename, but a PUT is all or
  nothing: the object appears complete when the request succeeds and not at all otherwise.
  (A multipart upload is avoided on purpose: an upload completed while handling an error
  could publish a truncated file.)

Reading and listing go through pyarrow's filesystem layer for both (`Store.filesystem`, paths
as `str(path)`); S3 writes, deletes and the lock (s3lock.py) go through boto3.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from filelock import FileLock, Timeout

from .aws_errors import AwsErrorKind, AwsFailure, aws_errors_as
from .errors import ConfigError, StoreError, WriterBusy

__all__ = ["LOCK_TTL_ENV", "S3_SCHEME", "LocalStore", "S3Store", "Store", "parse_s3_uri"]

S3_SCHEME = "s3://"
LOCK_TTL_ENV = "IMAGE_VERSIONS_S3_LOCK_SECONDS"
DEFAULT_LOCK_TTL_S = 60.0
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_KEY_PART = re.compile(r"[A-Za-z0-9!_.*'()=-]+\Z")

Writer = Callable[[Any], None]
"""Writes a file's bytes to the pyarrow output stream it is given."""


def _busy(location: str) -> WriterBusy:
    return WriterBusy(
        f"another image-versions process is writing to {location}; "
        "wait for it to finish and run again"
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create `path` and its missing parents, making each new directory entry durable."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        _fsync_dir(directory.parent)


def _entries(directory: Path) -> Iterator[os.DirEntry[str]]:
    """Every entry under `directory`, depth first in name order, never descending into a
    symbolic link (none when `directory` is missing or not a directory)."""
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        yield entry
        if entry.is_dir(follow_symlinks=False):
            yield from _entries(Path(entry.path))


def _glob_match(relative: PurePath, pattern: str) -> bool:
    parts = pattern.split("/")
    return len(relative.parts) == len(parts) and all(
        fnmatch.fnmatchcase(part, want) for part, want in zip(relative.parts, parts, strict=True)
    )


def _listed(
    filesystem: pafs.FileSystem, directory: PurePath, kind: pafs.FileType, *, recursive: bool
) -> list[PurePath]:
    """The entries of `kind` under `directory` (none when it does not exist), sorted."""
    selector = pafs.FileSelector(str(directory), recursive=recursive, allow_not_found=True)
    return sorted(
        PurePath(info.path) for info in filesystem.get_file_info(selector) if info.type == kind
    )


class Store(ABC):
    """The filesystem primitives a dataset needs; `DataDir` holds the logic above them."""

    @property
    @abstractmethod
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem that reads this store's paths (as `str(path)`)."""

    @abstractmethod
    def uri(self, root: PurePath) -> str:
        """How the user names the dataset at `root` (messages, and what --data-dir takes)."""

    @abstractmethod
    def local_dir(self, root: PurePath) -> Path:
        """The local directory that holds the dataset's DuckDB warehouse file."""

    @abstractmethod
    def check_reachable(self, root: PurePath) -> None:
        """ConfigError when the place that should hold the dataset cannot be reached."""

    @abstractmethod
    def make_dirs(self, directories: Sequence[PurePath]) -> None:
        """Create directories durably, in order (S3 has none: nothing to do)."""

    @abstractmethod
    def touch(self, path: PurePath, data: bytes) -> None:
        """Write a small file whose existence is what counts (a marker, a probe)."""

    def check_writable(self, directories: Sequence[PurePath], tmp_dir: PurePath) -> None:
        """OSError unless new files can be written under `directories`: a probe file is
        written to `tmp_dir`, where a leftover is cleaned up by the next writer, and
        deleted."""
        probe = tmp_dir / f".probe-{uuid.uuid4().hex}"
        self.touch(probe, b"")
        self.delete([probe])

    @abstractmethod
    def publish(self, final: PurePath, write: Writer, tmp_dir: PurePath) -> None:
        """Write a file so that it appears at `final` complete or not at all."""

    @abstractmethod
    def lock(self, root: PurePath, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        """Hold the writer lock of `root` (the dataset, or one target's directory in it);
        ConfigError when another writer holds it."""

    @abstractmethod
    def is_file(self, path: PurePath) -> bool: ...

    @abstractmethod
    def is_dir(self, path: PurePath) -> bool:
        """A directory, which keeps a file of the same name from being written."""

    def first_symlink(self, root: PurePath) -> PurePath | None:
        """The first symbolic link under `root`, relative to it (S3 has none)."""
        return None

    @abstractmethod
    def has_entries(self, path: PurePath) -> bool:
        """A directory with anything in it (S3: a prefix with objects under it)."""

    @abstractmethod
    def files(self, directory: PurePath) -> list[PurePath]:
        """Every file under `directory`, at any depth, sorted (none when it does not exist)."""

    def subdirs(self, directory: PurePath) -> list[PurePath]:
        """The directories (S3: prefixes) directly under `directory`, sorted."""
        return _listed(self.filesystem, directory, pafs.FileType.Directory, recursive=False)

    def glob(self, directory: PurePath, pattern: str) -> list[PurePath]:
        """The files under `directory` whose relative path matches `pattern` part by part."""
        return [p for p in self.files(directory) if _glob_match(p.relative_to(directory), pattern)]

    @abstractmethod
    def read_bytes(self, path: PurePath) -> bytes: ...

    @abstractmethod
    def delete(self, paths: Sequence[PurePath]) -> None:
        """Delete files, durably (missing ones are fine)."""

    @abstractmethod
    def move(self, source: PurePath, target: PurePath) -> None:
        """Move a file within this store, overwriting `target`."""


@dataclass(frozen=True)
class LocalStore(Store):
    """A local directory: fsync + atomic rename, and an OS lock that dies with its process."""

    @cached_property
    def filesystem(self) -> pafs.FileSystem:
        return pafs.LocalFileSystem()

    def uri(self, root: PurePath) -> str:
        return str(root)

    def local_dir(self, root: PurePath) -> Path:
        return Path(root)

    def check_reachable(self, root: PurePath) -> None:
        """Always reachable; `prepare` reports what cannot be created or written."""

    def make_dirs(self, directories: Sequence[PurePath]) -> None:
        for directory in directories:
            make_dirs(Path(directory))

    def touch(self, path: PurePath, data: bytes) -> None:
        Path(path).write_bytes(data)

    def check_writable(self, directories: Sequence[PurePath], tmp_dir: PurePath) -> None:
        # Asked, not probed, outside `tmp_dir`: a probe left there by a kill would be a stray
        # file in the dataset. access() also answers EROFS for a read-only mount.
        for directory in directories:
            if Path(directory).is_dir() and not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(directory))
        super().check_writable(directories, tmp_dir)

    def publish(self, final: PurePath, write: Writer, tmp_dir: PurePath) -> None:
        tmp = Path(tmp_dir) / f"{uuid.uuid4().hex}.tmp"
        with pa.OSFile(str(tmp), "wb") as sink:
            write(sink)
        target = Path(final)
        make_dirs(target.parent)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)

    @contextlib.contextmanager
    def lock(self, root: PurePath, timeout_s: float) -> Iterator[None]:
        lock = FileLock(Path(root) / ".lock", timeout=timeout_s)
        try:
            lock.acquire()
        except Timeout as exc:
            raise _busy(self.uri(root)) from exc
        except OSError as exc:
            raise ConfigError(
                f"cannot take the writer lock {lock.lock_file}: {exc.strerror or exc}; the data "
                "dir must be writable"
            ) from exc
        try:
            yield
        finally:
            lock.release()

    def is_file(self, path: PurePath) -> bool:
        return Path(path).is_file()

    def is_dir(self, path: PurePath) -> bool:
        return Path(path).is_dir()

    def first_symlink(self, root: PurePath) -> PurePath | None:
        links = (entry.path for entry in _entries(Path(root)) if entry.is_symlink())
        first = next(links, None)
        return None if first is None else Path(first).relative_to(root)

    def has_entries(self, path: PurePath) -> bool:
        return Path(path).is_dir() and any(Path(path).iterdir())

    def subdirs(self, directory: PurePath) -> list[PurePath]:
        try:
            with os.scandir(directory) as listing:
                found = [Path(e.path) for e in listing if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(found)

    def files(self, directory: PurePath) -> list[PurePath]:
        # A second line of defence after DataDir.refuse_symlinks: a link is never listed, and
        # never descended into, so nothing outside the data dir is read, rewritten or deleted.
        if Path(directory).is_symlink():
            return []
        entries = _entries(Path(directory))
        return sorted(Path(entry.path) for entry in entries if entry.is_file(follow_symlinks=False))

    def read_bytes(self, path: PurePath) -> bytes:
        return Path(path).read_bytes()

    def delete(self, paths: Sequence[PurePath]) -> None:
        for path in paths:
            Path(path).unlink(missing_ok=True)
        for directory in sorted({Path(path).parent for path in paths}):
            if directory.is_dir():
                _fsync_dir(directory)

    def move(self, source: PurePath, target: PurePath) -> None:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


def _endpoint_from_env() -> str | None:
    """The S3 endpoint override boto3 would use from the environment (e.g. a local S3)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _lock_ttl_from_env() -> float:
    raw = os.environ.get(LOCK_TTL_ENV)
    if raw is None:
        return DEFAULT_LOCK_TTL_S
    try:
        ttl = float(raw)
    except ValueError:
        ttl = 0.0
    if not ttl > 0:
        raise ConfigError(f"{LOCK_TTL_ENV} must be a number of seconds above zero, not {raw!r}")
    return ttl


@dataclass(frozen=True)
class S3Store(Store):
    """An S3 bucket: pyarrow's S3 filesystem to read, one PutObject per file, a leased lock.

    Endpoint (AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL), region and credentials come from the
    standard AWS chain as boto3 resolves it; pyarrow is handed the same ones, so both speak to
    S3 as one identity.
    """

    endpoint_url: str | None = None
    lock_ttl_s: float = DEFAULT_LOCK_TTL_S
    _leases: dict[int, list[Any]] = field(default_factory=dict, compare=False, repr=False)
    """The leases held, per thread: a target's writes (all on its own thread) answer to its
    lease alone, so one target's lost lease never stops another's writes."""
    _filesystem: dict[Any, pafs.FileSystem] = field(default_factory=dict, compare=False, repr=False)
    """The S3 filesystem made for the credentials it holds (one entry at a time)."""
    _filesystem_lock: threading.Lock = field(
        default_factory=threading.Lock, compare=False, repr=False
    )

    @classmethod
    def from_env(cls) -> S3Store:
        return cls(endpoint_url=_endpoint_from_env(), lock_ttl_s=_lock_ttl_from_env())

    @cached_property
    def _session(self) -> Any:
        import boto3

        return boto3.session.Session()

    @cached_property
    def client(self) -> Any:
        return self._session.client("s3", endpoint_url=self.endpoint_url)

    @property
    def filesystem(self) -> pafs.FileSystem:
        """pyarrow's S3 filesystem with the chain's current credentials.

        pyarrow is handed keys, not the chain: temporary ones (a role, SSO) would expire under
        a long run. boto3 refreshes them before they expire, and a new filesystem is made
        whenever they changed."""
        credentials = self._session.get_credentials()
        if credentials is None:
            raise ConfigError("no AWS credentials found for S3 (see boto3's credential chain)")
        frozen = credentials.get_frozen_credentials()  # refreshed first when about to expire
        with self._filesystem_lock:
            if frozen not in self._filesystem:
                self._filesystem.clear()
                self._filesystem[frozen] = pafs.S3FileSystem(
                    access_key=frozen.access_key,
                    secret_key=frozen.secret_key,
                    session_token=frozen.token,
                    region=self.client.meta.region_name,
                    endpoint_override=self.endpoint_url,
                )
            return self._filesystem[frozen]

    def uri(self, root: PurePath) -> str:
        return S3_SCHEME + str(root)

    def local_dir(self, root: PurePath) -> Path:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(cache) / "image-versions" / "s3" / root

    def check_reachable(self, root: PurePath) -> None:
        bucket = root.parts[0]

        def problem(failure: AwsFailure) -> str:
            if failure.kind is AwsErrorKind.NOT_FOUND:
                return f"S3 bucket {bucket} does not exist; create it first"
            if failure.code is not None:
                return f"cannot use S3 bucket {bucket}: error {failure.code}"
            return f"cannot reach S3 for {self.uri(root)}: {failure.detail}"

        with aws_errors_as(ConfigError, problem):
            self.client.head_bucket(Bucket=bucket)

    def make_dirs(self, directories: Sequence[PurePath]) -> None:
        """S3 has no directories."""

    def touch(self, path: PurePath, data: bytes) -> None:
        self.put(path, data)

    def put(self, path: PurePath, body: bytes) -> str:
        """One PutObject; the new ETag. StoreError (an OSError) when it fails."""
        bucket, key = _split(path)
        with aws_errors_as(StoreError, f"S3 PutObject of {self.uri(path)} failed"):
            response = self.client.put_object(Bucket=bucket, Key=key, Body=body)
        return str(response["ETag"])

    def _check_leases(self) -> None:
        """Refuse to change the dataset once a lease this thread holds was taken over."""
        for lease in self._leases.get(threading.get_ident(), []):
            lease.check()

    def publish(self, final: PurePath, write: Writer, tmp_dir: PurePath) -> None:
        self._check_leases()
        sink = pa.BufferOutputStream()
        write(sink)
        self.put(final, sink.getvalue().to_pybytes())

    @contextlib.contextmanager
    def lock(self, root: PurePath, timeout_s: float) -> Iterator[None]:
        from .s3lock import S3Lease

        lease = S3Lease(self.client, *_split(root / ".lock"), ttl_s=self.lock_ttl_s)
        if not lease.acquire(timeout_s):
            raise _busy(self.uri(root))
        mine = self._leases.setdefault(threading.get_ident(), [])
        mine.append(lease)
        try:
            yield
        finally:
            mine.remove(lease)
            lease.release()

    def is_file(self, path: PurePath) -> bool:
        return bool(self.filesystem.get_file_info(str(path)).type == pafs.FileType.File)

    def is_dir(self, path: PurePath) -> bool:
        """Never: S3 has no directories, and a prefix does not keep a key of its name out."""
        return False

    def has_entries(self, path: PurePath) -> bool:
        selector = pafs.FileSelector(str(path), recursive=False, allow_not_found=True)
        return bool(self.filesystem.get_file_info(selector))

    def files(self, directory: PurePath) -> list[PurePath]:
        return _listed(self.filesystem, directory, pafs.FileType.File, recursive=True)

    def read_bytes(self, path: PurePath) -> bytes:
        with self.filesystem.open_input_stream(str(path)) as stream:
            return bytes(stream.read())

    def delete(self, paths: Sequence[PurePath]) -> None:
        # boto3, not pyarrow: pyarrow's delete_file leaves a marker object for the emptied
        # "directory" behind.
        self._check_leases()
        for start in range(0, len(paths), 1000):
            batch = [_split(path) for path in paths[start : start + 1000]]
            bucket = batch[0][0]
            with aws_errors_as(StoreError, f"S3 DeleteObjects in {S3_SCHEME}{bucket} failed"):
                response = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": key} for _, key in batch]}
                )
            if response.get("Errors"):
                raise StoreError(f"S3 DeleteObjects in {S3_SCHEME}{bucket}: {response['Errors']}")

    def move(self, source: PurePath, target: PurePath) -> None:
        self.put(target, self.read_bytes(source))
        self.delete([source])


def _split(path: PurePath) -> tuple[str, str]:
    return path.parts[0], "/".join(path.parts[1:])


def parse_s3_uri(uri: str) -> PurePath:
    """`s3://bucket/prefix` -> `bucket/prefix`; ConfigError for a malformed one."""
    rest = uri[len(S3_SCHEME) :].strip("/")
    parts = [part for part in rest.split("/") if part]
    if not parts or not _BUCKET.match(parts[0]):
        raise ConfigError(f"{uri!r} is not a valid S3 location; expected s3://BUCKET/PREFIX")
    for part in parts[1:]:
        if not _KEY_PART.match(part) or part in (".", ".."):
            raise ConfigError(
                f"S3 prefix {'/'.join(parts[1:])!r} may hold only letters, digits and !_.*'()=-"
            )
    return PurePosixPath(*parts)

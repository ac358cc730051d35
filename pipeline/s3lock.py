"""The writer lock of an S3 dataset: a lease object created with a conditional write.

S3 has no OS lock that dies with its process, so the lock is an object, `PREFIX/.lock`:

- taking it is `PutObject` with `If-None-Match: *`, which S3 lets exactly one writer win;
- its holder rewrites it every `ttl/4` seconds (`If-Match` its own ETag), a heartbeat;
- a lock not rewritten for `ttl` seconds, judged on S3's own clock (the object's
  LastModified against the response's Date, so no two machines' clocks are compared), is
  stale: its holder was killed or cut off. Another writer takes it over with `If-Match` the
  stale ETag, so of several writers only one can win the takeover;
- a holder whose heartbeat finds a foreign ETag has lost the lock: `check()` raises before
  its next write, and it stops;
- releasing is `DeleteObject` with `If-Match` its ETag: never someone else's lock.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import Any

from .aws_errors import AwsErrorKind, kind_of
from .errors import StoreError

__all__ = ["LockLost", "S3Lease"]

log = logging.getLogger(__name__)
POLL_S = 0.5


class LockLost(StoreError):
    """This process's lease was taken over: it must not write any more (a refused write, as
    far as its callers and the command line are concerned)."""


class S3Lease:
    """One writer's hold on `s3://bucket/key`."""

    def __init__(self, client: Any, bucket: str, key: str, *, ttl_s: float) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.ttl_s = ttl_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps(
            {"owner": self.owner, "ttl_seconds": self.ttl_s, "written_at": time.time()}
        ).encode()

    def _put(self, **condition: str) -> str | None:
        """A conditional PutObject of our lock body: the new ETag, or None if refused."""
        from botocore.exceptions import ClientError

        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=self._body(), **condition
            )
        except ClientError as exc:
            # 412: the condition failed; 409: a concurrent conditional write won the race.
            if kind_of(exc) is AwsErrorKind.CONDITION_FAILED:
                return None
            raise
        return str(response["ETag"])

    def _stale_etag(self) -> str | None:
        """The current lock's ETag when it is stale (or gone: ""), else None."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if kind_of(exc) is AwsErrorKind.NOT_FOUND:
                return ""
            raise
        now = parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
        age_s = (now - head["LastModified"]).total_seconds()
        return str(head["ETag"]) if age_s > self.ttl_s else None

    def acquire(self, timeout_s: float) -> bool:
        """Take the lock, waiting up to `timeout_s`; False when another live writer holds it."""
        deadline = time.monotonic() + timeout_s
        while True:
            etag = self._put(IfNoneMatch="*")
            if etag is None:
                stale = self._stale_etag()
                if stale:
                    etag = self._put(IfMatch=stale)
                    if etag is not None:
                        log.warning("took over the stale lock s3://%s/%s", self.bucket, self.key)
            if etag is not None:
                self.etag = etag
                self._heartbeat = threading.Thread(
                    target=self._beat, name="s3-lock-heartbeat", daemon=True
                )
                self._heartbeat.start()
                return True
            if stale is None and time.monotonic() >= deadline:
                return False
            if stale is None:
                time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                etag = self._put(IfMatch=self.etag or "")
            except Exception as exc:  # a failed heartbeat is retried; expiry decides
                log.warning("lock heartbeat failed: %s", exc)
                continue
            if etag is None:
                log.error("lost the lock s3://%s/%s to another writer", self.bucket, self.key)
                self.lost = True
                return
            self.etag = etag

    def check(self) -> None:
        """Raise LockLost once another writer has taken the lock over."""
        if self.lost:
            raise LockLost(f"lost the writer lock s3://{self.bucket}/{self.key}; stopping")

    def release(self) -> None:
        from botocore.exceptions import ClientError

        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.lost or self.etag is None:
            return
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except ClientError as exc:
            if kind_of(exc) not in (AwsErrorKind.CONDITION_FAILED, AwsErrorKind.NOT_FOUND):
                raise

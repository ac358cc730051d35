"""The product's exceptions: one root, and the one-line form every message is shown in.

Every exception the product defines derives from `ImageVersionsError` (a fitness test walks
the package to hold it so), so a caller can tell the product's failures from a bug:

    ImageVersionsError
    ├── UserError                  exit status 2: one line saying what to fix
    │   ├── ConfigError            a flag, the sources file, credentials, an endpoint
    │   │   ├── WriterBusy         another process holds the writer lock
    │   │   └── extract._Unreachable   a target that cannot be connected to
    │   └── DataError              the data dir's files; the message names the repair
    ├── StoreError (+ OSError)     the dataset's store (S3) refused a write: exit status 1
    │   └── s3lock.LockLost        this writer's S3 lease was taken over
    ├── guard.Cancelled            the run was asked to stop: exit status 128 + the signal
    ├── guard.CallDeadlineExceeded one API call spent its deadline
    ├── source.MalformedResponse   a 200 answer that is not the API's: fails a target or image
    ├── schema.MalformedRecord (+ ValueError)   an API record that cannot be normalised
    ├── storage.UnreadableFile     a dataset file that cannot be read back
    ├── webhook.DeliveryFailed     a webhook refused an alert (the message never holds its URL)
    └── cron._Invalid (+ ValueError)   why a cron field is refused

The classes that belong to one module's job stay in that module; this docstring is the map.
botocore's and boto3's errors become these in one place, `aws_errors.py`. The emulator
(`pipeline/emulator`) is not the product but a stand-in for AWS: its one root is
`emulator.validation.ApiError`, an answer it sends over HTTP, never raised to the product.

Standard library only: the command line imports this module before it parses `--help`.
"""

from __future__ import annotations

from .redact import redact

__all__ = [
    "ConfigError",
    "DataError",
    "ImageVersionsError",
    "StoreError",
    "UserError",
    "WriterBusy",
    "one_line",
]


def one_line(text: str, *, max_chars: int | None = None) -> str:
    """`text` as one line without credentials: every run of whitespace (line breaks of any
    kind included) becomes one space, URLs' credentials are masked (`redact`), and with
    `max_chars` it is cut to that many characters, after the masking, so a cut can never
    leave half a URL's password unmasked.

    Other control characters stay: showing them inert on a terminal is `terminal.printable`'s
    job, and JSON output keeps them exact.
    """
    cleaned = redact(" ".join(text.split()))
    return cleaned if max_chars is None else cleaned[:max_chars]


class ImageVersionsError(Exception):
    """The root of every exception the product defines: `except ImageVersionsError` catches
    the product's own failures and nothing else (a bug's TypeError, a library's error)."""


class UserError(ImageVersionsError):
    """Something the user must fix before running again: exit status 2, one line saying what.

    The message is redacted when the error is made, so that no reader of it (the CLI, Dagster's
    metadata, a log) can show credentials from a URL in it.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class ConfigError(UserError):
    """Bad usage or configuration: a flag, the sources file, credentials, an endpoint."""


class DataError(UserError):
    """Files in the data dir are corrupt, unreadable or misplaced; the message names the repair."""


class WriterBusy(ConfigError):
    """Another process holds the writer lock (of a target, or of the whole dataset)."""


class StoreError(ImageVersionsError, OSError):
    """The dataset's store refused a write or could not be reached (S3 answered an error).

    An OSError too, as a full disk or a refused local write is: every caller that handles a
    failed write handles this one alike, and the command line reports it with exit status 1
    (the run stopped; what it committed stays committed).
    """

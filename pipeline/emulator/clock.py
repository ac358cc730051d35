"""Time: the emulator's controllable :class:`Clock` and epoch-millisecond conversions."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

__all__ = ["Clock"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _as_utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive datetime is taken to be UTC already."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _to_ms(when: datetime) -> int:
    """Milliseconds since the epoch, truncating."""
    return (_as_utc(when) - _EPOCH) // _ONE_MS


def _to_datetime(ms: int) -> datetime:
    return _EPOCH + ms * _ONE_MS


def _to_epoch(ms: int) -> float:
    return round(ms / 1000, 3)


def _truncate_to_ms(when: datetime) -> datetime:
    return _to_datetime(_to_ms(when))


class Clock:
    """Thread-safe clock of UTC-aware datetimes truncated to milliseconds.

    Without ``start`` it follows real time (shifted by every :meth:`advance`); with ``start``
    it is frozen there and moves only when told to.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen = None if start is None else _as_utc(start)
        self._offset = timedelta(0)

    def now(self) -> datetime:
        """Return the current time."""
        with self._lock:
            if self._frozen is not None:
                return _truncate_to_ms(self._frozen)
            return _truncate_to_ms(datetime.now(UTC) + self._offset)

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (frozen or not)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            if self._frozen is not None:
                self._frozen += timedelta(seconds=seconds)
            else:
                self._offset += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        """Freeze the clock at ``when``."""
        with self._lock:
            self._frozen = _as_utc(when)

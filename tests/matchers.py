"""Values that compare equal to what the exporters write where the exact value cannot be known."""

from __future__ import annotations

from datetime import datetime

__all__ = ["DURATION_MS", "ISO_DATETIME", "QUEUE_WAIT_MS", "QUEUE_WAIT_SECONDS", "Traceback"]


class _Elapsed:
    """Equal to a time that elapsed, in the unit named: a float, not negative."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and other >= 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<{self.name}>"


class _IsoDatetime:
    """Equal to an ISO 8601 date and time with its time zone."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and datetime.fromisoformat(other).tzinfo is not None

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<ISO 8601 datetime>"


class Traceback:
    """Equal to a formatted traceback whose last line is ``last_line``."""

    def __init__(self, last_line: str) -> None:
        self.last_line = last_line

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, str)
            and other.startswith("Traceback (most recent call last):")
            and other.rstrip("\n").splitlines()[-1] == self.last_line
        )

    def __hash__(self) -> int:
        return hash(self.last_line)

    def __repr__(self) -> str:
        return f"<traceback ending {self.last_line!r}>"


DURATION_MS = _Elapsed("duration_ms")
QUEUE_WAIT_MS = _Elapsed("queue_wait_ms")
QUEUE_WAIT_SECONDS = _Elapsed("queue wait in seconds")
ISO_DATETIME = _IsoDatetime()

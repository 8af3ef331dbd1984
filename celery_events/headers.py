"""The message headers a DjangoTask call carries to the worker.

A triggered call is published with the key and stale time limit of its unique lock and the key
of its ignore window when it has them, so that the worker checks and releases exactly the key the
caller took; with its own ``ignore_task_after_success`` when the call gave one, so that the
worker opens the window as the call asked; with the time it was sent, so that the worker knows how
long it waited; and with its invocation id when that is not its task
id (a caller named the invocation), so that every event of the call, on both sides and across
retries, carries the same invocation id. A *stand-in* (the message of a canvas member that
joined a running call or was ignored, see :mod:`celery_events.worker`) also carries
``stand_in``.

These names are the library's own: a caller's headers of the same names are replaced when a call
triggers (an ``invocation_id`` header is taken as the call's invocation id).

What an attempt's events carry beyond its request is read from them here: the call's invocation
id (:func:`invocation_id_of`) and how long the message waited (:func:`queue_wait`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from celery.app.task import Context

__all__ = [
    "AUTO_EXPIRES_HEADER",
    "CARRIED_HEADERS",
    "IGNORE_AFTER_SUCCESS_HEADER",
    "IGNORE_KEY_HEADER",
    "INVOCATION_ID_HEADER",
    "LOCK_CHECKS_HEADER",
    "RESERVED_HEADERS",
    "STALE_TIME_LIMIT_HEADER",
    "STAND_IN_HEADER",
    "TRIGGER_TIME_HEADER",
    "UNIQUE_KEY_HEADER",
    "invocation_id_of",
    "queue_wait",
    "read_header",
    "stand_in_header",
]

INVOCATION_ID_HEADER: Final = "invocation_id"
"""The id every event of one call carries, when it is not the task id (a caller named it)."""
UNIQUE_KEY_HEADER: Final = "unique_key"
"""The unique lock's key, so the worker checks and releases exactly the key the caller took."""
STALE_TIME_LIMIT_HEADER: Final = "stale_time_limit"
"""Seconds the unique lock lives, so the worker can take it again after it expired."""
IGNORE_KEY_HEADER: Final = "ignore_key"
"""The ignore window's key, opened by the worker after a success."""
IGNORE_AFTER_SUCCESS_HEADER: Final = "ignore_task_after_success"
"""A call's own ``ignore_task_after_success``, when it gave one: the task's otherwise."""
TRIGGER_TIME_HEADER: Final = "trigger_time"
"""When the message was sent: the call's trigger, or a retry's publish (seconds since the epoch).

Where the attempt starts, the time since then (or since the message's ``eta``) is how long it
waited in the queue. django-celery-extensions wrote the same header as an ISO 8601 string.
"""
AUTO_EXPIRES_HEADER: Final = "auto_expires"
"""Set when the message's ``expires`` is a unique call's automatic one, which a retry drops."""
LOCK_CHECKS_HEADER: Final = "lock_checks"
"""How many times an attempt found the lock store unreachable and was published again to try."""
STAND_IN_HEADER: Final = "stand_in"
"""What a stand-in message stands for: ``{"holder": task id, ...}`` or ``{"ignored": True}``."""
CARRIED_HEADERS: Final = (
    INVOCATION_ID_HEADER,
    UNIQUE_KEY_HEADER,
    STALE_TIME_LIMIT_HEADER,
    IGNORE_KEY_HEADER,
    IGNORE_AFTER_SUCCESS_HEADER,
)
"""The headers a retry re-publishes with."""
RESERVED_HEADERS: Final = frozenset(
    (
        *CARRIED_HEADERS,
        STAND_IN_HEADER,
        TRIGGER_TIME_HEADER,
        LOCK_CHECKS_HEADER,
        AUTO_EXPIRES_HEADER,
    )
)
"""Every header name the library writes; a caller's values for them never reach the worker."""


def read_header(request: Context, name: str) -> Any:
    """Return the custom header ``name`` of the running task's message, or None.

    A worker puts custom headers on the request as attributes; ``apply`` (eager) keeps them in
    ``request.headers``. Both are looked at.

    Args:
        request: the task's request (``task.request``).
        name: the header's name.
    """
    value = getattr(request, name, None)
    if value is None and request.headers:
        value = request.headers.get(name)
    return value


def invocation_id_of(request: Context) -> str:
    """Return the invocation id of the running attempt's call: its header, else its task id.

    A call's invocation id is its task id unless the caller named the invocation (then the
    message carries it in a header); a message from a producer that is not a DjangoTask has
    none, and its task id, kept across retries, serves.

    Args:
        request: the running attempt's request.
    """
    return str(read_header(request, INVOCATION_ID_HEADER) or request.id)


def queue_wait(request: Context, now: float) -> float | None:
    """Return how long the attempt's message waited before the attempt started, in seconds.

    The wait is counted from the message's ``eta`` when it has one (a countdown, a retry),
    else from when it was sent (:data:`TRIGGER_TIME_HEADER`). The two clocks are those of the
    sender's and the worker's machines: a wait that their skew makes negative is 0.

    Args:
        request: the starting attempt's request.
        now: the attempt's start, as ``time.time()``.

    Returns:
        The wait; None for an eager attempt, which waited in no queue, and for a message that
        tells neither (one from a producer that is not a DjangoTask, without an eta).
    """
    if request.is_eager:
        return None
    since: Any = request.eta or read_header(request, TRIGGER_TIME_HEADER)
    if since is None:
        return None
    if isinstance(since, str):  # an eta, or django-celery-extensions' trigger time
        since = datetime.fromisoformat(since)
    if isinstance(since, datetime):
        since = since.timestamp()
    return max(now - float(since), 0.0)


def stand_in_header(holder: str | None) -> dict[str, Any]:
    """Return the ``stand_in`` header of a stand-in that joins ``holder``, or is ignored (None).

    A joined stand-in's header counts its looks at the holder (see
    :mod:`celery_events.stand_ins`).
    """
    if holder is None:
        return {"ignored": True}
    return {"holder": holder, "checks": 0}

"""What a retry of a DjangoTask attempt carries: its delay, its headers, its lock, its eta.

A retry continues its call: it is published with the call's headers, so that its attempt has
the same invocation id, unique lock and ignore window; the attempt that retries drops its
lease and keeps the lock until the retry is due (:func:`step_out`), before the retry is
published, so that the retry's attempt takes the lock at once. The automatic expiry of a
unique call is the call's first message's: a retry does not inherit it.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from . import worker
from .durations import retry_delays
from .headers import (
    AUTO_EXPIRES_HEADER,
    CARRIED_HEADERS,
    STAND_IN_HEADER,
    TRIGGER_TIME_HEADER,
    read_header,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from billiard.einfo import ExceptionInfo
    from celery.app.task import Context

    from .typing import CalledTask

__all__ = ["retry_delay", "retry_eta", "retry_options", "step_out"]


def retry_delay(
    task: CalledTask,
    request: Context,
    default_retry_delays: Sequence[float | timedelta] | None,
    max_retries: int | None,
) -> tuple[float | None, int | None]:
    """Return the countdown and the retry limit of a retry that names no eta or countdown.

    With retry delays (the retry's own, else the task's), attempt n waits delays[n] and the
    number of delays is the retry limit, unless the retry gives one; without, Celery decides.

    Args:
        task: the retried task.
        request: the running attempt's request.
        default_retry_delays: the retry's own delays, or None for the task's.
        max_retries: the retry's own limit, or None.

    Raises:
        TypeError: a delay is neither seconds nor a timedelta.
        ValueError: a delay is less than 0.
    """
    delays = (
        task.default_retry_delays
        if default_retry_delays is None
        else retry_delays(default_retry_delays, f"default_retry_delays of {task.name!r}")
    )
    if delays is None:
        return None, max_retries
    countdown = delays[request.retries] if request.retries < len(delays) else None
    return countdown, len(delays) if max_retries is None else max_retries


def retry_options(request: Context, options: dict[str, Any]) -> dict[str, Any]:
    """Return the options a retry of the running attempt is published with.

    Every header of the message goes on (trace context, the user's own), then the retry's own
    ``headers`` option, then the call's (:data:`~celery_events.headers.CARRIED_HEADERS`) and
    the retry's publish time; not a stand-in's mark: a stand-in that runs the body retries as
    the call itself. A unique call's automatic expiry is not the retry's: Celery would carry
    it over and discard a retry due after it (an ``expires`` the caller gave is carried).

    Args:
        request: the running attempt's request.
        options: the retry's options, as ``Task.retry`` takes them.
    """
    headers = {**(request.headers or {}), **(options.get("headers") or {})}
    headers.pop(STAND_IN_HEADER, None)
    headers[TRIGGER_TIME_HEADER] = time.time()
    for name in CARRIED_HEADERS:
        value = read_header(request, name)
        if value is not None:
            headers[name] = value
    options = {**options, "headers": headers}
    if read_header(request, AUTO_EXPIRES_HEADER) and "expires" not in options:
        options["expires"] = None
    return options


def retry_eta(einfo: ExceptionInfo) -> datetime:
    """Return when the retry described by ``einfo`` (a Retry, wrapped by billiard) is due."""
    retry = getattr(einfo.exception, "exc", einfo.exception)
    when = getattr(retry, "when", None)
    if isinstance(when, datetime):
        return when
    return timezone.now() + timedelta(seconds=float(when or 0))


def step_out(
    task: CalledTask, request: Context, eta: datetime | None, countdown: float | None
) -> None:
    """Leave the call's lock to the retry, due at ``eta`` or in ``countdown`` seconds.

    Called before the retry is published: its attempt may start at once, and must find the
    lease free to take (a lease held by this attempt would make it wait as a second delivery).
    """
    delay = (eta - timezone.now()).total_seconds() if eta is not None else countdown or 0.0
    worker.step_out(task, request, delay)

"""The structlog exporter: a log line for every event of a task call, and its ids while it runs.

Every line carries ``invocation_id``, ``task_id`` (None where the event has no task) and
``task_name``, plus what its event knows; the event names and keys are listed in
``docs/exporters.md``. While an attempt runs, ``invocation_id`` and ``task_id`` are bound in
structlog's contextvars, so the task's own log lines carry them, and so do the lines of Celery's
own receivers of the attempt's end; when the attempt is over (Celery's ``task_postrun``) they are
reset to what they were, and other context keys are never touched.

Until structlog is configured, a worker on Celery's default logging (its standard output
redirected to its logger) gets the lines through the standard library's ``celery_events`` logger,
so that Celery writes each once, at its level, with its one timestamp.

Beside django-structlog's Celery support, which logs ``task_started``, ``task_retrying``,
``task_failed`` and ``task_succeeded`` itself, the exporter leaves each of these lines to it
wherever its receiver is connected, and keeps ``invocation_id`` out of the context it copies into
the messages of the tasks a task calls.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import structlog
from celery import signals as celery_signals
from celery.utils.log import LoggingProxy
from structlog.contextvars import bind_contextvars, reset_contextvars

from celery_events import signals
from celery_events.headers import queue_wait

from .base import DEFAULT_MAX_IN_FLIGHT, SignalExporter, check_option
from .neighbours import django_structlog_celery_signals, django_structlog_receives

if TYPE_CHECKING:
    from contextvars import Token
    from datetime import datetime

    from celery import Task
    from celery.app.task import Context as Request
    from celery.utils.dispatch import Signal as CelerySignal
    from structlog.typing import EventDict

__all__ = ["DEFAULT_LEVELS", "EVENT_NAMES", "LEVEL_NAMES", "StructlogExporter"]

EVENT_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        signals.invocation_apply.name: "invocation_applied",
        signals.invocation_trigger.name: "invocation_triggered",
        signals.invocation_unique.name: "invocation_deduplicated",
        signals.invocation_ignored.name: "invocation_ignored",
        signals.invocation_failure.name: "invocation_failed",
        signals.invocation_timeout.name: "invocation_timed_out",
        signals.task_start.name: "task_started",
        signals.task_retry.name: "task_retrying",
        signals.task_failure.name: "task_failed",
        signals.task_success.name: "task_succeeded",
    }
)
"""The log event name of each signal."""

LEVEL_NAMES: Final = ("debug", "info", "warning", "error", "critical")
"""The levels an event can be logged at (option ``levels``)."""

DEFAULT_LEVELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        **dict.fromkeys(EVENT_NAMES.values(), "info"),
        # The call's next line (triggered, deduplicated, ignored or failed) follows at once with
        # what this one has; at info, a call is one line, as django-structlog's task_enqueued.
        "invocation_applied": "debug",
        "task_retrying": "warning",
        "task_failed": "error",
        "invocation_failed": "error",
    }
)
"""The level of each log event unless the ``levels`` option says otherwise."""


_LOGGED_BY_CELERY_SIGNAL: Final[Mapping[str, CelerySignal]] = MappingProxyType(
    {
        "task_started": celery_signals.task_prerun,
        "task_retrying": celery_signals.task_retry,
        "task_failed": celery_signals.task_failure,
        "task_succeeded": celery_signals.task_success,
    }
)
"""The Celery signal whose receiver in django-structlog logs the same event as ours."""

_Attempt: TypeAlias = "tuple[float, Mapping[str, Token[Any]], str | None, int]"
"""A running attempt: its start (``time.perf_counter()``), the context tokens it bound, its queue
and its retries (read from the request once, at the start)."""


class StructlogExporter(SignalExporter):
    """Logs every event of the bus on the structlog logger ``celery_events``.

    Args:
        levels: log levels by event name, overriding :data:`DEFAULT_LEVELS` (e.g.
            ``{"task_retrying": "info"}``).
        log_args: also log the task's ``args`` and ``kwargs`` (on ``invocation_applied``,
            ``invocation_triggered`` and ``task_started``); off by default, as they may hold
            personal data.
        max_in_flight: how many running attempts are followed at once (their start time and
            context tokens); past it the oldest is forgotten.

    Raises:
        django.core.exceptions.ImproperlyConfigured: an option has a bad value.
    """

    name = "structlog"

    def __init__(
        self,
        *,
        levels: Mapping[str, str] | None = None,
        log_args: bool = False,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        check_option(
            self.name,
            "levels",
            levels,
            valid=levels is None
            or (
                isinstance(levels, Mapping)
                and all(event in DEFAULT_LEVELS for event in levels)
                and all(level in LEVEL_NAMES for level in levels.values())
            ),
            expected=(
                f"a dict of event name ({', '.join(DEFAULT_LEVELS)}) -> level "
                f"({', '.join(LEVEL_NAMES)})"
            ),
        )
        check_option(
            self.name, "log_args", log_args, valid=isinstance(log_args, bool), expected="a bool"
        )
        self._levels = {**DEFAULT_LEVELS, **(levels or {})}
        self._log_args = log_args
        self._attempts = self.in_flight(max_in_flight)
        self._neighbour_logs: dict[str, tuple[int, bool]] = {}
        # The lazy proxy binds at each use, so that structlog configured after Django started
        # (as projects often do) is the configuration these lines go through.
        self._logger = structlog.get_logger("celery_events")
        self._celery_logger = structlog.wrap_logger(
            logging.getLogger("celery_events"),
            processors=[_exception_as_error, structlog.dev.ConsoleRenderer(colors=False)],
            wrapper_class=structlog.stdlib.BoundLogger,
        )
        receivers: dict[Any, Any] = {
            signals.invocation_apply: self._applied,
            signals.invocation_trigger: self._triggered,
            signals.invocation_unique: partial(self._invocation, "invocation_deduplicated"),
            signals.invocation_ignored: partial(self._invocation, "invocation_ignored"),
            signals.invocation_failure: partial(self._invocation, "invocation_failed"),
            signals.invocation_timeout: partial(self._invocation, "invocation_timed_out"),
            signals.task_start: self._started,
            signals.task_retry: self._retrying,
            signals.task_failure: self._failed,
            signals.task_success: self._succeeded,
            celery_signals.task_postrun: self._postrun,
        }
        django_structlog = django_structlog_celery_signals()
        if django_structlog is not None:
            receivers[django_structlog.modify_context_before_task_publish] = _keep_own_keys
        self.receivers = receivers

    # The caller's side. Each receiver builds its line's fields in one dict: this runs on every
    # call of every task.

    def _applied(
        self,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        args: Any,
        kwargs: Any,
        options: Mapping[str, Any],
        **_: Any,
    ) -> None:
        fields = {
            "invocation_id": invocation_id,
            "task_id": None,
            "task_name": task.name,
            "queue": options["queue"],
            "is_on_commit": options["is_on_commit"],
        }
        self._add_arguments(fields, args, kwargs)
        self._write("invocation_applied", fields)

    def _triggered(
        self,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str,
        args: Any,
        kwargs: Any,
        options: Mapping[str, Any],
        **_: Any,
    ) -> None:
        eta = options["eta"]
        fields = {
            "invocation_id": invocation_id,
            "task_id": task_id,
            "task_name": task.name,
            "queue": options["queue"],
            "is_on_commit": options["is_on_commit"],
            "eta": None if eta is None else eta.isoformat(),
        }
        self._add_arguments(fields, args, kwargs)
        self._write("invocation_triggered", fields)

    def _invocation(
        self,
        event: str,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str | None,
        options: Mapping[str, Any],
        exc: BaseException | None = None,
        **_: Any,
    ) -> None:
        """Log a call's outcome, with ``exc`` when it could not be triggered or published."""
        fields = {
            "invocation_id": invocation_id,
            "task_id": task_id,
            "task_name": task.name,
            "queue": options["queue"],
        }
        if exc is not None:
            fields["exc_info"] = exc
        self._write(event, fields)

    # Where the task runs.

    def _started(
        self,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str,
        args: Any,
        kwargs: Any,
        **_: Any,
    ) -> None:
        tokens = bind_contextvars(invocation_id=invocation_id, task_id=task_id)
        request = task.request
        retries = request.retries
        queue = _queue(request)
        wait = queue_wait(request, time.time())
        self._attempts.add(task_id, (time.perf_counter(), tokens, queue, retries))
        fields = {
            "invocation_id": invocation_id,
            "task_id": task_id,
            "task_name": task.name,
            "queue": queue,
            "retries": retries,
            "queue_wait_ms": None if wait is None else round(wait * 1000, 3),
        }
        self._add_arguments(fields, args, kwargs)
        self._log("task_started", fields)

    def _retrying(
        self,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str,
        exc: BaseException | None,
        eta: datetime,
        **_: Any,
    ) -> None:
        self._ended(
            "task_retrying",
            task,
            invocation_id,
            task_id,
            {"eta": None if eta is None else eta.isoformat(), "error": repr(exc)},
        )

    def _failed(
        self,
        task: Task[Any, Any],
        *,
        invocation_id: str,
        task_id: str,
        exc: BaseException,
        **_: Any,
    ) -> None:
        self._ended("task_failed", task, invocation_id, task_id, {"exc_info": exc})

    def _succeeded(
        self, task: Task[Any, Any], *, invocation_id: str, task_id: str, **_: Any
    ) -> None:
        self._ended("task_succeeded", task, invocation_id, task_id, None)

    def _add_arguments(self, fields: dict[str, Any], args: Any, kwargs: Any) -> None:
        """Add the task's ``args`` and ``kwargs`` to ``fields`` when ``log_args`` is on."""
        if self._log_args:
            fields["args"] = args
            fields["kwargs"] = kwargs

    def _write(self, event: str, fields: dict[str, Any]) -> None:
        """Log ``event`` with ``fields`` at its level.

        A worker on Celery's default logging (its standard output redirected to its logger)
        whose structlog is not configured would get structlog's default lines, printed with a
        timestamp and a level, redirected as WARNING lines with a second timestamp: the lines
        go through the standard library's ``celery_events`` logger instead, formatted by Celery,
        an exception as ``error`` (its traceback is Celery's to log, with the task's failure).
        """
        if isinstance(sys.stdout, LoggingProxy) and not structlog.is_configured():
            logger = self._celery_logger
        else:
            logger = self._logger
        getattr(logger, self._levels[event])(event, **fields)

    def _log(self, event: str, fields: dict[str, Any]) -> None:
        """Log an attempt's line, unless django-structlog's receiver logs the same event."""
        if not self._logged_by_django_structlog(event):
            self._write(event, fields)

    def _logged_by_django_structlog(self, event: str) -> bool:
        """Return whether django-structlog's Celery support logs ``event`` in this process.

        Looked up again whenever the receivers of its Celery signal change.
        """
        signal = _LOGGED_BY_CELERY_SIGNAL[event]
        size = len(signal.receivers)
        known = self._neighbour_logs.get(event)
        if known is None or known[0] != size:
            known = (size, django_structlog_receives(signal))
            self._neighbour_logs[event] = known
        return known[1]

    def _ended(
        self,
        event: str,
        task: Task[Any, Any],
        invocation_id: str,
        task_id: str,
        extra: dict[str, Any] | None,
    ) -> None:
        """Log the end of an attempt with its duration."""
        attempt: _Attempt | None = self._attempts.get(task_id)
        if attempt is None:  # its start was forgotten (max_in_flight): ask the request
            request = task.request
            queue, retries, duration_ms = _queue(request), request.retries, None
        else:
            queue, retries = attempt[2], attempt[3]
            duration_ms = round((time.perf_counter() - attempt[0]) * 1000, 3)
        fields = {
            "invocation_id": invocation_id,
            "task_id": task_id,
            "task_name": task.name,
            "queue": queue,
            "retries": retries,
            "duration_ms": duration_ms,
        }
        if extra is not None:
            fields.update(extra)
        self._log(event, fields)

    def _postrun(self, *, task_id: str, **_: Any) -> None:
        """Reset the context the attempt bound: it is over, whether or not it sent an end event.

        Celery's receivers of the attempt's end (``task_success``, ``task_failure``,
        ``task_retry``) ran before, within the attempt's context.
        """
        attempt: _Attempt | None = self._attempts.pop(task_id)
        if attempt is not None:
            reset_contextvars(**attempt[1])


def _exception_as_error(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Write a line's exception as its ``repr()`` under ``error``, without its traceback."""
    exc = event_dict.pop("exc_info", None)
    if exc is not None:
        event_dict["error"] = repr(exc)
    return event_dict


def _keep_own_keys(*, context: dict[str, Any], **_: Any) -> None:
    """Keep the exporter's keys out of the context django-structlog copies into a message.

    Connected to its ``modify_context_before_task_publish``: a task that calls another task
    would otherwise send its ``invocation_id`` to the other's attempt, whose lines would carry
    it. (django-structlog itself renames ``task_id`` to ``parent_task_id``.)
    """
    context.pop("invocation_id", None)


def _queue(request: Request) -> str | None:
    delivery_info = request.delivery_info
    return delivery_info.get("routing_key") if delivery_info else None

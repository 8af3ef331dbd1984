"""The worker's way of one DjangoTask attempt, top to bottom: gate, body, retry, settle.

:func:`run_attempt` is what ``DjangoTask.__call__`` runs for each attempt, where the task runs
(a worker, or the caller for ``apply()`` and eager calls).

**The gate.** When an attempt of a unique task starts on a worker, one round trip to the lock
store (:meth:`~celery_events.locks.LockStore.claim`) checks that the lock holds the message's
task id. A lock that expired while the message waited (a redelivery after the whole worker died,
a retry that outlived it) is taken again; a lock that another call holds means the body must not
run, and the message becomes a stand-in that joins that call. So two bodies of one unique key
never run at once, whatever the broker redelivers. Eager runs skip the check: their caller took
the lock a moment before, in the same thread.

**Stand-ins.** A message that stands in for a call that joined another or was ignored (a canvas
member's, :mod:`celery_events.stand_ins`) ends with that call's outcome, or None, without running
the body; so does a message that finds its lock held by another call, which becomes one.

**The body, retries and settling.** An attempt that passes the gate sends ``task_start`` and
runs the body. A retry is published with the call's headers (:func:`retry_headers`), so the
next attempt is the same call. The attempt that ends a call releases its lock, and after a
success opens its ignore window, before Celery stores the result (:func:`settle`): whoever sees
the result can call the task again at once. ``task_retry``, ``task_failure`` and
``task_success`` are sent from Celery's handlers (:func:`send_task_event`).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from celery.exceptions import CeleryError, Reject, Retry
from django.utils import timezone

from . import signals, stand_ins
from .durations import positive_seconds, retry_delays
from .headers import (
    CARRIED_HEADERS,
    IGNORE_AFTER_SUCCESS_HEADER,
    IGNORE_KEY_HEADER,
    STAND_IN_HEADER,
    TRIGGER_TIME_HEADER,
    UNIQUE_KEY_HEADER,
    invocation_id_of,
    read_header,
)
from .locks import LockStoreUnavailableError, get_lock_store

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from billiard.einfo import ExceptionInfo
    from celery.app.task import Context

    from .typing import CalledTask

__all__ = [
    "admit_attempt",
    "ignore_key_of",
    "retry_delay",
    "retry_eta",
    "retry_headers",
    "run_attempt",
    "send_task_event",
    "set_ignore_task",
    "settle",
]

logger: Final = logging.getLogger("celery_events")


def run_attempt(task: CalledTask, request: Context, args: Any, kwargs: Any) -> Any:
    """Run one attempt: the gate, ``task_start``, the body, and the settling of its call.

    Args:
        task: the task whose attempt starts.
        request: the attempt's request.
        args: the body's positional arguments.
        kwargs: the body's keyword arguments.

    Returns:
        The body's return value, or a stand-in's outcome.

    Raises:
        LockStoreUnavailableError: the gate could not reach the lock store; the attempt fails
            without running the body (``task_start``, then ``task_failure``).
        Exception: whatever the body raised, after the call was settled (unless it retries).
    """
    try:
        stand_in = admit_attempt(task, request)
    except LockStoreUnavailableError:
        # Never run the body unchecked: the attempt starts, and fails at its gate.
        _start(task, request, args, kwargs)
        raise
    if stand_in is not None:
        return stand_in.complete()
    _start(task, request, args, kwargs)
    try:
        retval = task.run(*args, **kwargs)
    except Retry:
        raise
    except Reject as reject:
        if not getattr(reject, "requeue", False):  # celery-types lacks "requeue"
            settle(task, request, succeeded=False)
        raise
    except BaseException:
        settle(task, request, succeeded=False)
        raise
    settle(task, request, succeeded=True)
    return retval


def _start(task: CalledTask, request: Context, args: Any, kwargs: Any) -> None:
    event = (request.id, args, kwargs)
    send_task_event(task, signals.task_start, task.on_task_start, request, event)


def admit_attempt(task: CalledTask, request: Context) -> stand_ins.StandInOutcome | None:
    """Decide whether the attempt that starts runs the body: None when it does.

    Returns:
        How the attempt ends instead, for a stand-in whose outcome is known.

    Raises:
        celery.exceptions.Ignore: the attempt was published again to check later (a stand-in
            whose holder still runs, or a message whose lock another call holds).
        LockStoreUnavailableError: the lock store's Redis could not be reached.
    """
    stand_in = read_header(request, STAND_IN_HEADER)
    if stand_in is not None:
        return stand_ins.outcome(task, request, dict(stand_in))
    unique_key = read_header(request, UNIQUE_KEY_HEADER)
    if unique_key is None or request.is_eager:
        return None
    claim = stand_ins.claim(task, request, unique_key)
    if claim.holder != request.id:
        logger.warning(
            "task %s[%s] of invocation %s found its unique lock held by %s: it does not run, "
            "and gets the outcome of %s",
            task.name,
            request.id,
            invocation_id_of(request),
            claim.holder,
            claim.holder,
        )
        stand_ins.check_later(task, request, {"holder": claim.holder, "checks": 0})
    if claim.taken:
        logger.warning(
            "task %s[%s] of invocation %s found its unique lock free (expired or released "
            "while the message waited) and took it again",
            task.name,
            request.id,
            invocation_id_of(request),
        )
    return None


def ignore_key_of(task: CalledTask, request: Context) -> str:
    """Return the ignore window's key of the running attempt's call."""
    ignore_key: str | None = read_header(request, IGNORE_KEY_HEADER)
    if ignore_key is None:  # published by something other than a CalledTask
        ignore_key = task._get_ignore_key(request.args, request.kwargs)  # noqa: SLF001 - the task's key seam
    return ignore_key


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


def retry_headers(request: Context, options: dict[str, Any]) -> dict[str, Any]:
    """Return the headers a retry of the running attempt is published with.

    Every header of the message goes on (trace context, the user's own), then the retry's own
    ``headers`` option, then the call's (:data:`~celery_events.headers.CARRIED_HEADERS`) and
    the retry's publish time; not a stand-in's mark: a stand-in that runs the body retries as
    the call itself.

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
    return headers


def retry_eta(einfo: ExceptionInfo) -> datetime:
    """Return when the retry described by ``einfo`` (a Retry, wrapped by billiard) is due."""
    retry = getattr(einfo.exception, "exc", einfo.exception)
    when = getattr(retry, "when", None)
    if isinstance(when, datetime):
        return when
    return timezone.now() + timedelta(seconds=float(when or 0))


def _opens_ignore_window(task: CalledTask, request: Context) -> bool:
    """Return whether the call's success opens its ignore window.

    It does for a task that ignores after success, and for a call that asked to
    (``ignore_task_after_success=True``). A call's ``False`` only spares it the check: its
    success still opens the task's window, as with django-celery-extensions.
    """
    asked: bool | None = read_header(request, IGNORE_AFTER_SUCCESS_HEADER)
    ignores = task.ignore_task_after_success or asked is True
    return ignores and task.ignore_task_timedelta is not None


def settle(task: CalledTask, request: Context, *, succeeded: bool) -> None:
    """Release the lock of the call's last attempt, and after a success open its ignore window.

    A lock store error is logged, not raised: it must neither hide the task's own exception nor
    turn a success into a failure and lose its result. The lock then expires after its stale
    time limit, and no ignore window opens.
    """
    try:
        unique_key: str | None = read_header(request, UNIQUE_KEY_HEADER)
        if unique_key is None:
            # A message that django-celery-extensions published (during a rolling upgrade)
            # carries no key; its lock has the same key and holds this task id, and a release
            # is owner-checked: it frees nothing another call holds.
            unique_key = task._get_unique_key(request.args, request.kwargs)  # noqa: SLF001 - the task's key seam
        ignore_key = ignore_ttl = None
        if succeeded and _opens_ignore_window(task, request):
            ignore_key = ignore_key_of(task, request)
            ignore_ttl = positive_seconds(
                task.ignore_task_timedelta, f"ignore_task_timedelta of task {task.name!r}"
            )
        if unique_key is not None or ignore_key is not None:
            get_lock_store().release(
                task_id=str(request.id),
                unique_key=unique_key,
                ignore_key=ignore_key,
                ignore_ttl=ignore_ttl,
                task_name=task.name,
                arguments=(request.args, request.kwargs),
            )
    except Exception:
        logger.exception(
            "could not settle the unique lock and ignore window of task %s[%s]; "
            "the lock expires on its own",
            task.name,
            request.id,
        )


def set_ignore_task(
    task: CalledTask, request: Context, ignore_task_timedelta: timedelta | float | None
) -> None:
    """Open the ignore window of the running attempt's call, from its body.

    Args:
        task: the running task.
        request: the running attempt's request.
        ignore_task_timedelta: how long; the task's ``ignore_task_timedelta`` when None.

    Raises:
        CeleryError: outside a running task, or with no timedelta from the call or task.
        LockStoreUnavailableError: the lock store's Redis could not be reached.
    """
    if request.called_directly:
        msg = f"set_ignore_task() of task {task.name!r} works only while the task runs"
        raise CeleryError(msg)
    how_long = (
        task.ignore_task_timedelta if ignore_task_timedelta is None else ignore_task_timedelta
    )
    if how_long is None:
        msg = (
            f"set_ignore_task() of task {task.name!r} needs an ignore_task_timedelta, "
            "on the task or in the call"
        )
        raise CeleryError(msg)
    get_lock_store().ignore(
        task_id=str(request.id),
        ignore_key=ignore_key_of(task, request),
        ignore_ttl=positive_seconds(
            how_long, f"ignore_task_timedelta of set_ignore_task() of {task.name!r}"
        ),
        unique_key=read_header(request, UNIQUE_KEY_HEADER),
        task_name=task.name,
        arguments=(request.args, request.kwargs),
    )


def send_task_event(
    task: CalledTask,
    signal: signals.EventSignal,
    hook: Callable[..., None],
    request: Context,
    values: tuple[Any, ...],
) -> None:
    """Call the task hook with ``values``, then send its signal with the invocation id too.

    Nothing is sent for an attempt that ended a stand-in without running the body: its outcome
    was on the bus when its caller joined or was ignored.

    Args:
        task: the task whose attempt the event is about.
        signal: the event's signal.
        hook: the task's hook method of the same name.
        request: the attempt's request, which tells the call's invocation id.
        values: the hook's arguments.
    """
    if stand_ins.is_stand_in_attempt(request):
        return
    hook(*values)
    if signal.receivers:
        signal.emit(task, invocation_id_of(request), *values)

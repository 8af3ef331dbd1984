"""The ignore window of a call: its key, and when it opens.

A call's success opens its ignore window when its task ignores after success or the call asked
to (:func:`opens_after_success`; the worker opens it as it settles the call), and the task's
body may open it itself (:func:`set_ignore_task`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery.exceptions import CeleryError

from .durations import positive_seconds
from .headers import IGNORE_AFTER_SUCCESS_HEADER, IGNORE_KEY_HEADER, UNIQUE_KEY_HEADER, read_header
from .locks import get_lock_store

if TYPE_CHECKING:
    from datetime import timedelta

    from celery.app.task import Context

    from .typing import CalledTask

__all__ = ["ignore_key_of", "opens_after_success", "set_ignore_task"]


def ignore_key_of(task: CalledTask, request: Context) -> str:
    """Return the ignore window's key of the running attempt's call."""
    ignore_key: str | None = read_header(request, IGNORE_KEY_HEADER)
    if ignore_key is None:  # published by something other than a CalledTask
        ignore_key = task._get_ignore_key(request.args, request.kwargs)  # noqa: SLF001 - the task's key seam
    return ignore_key


def opens_after_success(task: CalledTask, request: Context) -> bool:
    """Return whether the call's success opens its ignore window.

    It does for a task that ignores after success, and for a call that asked to
    (``ignore_task_after_success=True``). A call's ``False`` only spares it the check: its
    success still opens the task's window, as with django-celery-extensions.
    """
    asked: bool | None = read_header(request, IGNORE_AFTER_SUCCESS_HEADER)
    ignores = task.ignore_task_after_success or asked is True
    return ignores and task.ignore_task_timedelta is not None


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

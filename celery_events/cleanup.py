"""Free the unique locks of messages that a worker drops before their task could release them.

A DjangoTask releases its lock when an attempt ends without a retry. A message can also end
where no attempt ends: revoked (by id, by expiry, or terminated), an unregistered task, a message
the worker cannot accept or decode, a pool process lost mid-task (killed, out of memory) or
killed at its hard time limit. Celery tells the worker's main process of each through a signal;
the receivers here release the message's lock, owner-checked, with the unique key the message
carries. Where the worker learns nothing (the whole worker is killed), the lock's time to live
bounds it. :meth:`~celery_events.apps.CeleryEventsConfig.ready` connects them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.signals import task_failure, task_rejected, task_revoked, task_unknown

from .config import settings
from .headers import UNIQUE_KEY_HEADER, read_header
from .locks import get_lock_store

if TYPE_CHECKING:
    from celery import Task
    from celery.app.task import Context
    from kombu.message import Message

__all__ = ["connect_lock_cleanup"]


def connect_lock_cleanup() -> None:
    """Connect the receivers to Celery's signals; connecting again changes nothing."""
    task_revoked.connect(_release_revoked_task, weak=False, dispatch_uid=f"{__name__}.revoked")
    task_unknown.connect(_release_dropped_message, weak=False, dispatch_uid=f"{__name__}.unknown")
    task_rejected.connect(_release_dropped_message, weak=False, dispatch_uid=f"{__name__}.rejected")
    task_failure.connect(_release_lost_task, weak=False, dispatch_uid=f"{__name__}.failure")


def _release_revoked_task(*, request: Context | None = None, **_: Any) -> None:
    """``task_revoked``: release the lock of a revoked, expired or terminated task."""
    if request is not None:
        _release(request.id, read_header(request, UNIQUE_KEY_HEADER))


def _release_dropped_message(*, message: Message, **_: Any) -> None:
    """``task_unknown``, ``task_rejected``: release the lock of a message the worker dropped."""
    headers = message.headers or {}
    _release(headers.get("id"), headers.get(UNIQUE_KEY_HEADER))


def _release_lost_task(
    *,
    sender: Task[Any, Any],
    task_id: str,
    exception: BaseException,
    args: Any,
    kwargs: Any,
    **_: Any,
) -> None:
    """``task_failure``: release the lock of a task whose pool process was lost or killed.

    Other failures are left alone: the task released its lock when its attempt ended. Celery
    sends this signal without the task's request at a hard time limit, so the key is computed
    from the arguments when the request is not at hand; the release compares the holder's task
    id, so a key that differs from the caller's releases nothing.
    """
    if not isinstance(exception, (WorkerLostError, TimeLimitExceeded)):
        return
    request = sender.request
    unique_key = read_header(request, UNIQUE_KEY_HEADER) if request.id == task_id else None
    if unique_key is None and getattr(sender, "unique", False):
        generate = sender.unique_key_generator  # type: ignore[attr-defined]  # a DjangoTask's
        unique_key = generate(settings.UNIQUE_TASK_KEY_PREFIX, args, kwargs)
    _release(task_id, unique_key)


def _release(task_id: object, unique_key: object) -> None:
    if isinstance(task_id, str) and isinstance(unique_key, str):
        get_lock_store().release(
            task_id=task_id, unique_key=unique_key, ignore_key=None, ignore_ttl=None
        )

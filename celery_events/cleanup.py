"""Free the unique locks of messages that a worker drops before their task could release them.

A DjangoTask releases its lock when an attempt ends without a retry. A message can also end
where no attempt ends: revoked (by id, by expiry, or terminated), an unregistered task, a message
the worker cannot accept or decode. Celery tells the worker's main process of each through a
signal; the receivers here release the message's lock, owner-checked, with the unique key the
message carries (a revoked task's call also leaves its failure as its outcome, for whoever
joined it). A pool process lost mid-task (killed, out of memory) or killed at its hard time
limit is handled by DjangoTask's worker request (:class:`celery_events.request.Request`), which
releases the lock before Celery stores the failure. Where the worker learns nothing (the whole
worker is killed), the lock's time to live bounds it, and the gate of the next attempt
(:mod:`celery_events.worker`) takes it again. :meth:`~celery_events.apps.CeleryEventsConfig.ready`
connects the receivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from celery.exceptions import TaskRevokedError
from celery.signals import task_rejected, task_revoked, task_unknown

from . import worker
from .headers import UNIQUE_KEY_HEADER, read_header
from .locks import release_lock

if TYPE_CHECKING:
    from celery.app.task import Context
    from kombu.message import Message

    from .typing import CalledTask

__all__ = ["connect_lock_cleanup"]


def connect_lock_cleanup() -> None:
    """Connect the receivers to Celery's signals; connecting again changes nothing."""
    task_revoked.connect(_release_revoked_task, weak=False, dispatch_uid=f"{__name__}.revoked")
    task_unknown.connect(_release_dropped_message, weak=False, dispatch_uid=f"{__name__}.unknown")
    task_rejected.connect(_release_dropped_message, weak=False, dispatch_uid=f"{__name__}.rejected")


def _release_revoked_task(
    sender: Any = None, *, request: Context | None = None, expired: bool = False, **_: Any
) -> None:
    """``task_revoked``: end the call of a revoked, expired or terminated task.

    Its lock is freed and its failure (``TaskRevokedError``, as its result says) left as the
    outcome of whoever joined it.
    """
    if request is None or sender is None:
        return
    unique_key = read_header(request, UNIQUE_KEY_HEADER)
    state = "expired" if expired else "revoked"
    # Only a DjangoTask's message carries a unique key.
    task = cast("CalledTask", sender)
    worker.settle_lost(task, str(request.id), unique_key, TaskRevokedError(state))


def _release_dropped_message(*, message: Message, **_: Any) -> None:
    """``task_unknown``, ``task_rejected``: release the lock of a message the worker dropped."""
    headers = message.headers or {}
    release_lock(headers.get("id"), headers.get(UNIQUE_KEY_HEADER))

"""Free the unique locks of messages that a worker drops before their task could release them.

A DjangoTask releases its lock when an attempt ends without a retry. A message can also end
where no attempt ends: revoked (by id, by expiry, or terminated), an unregistered task, a message
the worker cannot accept or decode. Celery tells the worker's main process of each through a
signal; the receivers here release the message's lock, owner-checked, with the unique key the
message carries. A pool process lost mid-task (killed, out of memory) or killed at its hard time
limit is handled by DjangoTask's worker request (:class:`celery_events.request.Request`), which
releases the lock before Celery stores the failure. Where the worker learns nothing (the whole
worker is killed), the lock's time to live bounds it, and the gate of the next attempt
(:mod:`celery_events.worker`) takes it again. :meth:`~celery_events.apps.CeleryEventsConfig.ready`
connects the receivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery.signals import task_rejected, task_revoked, task_unknown

from .headers import UNIQUE_KEY_HEADER, read_header
from .locks import release_lock

if TYPE_CHECKING:
    from celery.app.task import Context
    from kombu.message import Message

__all__ = ["connect_lock_cleanup"]


def connect_lock_cleanup() -> None:
    """Connect the receivers to Celery's signals; connecting again changes nothing."""
    task_revoked.connect(_release_revoked_task, weak=False, dispatch_uid=f"{__name__}.revoked")
    task_unknown.connect(_release_dropped_message, weak=False, dispatch_uid=f"{__name__}.unknown")
    task_rejected.connect(_release_dropped_message, weak=False, dispatch_uid=f"{__name__}.rejected")


def _release_revoked_task(*, request: Context | None = None, **_: Any) -> None:
    """``task_revoked``: release the lock of a revoked, expired or terminated task."""
    if request is not None:
        release_lock(request.id, read_header(request, UNIQUE_KEY_HEADER))


def _release_dropped_message(*, message: Message, **_: Any) -> None:
    """``task_unknown``, ``task_rejected``: release the lock of a message the worker dropped."""
    headers = message.headers or {}
    release_lock(headers.get("id"), headers.get(UNIQUE_KEY_HEADER))
